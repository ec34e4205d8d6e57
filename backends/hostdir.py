"""Shared by backends whose RUN_DIR is on this machine's filesystem (local, docker):
where run directories live, reading their files safely, and the launcher's status.json.

Everything under RUN_DIR is the job's to change, so every access goes through
``safefs`` (no link is followed, no special file read), and the launcher lock tells
whether a launcher is alive (the ownership protocol: backends/ownership.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

from runctl.backends.base import Backend, Handle, JobState, LaunchSpec, RunFile, Services
from runctl.backends.localfs import LocalTransport
from runctl.backends.transport import Transport
from runctl.errors import ConfigError
from runctl.job import protocol as P
from runctl.job import safefs
from runctl.job.ownership import cancel_requested, read_status, touch_cancel_marker
from runctl.status import RunStatus


class HostDirBackend(Backend):
    """RUN_DIR is ``<work_dir>/<run_id>`` here (work_dir defaults to ``services.work_root``)."""

    options_schema: ClassVar[dict[str, Any]] = {
        **Backend.options_schema,
        "work_dir": {"type": "string", "minLength": 1, "description": "where run directories are made"},
        "keep_run_dirs": {"enum": ["failed", "all", "none"], "description": "which run directories outlive their sync"},
    }

    def __init__(self, target: str, options: dict[str, Any], services: Services) -> None:
        super().__init__(target, options, services)
        self.work_dir = Path(options.get("work_dir") or services.work_root).expanduser()
        existing = next(p for p in (self.work_dir, *self.work_dir.parents) if os.path.lexists(p))
        if not existing.is_dir():
            raise ConfigError(f"{str(existing)!r} is not a directory", field="work_dir",
                              hint="point work_dir at a directory (runctl creates it if missing)")

    def local_work_dir(self) -> Path:
        return self.work_dir

    def plan(self, spec: LaunchSpec) -> Handle:
        return Handle(self.name, "", str(self.work_dir / spec.run_id), host=os.uname().nodename)

    def transport(self, handle: Handle) -> Transport:
        return LocalTransport(self.services.objects)

    def read(self, handle: Handle, relpath: str, offset: int, max_bytes: int) -> bytes:
        return safefs.read_file(handle.run_dir, relpath, offset, max_bytes)

    def list_files(self, handle: Handle, reldir: str) -> list[RunFile]:
        return [RunFile(*entry) for entry in safefs.walk(handle.run_dir, reldir)]

    def move_file(self, handle: Handle, relpath: str, dest: Path) -> bool:
        return safefs.move_out(handle.run_dir, relpath, str(dest))

    def release(self, handle: Handle, state: JobState) -> None:
        """Everything is in the store now: drop the run directory (the code copy can be as
        big as the snapshot limit), unless target option keep_run_dirs says otherwise:
        "failed" (the default) keeps failed runs' directories for debugging, "all", "none"."""
        keep = self.options.get("keep_run_dirs", "failed")
        never_ran = read_status(handle.run_dir).get("reason") == P.ABANDONED  # nothing to debug in it
        if not never_ran and (keep == "all" or (keep == "failed" and state.status == RunStatus.FAILED)):
            return
        safefs.remove_tree(handle.run_dir)  # never follows links, however deep the job nested folders

    def wait_for_change(self, handle: Handle, timeout_s: float) -> None:
        """Return as soon as the run starts, prints its first byte or ends (safefs.watch)."""
        safefs.watch(handle.run_dir, P.STATUS_FILE, P.LOG_FILE, timeout_s)

    def mark_cancel(self, handle: Handle) -> None:
        touch_cancel_marker(handle.run_dir)

    @staticmethod
    def cancel_requested(handle: Handle) -> bool:
        return cancel_requested(handle.run_dir)

    @staticmethod
    def cancel_marker_age(handle: Handle) -> float:
        t = safefs.mtime(handle.run_dir, P.CANCEL_MARKER)
        return 0.0 if t is None else time.time() - t


def times(st: dict[str, Any]) -> dict[str, Any]:
    return {"host": st.get("host"), "started_at": st.get("start_time"), "ended_at": st.get("end_time"),
            "warning": st.get("warning")}


LAUNCHER_GONE = "the launcher exited without recording the end (see RUN_DIR/.runctl/launcher.log)"


def live_state(st: dict[str, Any], alive: bool, cancel_requested: bool, gone: str = LAUNCHER_GONE) -> JobState:
    """The one mapping of a run's state from what its launcher left: status.json (checked),
    whether the launcher lives, whether runctl asked for the stop. Every backend starts from
    it and adds what only it knows (a container's OOM, a host's reboot, Slurm's queue)."""
    state = st.get("state")
    if state == P.FINISHED:
        return finished_state(st, cancel_requested)
    if not alive:
        return JobState(RunStatus.FAILED, error=gone, **times(st))
    if cancel_requested:
        return JobState(RunStatus.CANCEL_REQUESTED, **times(st))
    if state == P.PREPARING:  # the launcher builds the job's Python environment
        return JobState(RunStatus.PREPARING, **times(st))
    return JobState(RunStatus.RUNNING if state in (P.RUNNING, P.STOPPING) else RunStatus.STARTING, **times(st))


def finished_state(st: dict[str, Any], cancel_requested: bool) -> JobState:
    """The final state recorded by the launcher: the protocol's one mapping, as a JobState."""
    status, code, error = P.final_outcome(st, cancel_requested)
    return JobState(RunStatus(status), exit_code=code, error=error, **times(st))


def checked_environments(answer: Any, host: str) -> list[dict[str, Any]]:
    """Environment entries as an agent (or this machine) listed them, kept only when well
    formed (an agent's answer is hostile input), each with its ``host``."""
    out = []
    for e in answer if isinstance(answer, list) else []:
        if isinstance(e, dict) and isinstance(e.get("key"), str) and isinstance(e.get("path"), str) \
                and type(e.get("bytes")) is int and isinstance(e.get("last_used"), (int, float)):
            reqs = e.get("requirements")
            out.append({"host": host, "key": e["key"], "path": e["path"], "bytes": e["bytes"],
                        "last_used": float(e["last_used"]), "in_use": e.get("in_use") is True,
                        "requirements": [str(r) for r in reqs] if isinstance(reqs, list) else []})
    return out


def environments_here(env_root: str | None) -> list[dict[str, Any]]:
    """The job environments built on this machine (runctl/job/pyenv.py) under the target's
    ``env_root`` (None: the default place)."""
    from runctl.job import pyenv

    return checked_environments(pyenv.inventory(os.environ, env_root), os.uname().nodename)


def remove_environments_here(env_root: str | None, key: str | None, older_than_s: float | None,
                             dry_run: bool) -> list[tuple[str, int]]:
    from runctl.job import pyenv

    host = os.uname().nodename
    return [(f"{host}:{path}", size) for path, size in pyenv.remove(os.environ, key, older_than_s, dry_run, env_root)]
