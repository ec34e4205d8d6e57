"""Backend registry: built-in backends by type name, plus the ``runctl.backends`` entry points.

Modules are imported on first use, so a backend's heavy library (docker, paramiko) costs
nothing to commands that do not touch it.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING

from runctl.errors import ConfigError

if TYPE_CHECKING:
    from runctl.backends.base import Backend

ENTRY_POINT_GROUP = "runctl.backends"

BUILTIN = MappingProxyType({
    "local": "runctl.backends.local:LocalBackend",
    "docker": "runctl.backends.docker:DockerBackend",
    "ssh": "runctl.backends.ssh:SSHBackend",
    "slurm": "runctl.backends.slurm:SlurmBackend",
})


def available() -> dict[str, str]:
    """Every known backend type -> "module:Class" (built-ins win over entry points)."""
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    found.update(BUILTIN)
    return dict(sorted(found.items()))


def backend_class(type_name: str) -> type[Backend]:
    ref = BUILTIN.get(type_name) or available().get(type_name)
    if ref is None:
        raise ConfigError(
            f"unknown compute target type {type_name!r}", field="type",
            hint=f"known types: {', '.join(available())} (third-party backends register the "
                 f"entry point group {ENTRY_POINT_GROUP!r})",
        )
    module, _, cls = ref.partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]

