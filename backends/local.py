"""The local backend: the launcher as a detached process on this machine.

Whether the launcher lives is told by its lock on RUN_DIR (runctl/launcher.py,
"Ownership"); its pid and start time in status.json are only used to signal it.
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

from runctl.backends.base import Handle, JobState, LaunchSpec
from runctl.backends.hostdir import HostDirBackend, environments_here, live_state, remove_environments_here
from runctl.errors import InputError, StartError
from runctl.job import protocol as P
from runctl.job.launcher import kill_run_processes, process_alive
from runctl.job.ownership import abandon_unstarted, launcher_alive, read_status


class LocalBackend(HostDirBackend):
    name = "local"

    def environments(self) -> list[dict[str, Any]] | None:
        return environments_here(self.options.get("env_root"))

    def remove_environments(self, key: str | None, older_than_s: float | None = None,
                            dry_run: bool = False) -> list[tuple[str, int]]:
        return remove_environments_here(self.options.get("env_root"), key, older_than_s, dry_run)

    def default_interpreter(self) -> str:
        return sys.executable

    def check_job(self, spec: LaunchSpec) -> None:
        exe = spec.argv[0]
        fix = ("environment.python.interpreter_path" if spec.environment.get("python", {}).get("interpreter_path")
               or spec.argv[0] == self.default_interpreter() else "command")
        if os.sep not in exe and shutil.which(exe) is None:
            raise InputError(f"{exe!r} is not on PATH; install it or give its full path ({fix})")
        if os.sep in exe and not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            raise InputError(f"{exe!r} is not an executable file; fix {fix}")

    def submit(self, spec: LaunchSpec, handle: Handle) -> Handle:
        run_dir = Path(handle.run_dir)
        try:
            out = subprocess.run(  # secrets on its stdin: never in argv, a file, or a listable environment
                # -S: the launcher is stdlib only, and site's .pth files (an editable install, conda)
                # cost 20 ms or more of every start
                [sys.executable, "-S", str(run_dir / P.LAUNCHER_FILE), "--detach", "--secrets-stdin", str(run_dir)],
                input=json.dumps(spec.secret_env), capture_output=True, text=True, timeout=60, check=True,
            )
            pid = int(out.stdout.strip())
        except (subprocess.SubprocessError, ValueError) as e:
            raise StartError(f"could not start the launcher: {e}") from e
        return Handle("local", str(pid), handle.run_dir, host=handle.host)

    def status(self, handle: Handle) -> JobState:
        alive = launcher_alive(handle.run_dir)  # first: a launcher gone by now has written its last status
        st = read_status(handle.run_dir)
        if not st and not alive:
            st = abandon_unstarted(handle.run_dir) or read_status(handle.run_dir)
        return map_state(st, alive, self.cancel_requested(handle))

    def cancel(self, handle: Handle) -> None:
        """Idempotent: ask the launcher to stop the job; with no launcher alive, stop whatever
        of the run still runs (a job whose launcher was killed), or make sure it never starts."""
        self.mark_cancel(handle)
        st = read_status(handle.run_dir)
        if launcher_alive(handle.run_dir):
            pid = st.get("launcher_pid")
            if isinstance(pid, int) and process_alive(pid, st.get("launcher_start_ticks")):
                os.kill(pid, signal.SIGTERM)
                return
        if not st:
            abandon_unstarted(handle.run_dir, canceled=True)
        kill_run_processes(handle.run_dir, signal.SIGKILL)

    def release(self, handle: Handle, state: JobState) -> None:
        kill_run_processes(handle.run_dir, signal.SIGKILL)  # what outlived a killed launcher
        super().release(handle, state)

    def check(self) -> list[str]:
        return [f"work_dir: {self.work_dir}", f"python: {sys.executable}"]


def map_state(st: dict[str, Any], alive: bool, cancel_requested: bool) -> JobState:
    """The launcher's state (hostdir.live_state), saying when a dead launcher died."""
    what = "before starting the job" if st.get("state") in (None, P.STARTING) else "while the job ran"
    return live_state(st, alive, cancel_requested, f"the launcher exited {what} (see RUN_DIR/.runctl/launcher.log)")
