"""The local backend: the launcher as a detached process on this machine.

The native id is the launcher's pid; its start time (from /proc) tells a reused pid apart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from runctl.errors import InputError, StartError
from runctl.launcher import proc_start_ticks, process_alive
from runctl.status import RunStatus

from .base import Handle, JobState, LaunchSpec
from .hostdir import HostDirBackend, finished_state, read_status, times


class LocalBackend(HostDirBackend):
    name = "local"

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
        try:
            run_dir = self.make_run_dir(spec)
            out = subprocess.run(
                [sys.executable, str(run_dir / ".runctl" / "launcher.py"), "--detach", str(run_dir)],
                capture_output=True, text=True, timeout=60, check=True, env={**os.environ, **spec.secret_env},
            )
            pid = int(out.stdout.strip())
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            raise StartError(f"could not start the launcher: {e}") from e
        return Handle("local", str(pid), str(run_dir), host=os.uname().nodename,
                      extra={"start_ticks": proc_start_ticks(pid)})

    def status(self, handle: Handle) -> JobState:
        return map_state(read_status(Path(handle.run_dir)), launcher_alive(handle), self.cancel_requested(handle))

    def cancel(self, handle: Handle) -> None:
        self.mark_cancel(handle)
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


def launcher_alive(handle: Handle) -> bool:
    return bool(process_alive(int(handle.native_id), handle.extra.get("start_ticks")))


def map_state(st: dict[str, Any], alive: bool, cancel_requested: bool) -> JobState:
    """The one mapping from the launcher's status.json (+ liveness) to a RunStatus."""
    state = st.get("state")
    if state == "finished":
        return finished_state(st, cancel_requested)
    if not alive:
        what = "before starting the job" if state in (None, "starting") else "while the job ran"
        return JobState(RunStatus.FAILED, error=f"the launcher exited {what} (see RUN_DIR/.runctl/launcher.log)",
                        **times(st))
    if cancel_requested:
        return JobState(RunStatus.CANCEL_REQUESTED, **times(st))
    if state in ("running", "stopping"):
        return JobState(RunStatus.RUNNING, **times(st))
    return JobState(RunStatus.STARTING, **times(st))
