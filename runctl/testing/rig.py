"""What the method-level contract needs from core, in one place: a snapshot of a source
folder in a store, and a RUN_DIR staged through a backend exactly as `runctl submit` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def snapshot(src: Path, store_dir: Path) -> str:
    """Snapshot ``src`` into the store at ``store_dir``; returns the snapshot id."""
    from runctl.store.snapshot import list_source, take_snapshot
    from runctl.store.sqlite import Store

    store = Store(store_dir)
    try:
        return take_snapshot(list_source(src), store.objects, store.stat_cache_get, store.stat_cache_put)
    finally:
        store.close()


def stage(backend: Any, spec: Any, handle: Any, store_dir: Path) -> Any:
    """Stage ``spec``'s RUN_DIR for ``backend`` at ``handle`` (from ``backend.plan``) from the
    store at ``store_dir``; returns what was sent (sent_objects, sent_bytes)."""
    from runctl.ops import staging
    from runctl.store.snapshot import ObjectStore

    objects = ObjectStore(store_dir)
    return staging.stage(objects, backend.transport(handle), handle.run_dir,
                         staging.plan(objects, spec.snapshot_id, spec.launcher_spec()))


def stage_run_dir(backend: Any, spec: Any, store_dir: Path) -> Path:
    """Plan and stage ``spec``'s RUN_DIR for ``backend``; returns it."""
    handle = backend.plan(spec)
    stage(backend, spec, handle, store_dir)
    return Path(handle.run_dir)


def stage_digests(spec: Any, store_dir: Path) -> list[str]:
    """Every object ``spec``'s RUN_DIR is made of (what the far side's cache must hold)."""
    from runctl.ops import staging
    from runctl.store.snapshot import ObjectStore

    objects = ObjectStore(store_dir)
    return list(staging.plan(objects, spec.snapshot_id, spec.launcher_spec()).digests)


def sync_once(backend: Any, handle: Any, store_dir: Path) -> tuple[Any, Any]:
    """Record a run at ``handle`` in a store at ``store_dir`` and sync it from ``backend`` until
    it ends, as `runctl wait` would; returns (the store, the run's record)."""
    from runctl.ops.sync import sync_run
    from runctl.store.sqlite import Store

    store = Store(store_dir)
    record, _ = store.create_run("exp", handle=handle.to_dict(), compute_target="under-test")
    return store, sync_run(store, backend, record, blocking=True)
