"""Submitting a tuning run: ``runctl submit tune.yaml`` with a ``hyperdrive:`` section (or
``experiment.submit(HyperDriveConfig(...))``). The parent run is recorded with the whole
job and its tuning, and a detached controller (controller.py) is started for it: the
submit returns at once, and the controller samples, starts and judges the children."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from runctl.config import hyperdrive as hd
from runctl.errors import InputError
from runctl.ops import detached
from runctl.ops.submit import check, job_document, make_snapshot
from runctl.status import RunStatus
from runctl.store.snapshot import git_properties
from runctl.store.sqlite import RunRecord

if TYPE_CHECKING:
    from runctl.config.jobconfig import JobConfig
    from runctl.ops.session import Session


def submit_tuning(session: Session, job: JobConfig, snapshot_id: str | None = None) -> RunRecord:
    """The parent run, with its controller started; returns the parent."""
    tuning = job.hyperdrive
    if tuning is None:
        raise InputError(f"{job.job_file or 'the job'}: no hyperdrive section to tune with")
    if job.script is None:
        raise InputError(f"{job.job_file or 'the job'}: hyperdrive passes its samples as arguments to the script; "
                         f"this job has a command instead (use script:)")
    if tuning.seed is None:  # drawn once and kept: a restarted controller samples the same
        tuning = replace(tuning, seed=secrets.randbelow(2**31))
    if tuning.sampling == "bayesian":
        from runctl.ops.hyperdrive.bayes import require_optuna

        require_optuna()  # missing, it is an error now (exit 2), not in the detached controller
    store = session.store
    backend = check(session, job)
    if snapshot_id is None:
        snapshot_id = make_snapshot(session, job.source_directory, script=job.script)
    doc = job_document(job)
    doc["job"]["hyperdrive"] = hd.document(tuning)
    parent, _ = store.create_run(
        job.experiment, kind="hyperdrive", status=RunStatus.RUNNING, display_name=job.display_name,
        description=job.description, compute_target=job.compute_target, backend=backend.name,
        snapshot_id=snapshot_id, started_at=time.time(),
        spec={**doc, "hyperdrive": hd.document(tuning),
              "workspace_config": str(session.ws.config_path) if session.ws.config_path else None})
    store.add_properties(parent.id, {
        "ContentSnapshotId": snapshot_id, "azureml.runsource": "hyperdrive", "runTemplate": "HyperDrive",
        "primary_metric_config": json.dumps({"name": tuning.primary_metric_name, "goal": tuning.primary_metric_goal}),
        **git_properties(job.source_directory)})
    store.set_tags(parent.id, {**job.tags, "runctl.hyperdrive": tuning.sampling})
    detached.ensure(session, store.get(parent.id))
    return store.get(parent.id)


def rerun_tuning(session: Session, record: RunRecord, compute: str | None = None) -> RunRecord:
    """The same tuning again (its snapshot, job, space and seed): the same samples."""
    from runctl.config.jobconfig import job_from_document

    job = job_from_document(record.spec["job"], session.ws, compute=compute)  # type: ignore[index]
    new = submit_tuning(session, job, snapshot_id=record.snapshot_id)
    session.store.add_properties(new.id, {"runctl.rerun_of": record.id})
    return new

