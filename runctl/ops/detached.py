"""The detached controller of a tuning run (runctl/ops/hyperdrive/controller.py): at most one
per parent run, on the machine whose store holds it.

Ownership is a lock file the kernel releases when its holder dies, however it dies: whoever
takes the lock of a parent that is still running starts a controller and hands it the
locked file, so two commands that find the controller gone at the same instant start one
controller, never two. Where it runs (``{host, pid}``) is recorded in the parent's spec
for `runctl show`.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runctl.job import protocol
from runctl.ops.trials import CONTROLLER
from runctl.store import private

if TYPE_CHECKING:
    from runctl.ops.session import Session
    from runctl.store.sqlite import RunRecord

LOCK_FD_ENV = "RUNCTL_CONTROLLER_LOCK_FD"
MODULE = "runctl.ops.hyperdrive.controller"


def lock_path(session: Session, parent_id: str) -> Path:
    return session.store.state_dir("hyperdrive") / f"{parent_id}.lock"


def take_lock(path: Path) -> int | None:
    """The lock's fd, held; None if a live process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def running(session: Session, parent_id: str) -> bool:
    fd = take_lock(lock_path(session, parent_id))
    if fd is None:
        return True
    os.close(fd)
    return False


def ensure(session: Session, parent: RunRecord) -> bool:
    """Start the parent's controller unless one runs (or the parent has ended); True if
    this call started it. Called by every command that looks at the parent, so a controller
    killed at any instant is restarted by the next one."""
    if parent.status.is_terminal:
        return False
    if parent.submit_host not in (None, socket.gethostname()):
        return False  # its controller lives where it was submitted (a teammate's machine, on a team store)
    fd = take_lock(lock_path(session, parent.id))
    if fd is None:
        return False
    try:
        if session.store.get(parent.id).status.is_terminal:  # it ended meanwhile: no lock file left behind
            forget(session, parent.id)
            return False
        start(session, parent.id, fd)
        return True
    finally:
        os.close(fd)


def start(session: Session, parent_id: str, lock_fd: int) -> None:
    """A controller process for ``parent_id``, in a session of its own (it outlives the
    terminal), inheriting the held lock; its output goes to the parent's log."""
    from runctl.job.launcher import proc_start_ticks

    store = session.store
    log = store.run_dir(parent_id) / protocol.LOG_FILE
    private.makedirs(log.parent)
    argv = [sys.executable, "-m", MODULE, parent_id, "--store", str(store.dir)]
    if session.ws.config_path is not None:
        argv += ["--config", str(session.ws.config_path)]
    os.set_inheritable(lock_fd, True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                pass_fds=(lock_fd,), start_new_session=True,
                                env={**os.environ, LOCK_FD_ENV: str(lock_fd)})
    record(session, parent_id, {"pid": proc.pid, "host": socket.gethostname(),
                                "start_ticks": proc_start_ticks(proc.pid), "started_at": time.time()})


def record(session: Session, parent_id: str, where: dict[str, Any] | None) -> None:
    session.store.merge_spec(parent_id, **{CONTROLLER: where})


def forget(session: Session, parent_id: str) -> None:
    """The lock file of an ended parent (whoever opens it later finds the parent ended)."""
    lock_path(session, parent_id).unlink(missing_ok=True)


def where(session: Session, parent: RunRecord) -> dict[str, Any] | None:
    """``{host, pid}`` of the parent's live controller, else None."""
    owner = (parent.spec or {}).get(CONTROLLER)
    if not owner or parent.status.is_terminal or not running(session, parent.id):
        return None
    return {"host": owner.get("host"), "pid": owner.get("pid")}


def stop(session: Session, parent: RunRecord, timeout_s: float = 10.0) -> None:
    """Stop the parent's controller (SIGTERM, then SIGKILL) and wait until it has let go."""
    from runctl.job.launcher import process_alive

    owner = (parent.spec or {}).get(CONTROLLER) or {}
    pid = owner.get("pid")
    if not pid or owner.get("host") != socket.gethostname():
        return  # none recorded here: one elsewhere sees the parent cancel-requested and stops itself
    deadline = time.monotonic() + timeout_s
    sig = signal.SIGTERM
    while running(session, parent.id) and process_alive(int(pid), owner.get("start_ticks")):
        try:
            os.kill(int(pid), sig)
        except ProcessLookupError:
            break
        time.sleep(0.05)
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
