"""``azureml.core.dataset`` inside a runctl job (azureml-core absent): see _surface.py."""

from ._surface import Dataset  # noqa: F401
