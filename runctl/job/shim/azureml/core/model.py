"""``azureml.core.model`` inside a runctl job (azureml-core absent): see _surface.py."""

from ._surface import Model  # noqa: F401
