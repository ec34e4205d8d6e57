"""``from azureml.core.run import Run`` (azureml-core absent): the same Run as ``azureml.core``'s."""

from runctl_job.context.run import OfflineRun as _OfflineRun  # noqa: F401

from . import Run  # noqa: F401
