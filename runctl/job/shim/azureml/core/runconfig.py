"""``azureml.core.runconfig`` inside a runctl job (azureml-core absent): see _surface.py."""

from ._surface import RunConfiguration  # noqa: F401
