"""``azureml.core.experiment`` / ``workspace`` / ``script_run_config`` inside a runctl job."""

from . import Experiment, ScriptRunConfig, Workspace  # noqa: F401
