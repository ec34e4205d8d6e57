"""The ownership protocol of a run directory, written once (stdlib only, Python >= 3.8): who
owns RUN_DIR now, and how a run is stopped for good before its launcher ever starts.

The launcher holds an exclusive flock on RUN_DIR/.runctl/launcher.lock for its whole life and
starts the job only if no status.json exists (runctl/launcher.py, "Ownership"). So whoever
takes the lock without waiting knows that no launcher lives, and by writing status.json with
reason "abandoned" while holding it makes sure none ever starts the job. The cancel marker
says that runctl asked for the stop. Used by the backends whose RUN_DIR is on this machine
(backends/hostdir.py) and, shipped beside safefs.py, by runctl's agent on SSH hosts and
Slurm login nodes: one implementation wherever RUN_DIR is.
"""

import json
import os
import time

from . import protocol as P
from . import safefs
from .launcher import process_alive


def read_status(run_dir):
    """RUN_DIR's status.json, every field type- and range-checked (the job can write anything there)."""
    return P.checked_status(safefs.read_json(run_dir, P.STATUS_FILE))


def launcher_alive(run_dir):
    """Does a launcher hold RUN_DIR's lock now? If the job replaced .runctl with a link, the
    lock cannot be reached: then the launcher's pid and start time in status.json say, so a
    hostile job cannot make a live launcher look dead. Ask this BEFORE reading status.json:
    a launcher that is gone by now wrote its last word."""
    held = safefs.lock_held(run_dir, P.LOCK_FILE)
    if held is not None:
        return held
    st = read_status(run_dir)
    pid = st.get("launcher_pid")
    return isinstance(pid, int) and process_alive(pid, st.get("launcher_start_ticks"))


def abandon_unstarted(run_dir, canceled=False):
    """If no launcher is alive and none ever started (no status.json), record the run as
    abandoned, so that a launcher still on its way refuses to start the job. Returns the
    status then on disk, or None while a launcher holds the lock."""

    def decide():
        st = read_status(run_dir)
        if st or safefs.exists(run_dir, P.STATUS_FILE):
            return st
        st = {"state": P.FINISHED, "reason": P.ABANDONED, "exit_code": None, "end_time": time.time(),
              "error": "canceled before it started" if canceled else P.ABANDONED_ERROR}
        if os.path.isdir(run_dir):  # else nothing was made, and no one is left to make it
            write_json(run_dir, P.STATUS_FILE, st)
        return st

    result = safefs.with_free_lock(run_dir, P.LOCK_FILE, decide)
    return None if result == safefs.HELD else result


def touch_cancel_marker(run_dir):
    """The cancel marker, never through a link the job planted."""
    try:
        safefs.touch(run_dir, P.CANCEL_MARKER)
    except OSError:
        pass  # no run directory (never made) or a link planted there: the signal still goes


def mark_cancel(run_dir):
    """The cancel marker, and the "abandoned" record if no launcher ever started: the job's
    launcher, wherever it runs, then refuses to start. (No signal: whoever can, sends it.)"""
    touch_cancel_marker(run_dir)
    if not read_status(run_dir):
        abandon_unstarted(run_dir, canceled=True)


def cancel_requested(run_dir):
    return safefs.exists(run_dir, P.CANCEL_MARKER)


def write_json(run_dir, rel, data):
    """Replace RUN_DIR/rel atomically; a link planted at the name is replaced, never followed."""
    dfd = safefs.open_dir(run_dir)
    tmp = ".%s.runctl.%d.tmp" % (rel, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, rel, src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)
