"""`runctl shim install`: make ``from azureml.core import Run`` work in a Python environment
of the user's choosing, outside any runctl job, when no Azure ML SDK is installed there:
the script then runs as an offline run recorded in the store (as ``from runctl import Run``).

The install is one ``runctl-azureml-shim.pth`` file in that environment's site-packages,
whose one line calls ``activate()``: a meta-path finder placed LAST, so a real
``azureml`` always wins; it maps ``azureml`` to runctl's shim package and
``runctl_context`` to ``runctl.context`` (the very module, so the Run class the shim hands
out is the one runctl's API records offline runs for).
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

from .errors import InputError

PTH_NAME = "runctl-azureml-shim.pth"
PTH_LINE = "import runctl.shimpath; runctl.shimpath.activate()\n"
SHIM_ROOT = Path(__file__).resolve().parent / "_shim"


class _SameModule(importlib.abc.Loader):
    """Loads ``runctl_context[.x]`` as the very module ``runctl.context[.x]`` (one module object:
    loaded twice, its job-side branch would look for files that exist only in a run)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module("runctl.context" + spec.name[len("runctl_context"):])
        if spec.name == "runctl_context":
            # Its submodules too, now: the import system looks in sys.modules before any finder,
            # and would otherwise load runctl/context/run.py a second time from the package's path.
            import pkgutil

            for info in pkgutil.iter_modules(module.__path__):
                sys.modules.setdefault(f"runctl_context.{info.name}",
                                       importlib.import_module(f"runctl.context.{info.name}"))
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class ShimFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: Any = None) -> Any:
        if fullname == "runctl_context" or fullname.startswith("runctl_context."):
            return importlib.machinery.ModuleSpec(fullname, _SameModule(), is_package=fullname == "runctl_context")
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
