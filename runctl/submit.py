"""Submitting a job: snapshot, run record, launch spec, backend submit (and rerun)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, RunctlError, StartError
from .jobconfig import JobConfig
from .launcher import this_process
from .session import Session
from .snapshot import ObjectStore, check_size, git_properties, list_source, take_snapshot
from .status import RunStatus
from .store import RunRecord

if TYPE_CHECKING:
    from .backends.base import Backend, LaunchSpec

DEFAULT_GRACE_S = 10.0


def make_snapshot(session: Session, source: Path, size_hint: str = "") -> str:
    """Snapshot ``source`` into the store (leaving the store itself out); returns its id."""
    store = session.store
    listing = list_source(source, exclude=(store.dir,))
    try:
        check_size(listing, session.ws.snapshot_max_mb)
    except InputError as e:
        raise InputError(f"{e}{size_hint}") from None
    return take_snapshot(listing, ObjectStore(store.dir), store.stat_cache_get, store.stat_cache_put)


def launch_spec(job: JobConfig, backend: Backend, run_id: str, snapshot_id: str, number: int | None = None) -> LaunchSpec:
    from .backends.base import LaunchSpec

    if job.script is not None:
        python = (job.environment.get("python") or {}).get("interpreter_path") or backend.default_interpreter()
        argv = [python, job.script, *job.arguments]
    elif isinstance(job.command, str):
        argv = ["/bin/sh", "-c", job.command]
    else:
        argv = list(job.command or [])
    env, secret_env = split_secrets(job.environment_variables)
    if number is not None:
        env["RUNCTL_RUN_NUMBER"] = str(number)
    return LaunchSpec(
        run_id=run_id,
        experiment=job.experiment,
        argv=argv,
        env=env,
        secret_env=secret_env,
        timeout_s=job.max_run_duration_seconds,
        grace_s=float(backend.options.get("cancel_grace_s", DEFAULT_GRACE_S)),
        snapshot_id=snapshot_id,
        resources=job.resources,
        environment=job.environment,
        node_count=job.node_count,
    )


SECRET_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")


def split_secrets(variables: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Values written ``${env:NAME}`` come from runctl's own environment at launch and are never
    stored: not in the run's definition (which keeps the reference), spec.json or the store."""
    env, secrets = {}, {}
    for key, value in variables.items():
        m = SECRET_REF.match(value)
        if m is None:
            env[key] = value
        elif m.group(1) in os.environ:
            secrets[key] = os.environ[m.group(1)]
        else:
            raise InputError(f"environment.environment_variables.{key}: {value} but {m.group(1)} is not set in "
                             f"runctl's environment; export it before submitting")
    return env, secrets


def submit(session: Session, job: JobConfig, *, unique_key: str | None = None,
           snapshot_id: str | None = None, properties: dict[str, str] | None = None) -> tuple[RunRecord, bool]:
    """Start ``job``; returns (run, created). With ``unique_key``, an unfinished run holding
    the key is returned (created=False) instead of starting another."""
    store = session.store
    backend = session.backend(job.compute_target)
    check_placement(job, backend)
    backend.check_job(launch_spec(job, backend, "check", snapshot_id or "-"))
    if unique_key is not None:
        _refresh_holders(session, unique_key)
    if snapshot_id is None:
        snapshot_id = make_snapshot(session, job.source_directory)
    record, created = store.create_run(
        job.experiment, unique_key=unique_key, display_name=job.display_name, description=job.description,
        compute_target=job.compute_target, backend=backend.name, snapshot_id=snapshot_id,
        spec=job_document(job),
    )
    if not created:
        return record, False
    props = {"ContentSnapshotId": snapshot_id, "azureml.runsource": "runctl"}
    props.update(git_properties(job.source_directory) if properties is None else properties)
    store.add_properties(record.id, props)
    if job.tags:
        store.set_tags(record.id, job.tags)
    spec = launch_spec(job, backend, record.id, snapshot_id, record.number)
    try:
        handle = backend.submit(spec)
    except RunctlError as e:
        store.update(record.id, status=RunStatus.FAILED, error=f"failed to start: {e}", synced=True)
        wrapped = StartError(f"run {record.id} failed to start: {e}")
        wrapped.exit_code = e.exit_code  # e.g. an unreachable daemon keeps its own exit code
        raise wrapped from e
    except Exception as e:
        store.update(record.id, status=RunStatus.FAILED, error=f"failed to start: {e}", synced=True)
        raise StartError(f"run {record.id} failed to start: {type(e).__name__}: {e}") from e
    store.update(record.id, handle=handle.to_dict(), status=RunStatus.STARTING, host=handle.host)
    return store.get(record.id), True


def check_placement(job: JobConfig, backend: Backend) -> None:
    """Refuse multi-node or distributed jobs on backends that would silently run one process."""
    where = f"{job.job_file or 'the job'}"
    if job.node_count > backend.max_nodes:
        raise InputError(f"{where}: node_count: {job.node_count}, but the {backend.name} target "
                         f"{job.compute_target!r} runs at most {backend.max_nodes} node; use node_count: 1 "
                         f"or a multi-node target")
    if job.distributed_job_config and backend.max_nodes == 1:
        raise InputError(f"{where}: distributed_job_config: the {backend.name} backend does not launch "
                         f"distributed jobs yet; remove it (a single process still sees every GPU it is given)")


def job_document(job: JobConfig) -> dict[str, Any]:
    """What is stored with the run (and resubmitted by rerun): the validated job, paths resolved."""
    doc = dict(job.document)
    doc["source_directory"] = str(job.source_directory)
    doc["experiment"] = job.experiment
    doc["compute_target"] = job.compute_target
    return {"job": doc, "job_file": str(job.job_file) if job.job_file else None, "submitter": this_process()}


def rerun(session: Session, record: RunRecord, compute: str | None = None) -> RunRecord:
    """Submit the exact snapshot of ``record`` again, with the same job settings."""
    from .jobconfig import job_from_document

    if not record.spec or not record.snapshot_id:
        raise StartError(f"run {record.id} has no stored job to rerun")
    job = job_from_document(record.spec["job"], session.ws, compute=compute)
    old_props = session.store.properties(record.id)
    git = {k: v for k, v in old_props.items() if "git" in k}
    new, _ = submit(session, job, snapshot_id=record.snapshot_id, properties=git)
    session.store.add_properties(new.id, {"runctl.rerun_of": record.id})
    return new


def _refresh_holders(session: Session, unique_key: str) -> None:
    from .runs import refresh

    for r in session.store.runs(unfinished_only=True):
        if r.unique_key == unique_key:
            refresh(session, r)
