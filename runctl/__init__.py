"""runctl: run training scripts on your own compute and keep the history of every run.

``from runctl import Run`` gives the run context a script logs to; the submission API
(Workspace, Experiment, ScriptRunConfig) mirrors Azure ML SDK v1. Names are imported on
first use so ``import runctl`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

_LAZY = {
    "Workspace": "runctl.api:Workspace",
    "Experiment": "runctl.api:Experiment",
    "ScriptRunConfig": "runctl.api:ScriptRunConfig",
    "Run": "runctl.api:Run",
    "RunFailed": "runctl.errors:RunFailed",
    "ActivityFailedException": "runctl.errors:ActivityFailedException",
    "LoggingError": "runctl.job.context:LoggingError",
    "RunStatus": "runctl.status:RunStatus",
    "RunctlError": "runctl.errors:RunctlError",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    ref = _LAZY.get(name)
    if ref is None:
        raise AttributeError(f"module 'runctl' has no attribute {name!r}")
    import importlib

    module, _, attr = ref.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
