"""``azureml.core.compute`` inside a runctl job (azureml-core absent): see _surface.py."""

from ._surface import ComputeTarget


class AmlCompute(ComputeTarget):
    """v1's AmlCompute cluster (provisioning_configuration, create, ...)."""


class ComputeInstance(ComputeTarget):
    """v1's ComputeInstance."""


__all__ = ["AmlCompute", "ComputeInstance", "ComputeTarget"]
