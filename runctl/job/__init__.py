"""The job side: everything that runs where a job runs, standard library only (Python >= 3.8).

runctl ships this package whole: into every run directory as ``.runctl/lib/runctl_job/``
(the launcher, the run-context client, the rank shim) and to SSH hosts and Slurm login
nodes as the agent's folder (the agent serves it, checked, from memory). Inside runctl it is
``runctl.job``, and core and the backends import the very same modules. Its modules import
each other relatively only, so both names work; nothing here may import runctl's other
packages or a third-party library (the import-linter contracts in pyproject.toml say so).

- protocol: the one table of names, paths, states and variables both sides share;
- launcher: starts the job in RUN_DIR, records its status, owns the run (its lock);
- ownership: who owns RUN_DIR now (lock, abandon, liveness, the cancel marker);
- safefs: reads and removals inside RUN_DIR that never follow what a job made;
- events: the events.jsonl record format, written and read;
- task: the per-rank shim of a multi-task Slurm job;
- agent: runctl's agent on an SSH host;
- context/: ``Run.get_context()`` in a job (the v1 Run API);
- shim/: ``azureml.core`` and ``runctl`` for jobs whose Python has neither (shipped apart);
- entry/: the two scripts a run directory starts from (shipped apart).
"""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_APART = ("shim", "entry")  # shipped to their own places, not inside the package


def package_files():
    """(file on this machine, path relative to the package's parent) of every module of the
    package proper, sorted: what run directories and SSH hosts receive as runctl_job/."""
    out = []
    for root, dirs, names in os.walk(_HERE):
        dirs[:] = sorted(d for d in dirs if not d.startswith("__") and not (root == _HERE and d in _APART))
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                out.append((path, "runctl_job/" + os.path.relpath(path, _HERE).replace(os.sep, "/")))
    return sorted(out, key=lambda item: item[1])


def entry_file(name):
    """One of entry/'s scripts (``launcher.py``, ``runctl_task.py``) on this machine."""
    return os.path.join(_HERE, "entry", name)


def shim_dir():
    """shim/ on this machine: ``azureml/``, ``runctl/`` and the job's sitecustomize.py."""
    return os.path.join(_HERE, "shim")
