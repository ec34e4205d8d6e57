"""runctl job-side start-up hook (stdlib only): make ``azureml.core`` resolve to runctl's
run context when the real azureml-core is not installed.

The shim directory is appended to the END of sys.path, so a real installation always
wins. A sitecustomize.py that this file shadows (later on sys.path) still runs.
"""

import os
import sys


def _runctl_setup():
    here = os.path.dirname(os.path.abspath(__file__))
    from runctl_job import protocol as runctl_protocol  # beside this file in RUN_DIR/.runctl/lib

    shim = os.environ.get(runctl_protocol.SHIM)
    if shim and shim not in sys.path:
        sys.path.append(shim)
    for entry in sys.path:
        if os.path.abspath(entry or ".") == here:
            continue
        candidate = os.path.join(entry or ".", "sitecustomize.py")
        if os.path.isfile(candidate):
            import importlib.util  # only then: it costs a job's start-up about 3 ms

            spec = importlib.util.spec_from_file_location("_runctl_chained_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


class _RealAzuremlCore(object):
    """When the real azureml-core is installed in the job's Python, it wins the import, and
    its offline Run.get_context() would swallow every metric: once ``azureml.core`` is
    loaded, its ``Run.get_context`` is pointed at runctl's run (everything else it offers
    keeps working), and the run's log says so, once."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "azureml.core":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        origin = os.path.abspath(spec.origin or "")
        from runctl_job import protocol as runctl_protocol

        shim = os.environ.get(runctl_protocol.SHIM) or "//"
        if spec.loader is None or origin.startswith(os.path.abspath(shim) + os.sep):
            return spec  # runctl's own shim: nothing to point
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            _point_get_context(module)

        spec.loader.exec_module = exec_module
        return spec


def _point_get_context(module):
    from runctl_job import context as runctl_context

    run_cls = getattr(module, "Run", None)
    if not isinstance(run_cls, type) or not hasattr(run_cls, "get_context"):
        return  # not an SDK we know: leave it as it is

    def get_context(cls, allow_offline=True, used_for_context_manager=False, **kwargs):
        return runctl_context.Run.get_context(allow_offline, used_for_context_manager, **kwargs)

    run_cls.get_context = classmethod(get_context)
    sys.stderr.write("runctl: azureml-core %s is installed; Run.get_context() returns runctl's run (its other "
                     "classes are azureml-core's)\n" % getattr(module, "VERSION", "?"))
    sys.stderr.flush()


_runctl_setup()
del _runctl_setup
def _in_a_job():
    try:
        from runctl_job import protocol as runctl_protocol
    except ImportError:
        return False
    return bool(os.environ.get(runctl_protocol.RUN_ID))


if _in_a_job():
    sys.meta_path.insert(0, _RealAzuremlCore())
