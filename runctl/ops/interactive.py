"""Runs started in this process: ``exp.start_logging()`` (notebooks) and recorded offline runs
(``Run.get_context()`` outside a job, which Azure ML kept nowhere and runctl keeps in the store).
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runctl.job.launcher import this_process
from runctl.status import RunStatus
from runctl.store import private

if TYPE_CHECKING:
    from runctl.api import Experiment, InteractiveRun

OFFLINE_EXPERIMENT = "offline"


def start_interactive(experiment: Experiment, cls: type[InteractiveRun], *, outputs: str | bool | None,
                      snapshot_directory: str | None, display_name: str | None, tags: dict[str, str] | None,
                      run_id: str | None, kind: str = "interactive") -> InteractiveRun:
    from runctl.ops.submit import make_snapshot
    from runctl.store.snapshot import git_properties

    session = experiment.workspace._session
    store = session.store
    props = {"azureml.runsource": "runctl.interactive"}
    snapshot_id = None
    if snapshot_directory is not None:
        src = Path(snapshot_directory).resolve()
        snapshot_id = make_snapshot(session, src, "; or pass snapshot_directory=None to start_logging")
        props["ContentSnapshotId"] = snapshot_id
        props.update(git_properties(src))
    now = time.time()
    record, _ = store.create_run(
        experiment.name, kind=kind, status=RunStatus.RUNNING, run_id=run_id or str(uuid.uuid4()),
        display_name=display_name, snapshot_id=snapshot_id, started_at=now, host=socket.gethostname(),
        spec={**this_process(), "cwd": os.getcwd()},
    )
    store.add_properties(record.id, props)
    if tags:
        store.set_tags(record.id, {str(k): "" if v is None else str(v) for k, v in tags.items()})
    run = cls(experiment.workspace, store.get(record.id))
    if outputs is not False:
        run.outputs_dir = os.path.abspath("outputs" if outputs in (None, True, "") else str(outputs))
        if isinstance(outputs, str) and outputs:
            os.makedirs(run.outputs_dir, exist_ok=True)
    return run


def finish_interactive(run: InteractiveRun, status: RunStatus, error: str | None) -> None:
    """Collect the tracked outputs folder and record the final status (once)."""
    session = run._session
    record = session.store.get(run.id)
    if record.status.is_terminal:
        return
    if run.outputs_dir and os.path.isdir(run.outputs_dir):
        dest = session.store.run_dir(run.id) / "outputs"
        private.copy_tree(Path(run.outputs_dir), dest)
    now = time.time()
    session.store.update(run.id, status=status, error=error, ended_at=now, synced=True)
    session.store.finish_children(run.id, status, now)
    run._status = status.value


def finish_at_exit(run: InteractiveRun) -> None:
    failure: list[BaseException] = []
    previous = sys.excepthook

    def hook(exc_type: Any, exc: BaseException, tb: Any) -> None:
        failure.append(exc)
        previous(exc_type, exc, tb)

    sys.excepthook = hook

    def finish() -> None:
        try:
            if failure:
                run.fail(f"{type(failure[0]).__name__}: {failure[0]}")
            else:
                run.complete()
        except Exception:
            pass

    atexit.register(finish)
