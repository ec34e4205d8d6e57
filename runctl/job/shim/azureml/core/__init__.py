"""``from azureml.core import Run`` inside a runctl job, when azureml-core is not installed.

``Run`` is the job's run context. Workspace, Experiment and ScriptRunConfig come from
runctl's Python API where runctl itself is installed next to the job (local backend);
elsewhere using them raises an error that says so.
"""

import os as _os

from ._surface import (  # noqa: F401
    VERSION,
    AzureOnlyError,
    ComputeTarget,
    CondaDependencies,
    Dataset,
    Datastore,
    Environment,
    Model,
    RunConfiguration,
)

try:
    from runctl.api import Experiment, ScriptRunConfig, Workspace  # noqa: F401
    if _os.environ.get("RUNCTL_RUN_ID"):  # in a job: the job's run context, as shipped with it
        from runctl_job.context import Run  # noqa: F401
    else:  # outside jobs (`runctl shim install`): runctl's own Run, with v1's Run.get(ws, id), Run.list(...)
        from runctl.api import Run  # noqa: F401
except ImportError:
    from runctl_job.context import Run  # noqa: F401

    class _NeedsRunctl:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(
                "azureml.core.%s needs runctl installed where the job runs (pip install runctl); "
                "inside a job, use Run.get_context()" % type(self).__name__
            )

        @classmethod
        def from_config(cls, *args, **kwargs):
            return cls()

    class Workspace(_NeedsRunctl):
        pass

    class Experiment(_NeedsRunctl):
        pass

    class ScriptRunConfig(_NeedsRunctl):
        pass


__all__ = ["VERSION", "ComputeTarget", "Dataset", "Datastore", "Environment", "Experiment", "Model", "Run",
           "RunConfiguration", "ScriptRunConfig", "Workspace"]
