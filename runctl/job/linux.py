"""Linux process controls the launcher and the environment builder share (stdlib only; each a
no-op elsewhere)."""

import signal

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option, value):
    """Linux prctl(2) through ctypes; a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def die_with_parent():
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
