"""Shared by backends whose RUN_DIR is on this machine's filesystem (local, docker):
where run directories live, reading their files, and the launcher's status.json.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from runctl.rundir import prepare
from runctl.snapshot import ObjectStore
from runctl.status import RunStatus

from .base import Backend, Handle, JobState, LaunchSpec

CANCEL_MARKER = ".runctl/cancel-requested"


class HostDirBackend(Backend):
    """RUN_DIR is ``<work_dir>/<run_id>`` here (work_dir defaults to ``<store>/work``)."""

    def __init__(self, target: str, options: dict[str, Any], store_dir: Path) -> None:
        super().__init__(target, options, store_dir)
        self.work_dir = Path(options.get("work_dir") or store_dir / "work").expanduser()

    def make_run_dir(self, spec: LaunchSpec) -> Path:
        run_dir = self.work_dir / spec.run_id
        run_dir.mkdir(parents=True)
        prepare(run_dir, ObjectStore(self.store_dir), spec.snapshot_id, spec.launcher_spec())
        return run_dir

    def read(self, handle: Handle, relpath: str, offset: int, max_bytes: int) -> bytes:
        try:
            with open(Path(handle.run_dir) / relpath, "rb") as f:
                f.seek(offset)
                return f.read(max_bytes)
        except FileNotFoundError:
            return b""

    def list_files(self, handle: Handle, reldir: str) -> list[tuple[str, int]]:
        root = Path(handle.run_dir)
        out = []
        for dirpath, dirnames, filenames in os.walk(root / reldir):
            dirnames.sort()
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                if p.is_file() and not p.is_symlink():
                    out.append((p.relative_to(root).as_posix(), p.stat().st_size))
        return out

    def host_path(self, handle: Handle, relpath: str) -> Path | None:
        return Path(handle.run_dir) / relpath

    def release(self, handle: Handle, state: JobState) -> None:
        """Everything is in the store now: drop the run directory (the code copy can be as
        big as the snapshot limit), unless target option keep_run_dirs says otherwise:
        "failed" (the default) keeps failed runs' directories for debugging, "all", "none"."""
        keep = self.options.get("keep_run_dirs", "failed")
        if keep == "all" or (keep == "failed" and state.status == RunStatus.FAILED):
            return
        shutil.rmtree(handle.run_dir, ignore_errors=True)

    def mark_cancel(self, handle: Handle) -> None:
        marker = Path(handle.run_dir) / CANCEL_MARKER
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    @staticmethod
    def cancel_requested(handle: Handle) -> bool:
        return (Path(handle.run_dir) / CANCEL_MARKER).exists()


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "status.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def times(st: dict[str, Any]) -> dict[str, Any]:
    return {"host": st.get("host"), "started_at": st.get("start_time"), "ended_at": st.get("end_time")}


def finished_state(st: dict[str, Any], cancel_requested: bool) -> JobState:
    """The final state recorded by the launcher (any backend whose launcher wrote status.json).

    A stop that runctl did not ask for (``docker stop``, a daemon restart, a stray kill)
    is a failure, not a cancel."""
    reason, code, common = st.get("reason"), st.get("exit_code"), times(st)
    if reason == "canceled":
        if cancel_requested:
            return JobState(RunStatus.CANCELED, exit_code=code, error="canceled", **common)
        return JobState(RunStatus.FAILED, exit_code=code,
                        error="stopped by a signal from outside runctl (e.g. docker stop, a daemon restart, kill)",
                        **common)
    if reason == "timeout":
        return JobState(RunStatus.FAILED, exit_code=124, error="stopped after max_run_duration_seconds", **common)
    if reason == "exit" and code == 0:
        return JobState(RunStatus.COMPLETED, exit_code=0, **common)
    error = st.get("error") or (f"killed by signal {st['signal']}" if st.get("signal") else f"exit code {code}")
    return JobState(RunStatus.FAILED, exit_code=code, error=error, **common)
