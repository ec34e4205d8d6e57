"""``azureml.core.conda_dependencies`` inside a runctl job (azureml-core absent): see _surface.py."""

from ._surface import CondaDependencies  # noqa: F401
