"""``from azureml.core.run import Run`` inside a runctl job (azureml-core absent)."""

from runctl_context import Run  # noqa: F401
from runctl_context.run import OfflineRun as _OfflineRun  # noqa: F401
