"""``from azureml.core import Run`` inside a runctl job, when azureml-core is not installed."""

from runctl_context import Run  # noqa: F401
from runctl_context.run import ExperimentRef as Experiment  # noqa: F401

__all__ = ["Experiment", "Run"]
