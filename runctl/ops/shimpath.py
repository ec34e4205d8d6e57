"""`runctl shim install`: make ``from azureml.core import Run`` work in a Python environment
of the user's choosing, outside any runctl job, when no Azure ML SDK is installed there:
the script then runs as an offline run recorded in the store (as ``from runctl import Run``).

The install is one ``runctl-azureml-shim.pth`` file in that environment's site-packages,
whose one line calls ``activate()``: a meta-path finder placed LAST, so a real
``azureml`` always wins; it maps ``azureml`` to runctl's shim package and
``runctl_job`` (the job-side package as a run directory names it) to ``runctl.job`` (the
very modules, so the Run class the shim hands out is the one runctl's API records offline
runs for).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Sequence

from runctl.errors import InputError
from runctl.job import shim_dir

PTH_NAME = "runctl-azureml-shim.pth"
PTH_LINE = "import runctl.ops.shimpath; runctl.ops.shimpath.activate()\n"
SHIM_ROOT = Path(shim_dir())


JOB, JOB_HERE = "runctl_job", "runctl.job"


class _SameModule(importlib.abc.Loader):
    """Loads ``runctl_job[.x]`` as the very module ``runctl.job[.x]`` (one module object: a
    second copy of the run-context client would keep its own runs)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(JOB_HERE + spec.name[len(JOB):])
        if spec.name == JOB:
            # The client and everything it loaded too, now: the import system looks in
            # sys.modules before any finder, and would otherwise load runctl/job/context/run.py
            # a second time from the package's path.
            importlib.import_module(JOB_HERE + ".context")
            for name in [n for n in sys.modules if n.startswith(JOB_HERE + ".")]:
                sys.modules.setdefault(JOB + name[len(JOB_HERE):], sys.modules[name])
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class ShimFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: Any = None) -> Any:
        if fullname == JOB or fullname.startswith(JOB + "."):
            return importlib.machinery.ModuleSpec(fullname, _SameModule(), is_package=fullname == JOB)
        if fullname == "azureml":
            init = SHIM_ROOT / "azureml" / "__init__.py"
            return importlib.util.spec_from_file_location(fullname, init,
                                                          submodule_search_locations=[str(init.parent)])
        return None


def activate() -> None:
    """Called by the .pth line at interpreter start: cheap, imports nothing else."""
    if not any(isinstance(f, ShimFinder) for f in sys.meta_path):
        sys.meta_path.append(ShimFinder())


def _site_packages(python: str) -> Path:
    code = ("import sysconfig, sys; print(sysconfig.get_paths()['purelib']); "
            "import importlib.util; print(importlib.util.find_spec('runctl') is not None)")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                             cwd="/").stdout  # (not from here: a runctl folder here is not an install)
    except (OSError, subprocess.SubprocessError) as e:
        raise InputError(f"--python {python}: cannot run it ({e})") from None
    purelib, has_runctl = out.split()
    if has_runctl != "True":
        raise InputError(f"{python} cannot import runctl; install runctl in that environment first "
                         f"(pip install runctl), then run `runctl shim install --python {python}` again")
    return Path(purelib)


def install(python: str | None = None) -> Path:
    site = _site_packages(python or sys.executable)
    pth = site / PTH_NAME
    tmp = pth.with_name(f".{PTH_NAME}.{os.getpid()}")
    try:
        tmp.write_text(PTH_LINE)
        os.replace(tmp, pth)
    except OSError as e:
        raise InputError(f"cannot write {pth}: {e.strerror}; use a Python environment you can write to "
                         f"(a venv), or --python PATH") from None
    return pth


def uninstall(python: str | None = None) -> Path | None:
    site = _site_packages(python or sys.executable)
    pth = site / PTH_NAME
    if not pth.exists():
        return None
    pth.unlink()
    return pth
