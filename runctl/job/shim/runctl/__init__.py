"""``from runctl import Run`` in a job whose Python has no runctl installed (an SSH host, a
container image): the job-side run context. Stdlib only. This folder is last on the job's
sys.path, so an installed runctl (with its whole Python API) always wins."""

from runctl_job.context import Run  # noqa: F401

__all__ = ["Run"]
