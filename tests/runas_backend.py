"""A third backend, written from docs/architecture.md "Writing a backend", backends/base.py and
the conformance suite alone: jobs run on this machine as another user (``setpriv``), so a
job cannot touch the submitting user's files. Options: ``user`` (uid, default 65534) and
``python`` (an interpreter that user can run, default /usr/bin/python3).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any, ClassVar

from runctl.backends.base import Handle, JobState, LaunchSpec
from runctl.backends.hostdir import HostDirBackend, live_state
from runctl.errors import InputError, StartError
from runctl.job import protocol
from runctl.job.ownership import abandon_unstarted, launcher_alive, read_status


class RunAsBackend(HostDirBackend):
    name = "runas"
    options_schema: ClassVar[dict[str, Any]] = {
        **HostDirBackend.options_schema,
        "user": {"type": "integer", "minimum": 1},
        "python": {"type": "string", "minLength": 1},
    }

    def check_job(self, spec: LaunchSpec) -> None:
        if os.getuid() != 0:
            raise InputError(f"target {self.target!r} runs jobs as another user: runctl must run as root")

    def submit(self, spec: LaunchSpec, handle: Handle) -> Handle:
        uid = int(self.options.get("user", 65534))
        for dirpath, _dirs, files in os.walk(handle.run_dir):  # the job's user must own its RUN_DIR
            os.chown(dirpath, uid, uid)
            for name in files:
                os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)
        python = self.options.get("python", "/usr/bin/python3")
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                python, os.path.join(handle.run_dir, protocol.LAUNCHER_FILE), "--detach", "--secrets-stdin",
                handle.run_dir]
        try:
            out = subprocess.run(argv, input=json.dumps(spec.secret_env), capture_output=True, text=True,
                                 timeout=60, check=True)
            pid = int(out.stdout.strip())
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            raise StartError(f"could not start the launcher as uid {uid}: {e}") from e
        return Handle(self.name, str(pid), handle.run_dir, host=handle.host)

    def status(self, handle: Handle) -> JobState:
        alive = launcher_alive(handle.run_dir)  # (first: a launcher gone by now wrote its last status)
        st = read_status(handle.run_dir)
        if not st and not alive:  # no launcher ever started: make sure none will
            st = abandon_unstarted(handle.run_dir) or read_status(handle.run_dir)
        return live_state(st, alive, self.cancel_requested(handle))

    def cancel(self, handle: Handle) -> None:
        self.mark_cancel(handle)
        st = read_status(handle.run_dir)
        if not st:
            abandon_unstarted(handle.run_dir, canceled=True)
            return
        if launcher_alive(handle.run_dir) and isinstance(st.get("launcher_pid"), int):
            try:
                os.kill(st["launcher_pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
