"""runctl job-side start-up hook (stdlib only): make ``azureml.core`` resolve to runctl's
run context when the real azureml-core is not installed.

The shim directory is appended to the END of sys.path, so a real installation always
wins. A sitecustomize.py that this file shadows (later on sys.path) still runs.
"""

import importlib.util
import os
import sys


def _runctl_setup():
    here = os.path.dirname(os.path.abspath(__file__))
    import runctl_protocol  # beside this file in RUN_DIR/.runctl/lib

    shim = os.environ.get(runctl_protocol.SHIM)
    if shim and shim not in sys.path:
        sys.path.append(shim)
    for entry in sys.path:
        if os.path.abspath(entry or ".") == here:
            continue
        candidate = os.path.join(entry or ".", "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_runctl_chained_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


_runctl_setup()
del _runctl_setup
