"""``runctl gc``: remove what runctl no longer needs. Nothing a finished run's record points
at is touched, and nothing young enough to belong to a submit in progress.

- ``.incoming`` objects and ``.part`` files left by killed processes;
- run directories that this store named (a run of this store recorded that very RUN_DIR)
  whose run is finished and synced and older than ``--older-than`` days (kept failed runs):
  a work_dir may hold other stores' runs and the user's own folders, never touched;
- snapshots no run refers to, and the objects only they held;
- on compute hosts that keep their own copies (SSH hosts, Slurm login nodes): the dirs of
  runs the store holds whole, and cache objects and ready copies unused for ``--older-than``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from runctl.job import safefs
from runctl.ops.session import Session

YOUNG_S = 3600.0  # anything newer may belong to a submit still running


@dataclass
class Plan:
    paths: list[Path] = field(default_factory=list)
    bytes: int = 0
    remote: list[tuple[str, int]] = field(default_factory=list)  # (host:path, bytes) on compute hosts
    warnings: list[str] = field(default_factory=list)

    def add(self, p: Path) -> None:
        self.paths.append(p)
        self.bytes += _size(p)


def _size(p: Path) -> int:
    if p.is_symlink() or not p.is_dir():
        return p.lstat().st_size
    return sum(f.lstat().st_size for f in p.rglob("*") if not f.is_dir() or f.is_symlink())


def _old(p: Path, now: float, age_s: float) -> bool:
    try:
        return now - p.lstat().st_mtime > age_s
    except FileNotFoundError:
        return False


def plan(session: Session, older_than_days: float) -> Plan:
    store, now, out = session.store, time.time(), Plan()
    runs = {r.id: r for r in store.runs(include_children=True)}
    for leftover in store.objects.leftovers() + store.partial_files():
        if _old(leftover, now, YOUNG_S):
            out.add(leftover)
    for work_dir in _work_dirs(session):
        for d in sorted(work_dir.iterdir()) if work_dir.is_dir() else []:
            # Only a folder this store named (its run's recorded RUN_DIR is this very path):
            # a work_dir can hold a user's folders and another store's runs too.
            r = runs.get(d.name)
            named = r is not None and r.handle is not None and r.handle.get("run_dir") == str(d)
            if named and r.synced and r.status.is_terminal and _old(d, now, older_than_days * 86400):  # type: ignore[union-attr]
                out.add(d)
    referenced = {r.snapshot_id for r in runs.values() if r.snapshot_id}
    keep_objects: set[str] = set()
    for snapshot_id, m in store.objects.manifest_files():
        if snapshot_id in referenced or not _old(m, now, YOUNG_S):
            keep_objects.update(f[1] for f in json.loads(m.read_bytes())["files"])
        else:
            out.add(m)
    for digest, obj in store.objects.stored():
        if digest not in keep_objects and _old(obj, now, YOUNG_S):
            out.add(obj)
    return out


def _work_dirs(session: Session) -> list[Path]:
    """The folders on this machine where targets make run directories (as each backend declares)."""
    from runctl.errors import RunctlError

    dirs = {session.store.work_root}
    for name in session.ws.targets:
        try:
            here = session.backend(name).local_work_dir()
        except RunctlError:
            continue  # (its plugin is not installed here, say: remote() reports it)
        if here is not None:
            dirs.add(Path(here))
    return sorted(dirs)


def remote(session: Session, older_than_days: float, dry_run: bool, out: Plan) -> None:
    """Ask each target whose compute side keeps its own copies (SSH hosts, a Slurm login node)
    to collect: the dirs of runs the store holds whole and finished long enough ago, and what
    its caches have not used for as long."""
    from runctl.backends.base import Handle
    from runctl.errors import RunctlError

    cutoff = time.time() - older_than_days * 86400
    for name in sorted(session.ws.targets):
        try:
            backend = session.backend(name)
        except RunctlError as e:
            out.warnings.append(f"{name}: not collected: {e}")
            continue
        try:  # job environments unused that long (never one a job runs from, or a build holds)
            for gone in backend.remove_environments(None, older_than_days * 86400, dry_run):
                if gone not in out.remote:  # (two targets on one host see the same ones)
                    out.remote.append(gone)
                    out.bytes += gone[1]
        except RunctlError as e:
            out.warnings.append(f"{name}: environments not collected: {e}")
        if backend.local_work_dir() is not None:
            continue  # its run directories are this machine's: plan() collects them
        finished = [Handle.from_dict(r.handle) for r in session.store.runs(include_children=True)
                    if r.compute_target == name and r.synced and r.status.is_terminal and r.handle
                    and (r.ended_at or r.created_at) < cutoff]
        try:
            removed = backend.gc(finished, older_than_days * 86400, dry_run)
        except RunctlError as e:
            out.warnings.append(f"{name}: not collected: {e}")
            continue
        out.remote += removed
        out.bytes += sum(size for _, size in removed)


def run(session: Session, older_than_days: float, dry_run: bool) -> Plan:
    p = plan(session, older_than_days)
    if not dry_run:
        for path in p.paths:
            if path.is_dir() and not path.is_symlink():
                safefs.remove_tree(str(path))
            else:
                path.unlink(missing_ok=True)
        session.store.objects.prune_empty_dirs()
    remote(session, older_than_days, dry_run, p)
    return p
