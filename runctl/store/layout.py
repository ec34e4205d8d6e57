"""Where the store keeps what, written once: the folders under the store's directory, and the
services a backend is lent from them (backends never see the store's directory itself)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runctl.store import private

if TYPE_CHECKING:
    from runctl.backends.base import Services

OBJECTS = "objects"  # the object cache: files by content (runctl.job.protocol.object_relpath)
SNAPSHOTS = "snapshots"  # one manifest per snapshot
RUNS = "runs"  # each run's stored logs, outputs and files
WORK = "work"  # run directories of this machine's targets without a work_dir of their own
STATE = "state"  # each backend type's own small state


def objects_dir(store_dir: Path) -> Path:
    return store_dir / OBJECTS


def snapshots_dir(store_dir: Path) -> Path:
    return store_dir / SNAPSHOTS


def runs_dir(store_dir: Path) -> Path:
    return store_dir / RUNS


def work_root(store_dir: Path) -> Path:
    return store_dir / WORK


def state_dir(store_dir: Path, name: str) -> Path:
    """A private folder for one part of runctl's own small state (a backend type's, the tuning
    controllers' locks), made on first use."""
    state = store_dir / STATE / name
    private.makedirs(state)
    return state


def services(store_dir: Path, backend_name: str) -> Services:
    """What a backend of type ``backend_name`` gets: the object cache to stage from, the default
    work root, a private folder of its own, and the store's place as one a job must not be given."""
    from runctl.backends.base import Services

    return Services(objects=objects_dir(store_dir), work_root=work_root(store_dir), state_dir=state_dir(store_dir, backend_name),
                    keep_out=(store_dir,))
