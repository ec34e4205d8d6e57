"""``azureml.core.environment`` inside a runctl job (azureml-core absent): see _surface.py."""

from ._surface import Environment  # noqa: F401
