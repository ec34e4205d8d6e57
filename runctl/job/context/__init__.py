"""runctl's run-context client: what a training script imports (stdlib only, Python >= 3.8).

Shipped into every run directory as the package ``runctl_context`` and importable inside
runctl as ``runctl.job.context``; it must never import anything outside the standard library.
"""

from ._values import LoggingError
from .run import ExperimentRef, OfflineRun, Run

__all__ = ["ExperimentRef", "LoggingError", "OfflineRun", "Run"]
