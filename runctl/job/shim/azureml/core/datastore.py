"""``azureml.core.datastore`` inside a runctl job (azureml-core absent): see _surface.py."""

from ._surface import Datastore  # noqa: F401
