"""The local backend: the launcher as a detached process on this machine.

RUN_DIR is ``<work_dir>/<run_id>`` (work_dir defaults to ``<store>/work``). The native id
is the launcher's pid; its start time (from /proc) tells a reused pid apart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from runctl.errors import InputError, StartError
from runctl.launcher import proc_start_ticks
from runctl.rundir import prepare
from runctl.snapshot import ObjectStore
from runctl.status import RunStatus

from .base import Backend, Handle, JobState, LaunchSpec


class LocalBackend(Backend):
    name = "local"

    def __init__(self, target: str, options: dict[str, Any], store_dir: Path) -> None:
        super().__init__(target, options, store_dir)
        self.work_dir = Path(options.get("work_dir") or store_dir / "work").expanduser()

    def default_interpreter(self) -> str:
        return sys.executable

    def check_job(self, spec: LaunchSpec) -> None:
        exe = spec.argv[0]
        if os.sep not in exe and shutil.which(exe) is None:
            raise InputError(f"{exe!r} is not on PATH; install it or give its full path "
                             f"(environment.python.interpreter_path)")
        if os.sep in exe and not os.access(exe, os.X_OK):
            raise InputError(f"{exe!r} is not an executable file; fix environment.python.interpreter_path")

    def submit(self, spec: LaunchSpec) -> Handle:
        run_dir = self.work_dir / spec.run_id
        run_dir.mkdir(parents=True)
        prepare(run_dir, ObjectStore(self.store_dir), spec.snapshot_id, spec.launcher_spec())
        python = spec.env.get("RUNCTL_LAUNCHER_PYTHON") or sys.executable
        try:
            out = subprocess.run(
                [python, str(run_dir / ".runctl" / "launcher.py"), "--detach", str(run_dir)],
                capture_output=True, text=True, timeout=60, check=True,
            )
            pid = int(out.stdout.strip())
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            raise StartError(f"could not start the launcher: {e}") from e
        return Handle("local", str(pid), str(run_dir), host=os.uname().nodename,
                      extra={"start_ticks": proc_start_ticks(pid)})

    def status(self, handle: Handle) -> JobState:
        return map_state(read_status(Path(handle.run_dir)), launcher_alive(handle))

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
                st = p.lstat()
                if p.is_file() and not p.is_symlink():
                    out.append((p.relative_to(root).as_posix(), st.st_size))
        return out

    def cancel(self, handle: Handle) -> None:
        if launcher_alive(handle):
            os.kill(int(handle.native_id), signal.SIGTERM)
            return
        st = read_status(Path(handle.run_dir))
        if st.get("pgid") and st.get("state") != "finished":
            try:
                os.killpg(int(st["pgid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass

    def check(self) -> list[str]:
        return [f"work_dir: {self.work_dir}", f"python: {sys.executable}"]


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "status.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def launcher_alive(handle: Handle) -> bool:
    ticks = proc_start_ticks(int(handle.native_id))
    return ticks is not None and ticks == handle.extra.get("start_ticks")


def map_state(st: dict[str, Any], alive: bool) -> JobState:
    """The one mapping from the launcher's status.json (+ liveness) to a RunStatus."""
    common = {"host": st.get("host"), "started_at": st.get("start_time"), "ended_at": st.get("end_time")}
    state = st.get("state")
    if state == "finished":
        return finished_state(st, common)
    if not alive:
        what = "before starting the job" if state in (None, "starting") else "while the job ran"
        return JobState(RunStatus.FAILED, error=f"the launcher exited {what} (see RUN_DIR/.runctl/launcher.log)",
                        **common)
    if state == "stopping" and st.get("reason") == "canceled":
        return JobState(RunStatus.CANCEL_REQUESTED, **common)
    if state in ("running", "stopping"):
        return JobState(RunStatus.RUNNING, **common)
    return JobState(RunStatus.STARTING, **common)


def finished_state(st: dict[str, Any], common: dict[str, Any]) -> JobState:
    """Shared by every backend whose launcher wrote a final status.json."""
    reason, code = st.get("reason"), st.get("exit_code")
    if reason == "canceled":
        return JobState(RunStatus.CANCELED, exit_code=code, error="canceled", **common)
    if reason == "timeout":
        return JobState(RunStatus.FAILED, exit_code=124, error="stopped after max_run_duration_seconds", **common)
    if reason == "exit" and code == 0:
        return JobState(RunStatus.COMPLETED, exit_code=0, **common)
    error = st.get("error") or (f"killed by signal {st['signal']}" if st.get("signal") else f"exit code {code}")
    return JobState(RunStatus.FAILED, exit_code=code, error=error, **common)
