"""Submitting a job: snapshot, run record, launch spec, backend submit (and rerun)."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from runctl.config.jobconfig import JobConfig
from runctl.errors import BackendUnreachable, DiskFull, InputError, RunctlError, StartError
from runctl.job import protocol
from runctl.job.launcher import this_process
from runctl.ops import staging
from runctl.ops.portal import portal_base
from runctl.ops.session import Session
from runctl.status import RunStatus
from runctl.store.snapshot import Listing, ObjectStore, check_size, git_properties, list_source, take_snapshot
from runctl.store.sqlite import RunRecord, Store

if TYPE_CHECKING:
    from runctl.backends.base import Backend, Handle, LaunchSpec


DEFAULT_GRACE_S = 10.0


def list_job_source(session: Session, source: Path, script: str | None = None, size_hint: str = "") -> Listing:
    """What the snapshot of ``source`` will hold, checked: not the store or inside it, within
    the size limit, and holding ``script`` (which an ignore file might leave out)."""
    store_dir = session.ws.store_dir.resolve()
    src = source.resolve()
    if src == store_dir or store_dir in src.parents:
        raise InputError(f"{src}: source_directory is runctl's store (or inside it: {store_dir}); "
                         f"point source_directory at your project")
    listing = list_source(src, exclude=(store_dir,))
    try:
        check_size(listing, session.ws.snapshot_max_mb)
    except InputError as e:
        raise InputError(f"{e}{size_hint}") from None
    if script is not None:
        wanted = Path(script).as_posix().removeprefix("./")
        if not any(e.path == wanted for e in listing.entries):
            raise InputError(f"{src / script}: the script is left out of the snapshot by an ignore file "
                             f"(.gitignore, .runctlignore or .amlignore); un-ignore it, e.g. add !{wanted} "
                             f"to .runctlignore")
    return listing


def make_snapshot(session: Session, source: Path, size_hint: str = "", script: str | None = None) -> str:
    """Snapshot ``source`` into the store (leaving the store itself out); returns its id."""
    store = session.store
    listing = list_job_source(session, source, script, size_hint)
    with no_space_is_an_error(store.dir):
        return take_snapshot(listing, store.objects, store.stat_cache_get, store.stat_cache_put)


@contextlib.contextmanager
def no_space_is_an_error(path: Path) -> Iterator[None]:
    """A full disk (or quota) becomes one line naming where, exit 1, instead of a traceback."""
    import sqlite3

    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFull(f"no space left on {e.filename or path}; free some space (`runctl gc` removes what "
                       f"runctl no longer needs) and try again") from e
    except sqlite3.OperationalError as e:
        if "full" not in str(e):
            raise
        raise DiskFull(f"no space left on {path}; free some space (`runctl gc` removes what runctl "
                       f"no longer needs) and try again") from e


def check(session: Session, job: JobConfig) -> Backend:
    """Everything that can be known wrong before a run exists (exit 2, nothing made)."""
    backend = session.backend(job.compute_target)
    check_placement(job, backend)
    backend.check_job(launch_spec(job, backend, "check", "-", portal=portal_base(session.store.dir)))
    return backend


def launch_spec(job: JobConfig, backend: Backend, run_id: str, snapshot_id: str, number: int | None = None,
                code_files: tuple[tuple[str, str], ...] = (), portal: str | None = None,
                read_code: Callable[[str], bytes | None] | None = None) -> LaunchSpec:
    """The run's LaunchSpec. ``read_code(path)``: a file of the run's code (its snapshot's, or
    the source directory's before the snapshot exists), for a requirements file."""
    from runctl.backends.base import LaunchSpec

    python_env = None
    if job.script is not None:
        python = (job.environment.get("python") or {}).get("interpreter_path") or backend.default_interpreter()
        argv = [python, job.script, *job.arguments]
        python_env = environment_definition(job, backend, python, read_code or _source_reader(job))
    elif isinstance(job.command, str):
        argv = ["/bin/sh", "-c", job.command]
    else:
        argv = list(job.command or [])
    env, secret_env = split_secrets(job.environment_variables)
    if number is not None:
        env[protocol.RUN_NUMBER] = str(number)
    env.setdefault(protocol.PORTAL, portal or portal_base())
    return LaunchSpec(
        run_id=run_id,
        experiment=job.experiment,
        argv=argv,
        env=env,
        secret_env=secret_env,
        timeout_s=job.max_run_duration_seconds,
        system_metrics_interval_s=float(job.system_metrics_interval_s),
        grace_s=float(backend.options.get("cancel_grace_s", DEFAULT_GRACE_S)),
        snapshot_id=snapshot_id,
        resources=job.resources,
        environment=job.environment,
        node_count=job.node_count,
        distributed=job.distributed_job_config or {},
        code_files=code_files,
        python_env=python_env,
    )


def _source_reader(job: JobConfig) -> Callable[[str], bytes | None]:
    def read(rel: str) -> bytes | None:
        try:
            return (job.source_directory / rel).read_bytes()
        except OSError:
            return None

    return read


def snapshot_reader(objects: ObjectStore, code_files: tuple[tuple[str, str], ...]) -> Callable[[str], bytes | None]:
    """``read_code`` over a snapshot: the exact bytes the run's code has."""
    digests = dict(code_files)

    def read(rel: str) -> bytes | None:
        digest = digests.get(Path(rel).as_posix().lstrip("./"))
        try:
            return objects.object_path(digest).read_bytes() if digest else None
        except OSError:
            return None

    return read


def environment_definition(job: JobConfig, backend: Backend, python: str,
                           read_code: Callable[[str], bytes | None]) -> dict[str, Any] | None:
    """What defines the job's Python environment (runctl/job/pyenv.py builds it on the compute
    host), or None when the job names no packages or its backend installs them itself."""
    py = job.environment.get("python") or {}
    named = [f for f in ("pip_packages", "pip_requirements", "conda_dependencies_file") if py.get(f)]
    if not named:
        return None
    where = str(job.job_file or "the job")
    if py.get("user_managed_dependencies"):
        raise InputError(f"{where}: environment.python.{named[0]} with user_managed_dependencies: true; "
                         f"drop one (user-managed: runctl installs nothing and uses the interpreter as it is)")
    if backend.installs_python_packages:
        return None
    if py.get("conda_dependencies_file"):
        if py.get("pip_packages") or py.get("pip_requirements"):
            raise InputError(f"{where}: environment.python.conda_dependencies_file with pip_packages or "
                             f"pip_requirements: put the pip packages in the conda file's `pip:` section")
        data = read_code(py["conda_dependencies_file"])
        if data is None:
            raise InputError(f"{where}: environment.python.conda_dependencies_file: {py['conda_dependencies_file']!r} "
                             f"is not a file in the source directory ({job.source_directory})")
        out: dict[str, Any] = {"base": python, "conda_file": data.decode("utf-8", "replace"),
                               "conda_name": py["conda_dependencies_file"]}
        if backend.options.get("env_root"):
            out["root"] = backend.options["env_root"]
        return out
    lines = [str(line) for line in py.get("pip_packages") or []]
    if py.get("pip_requirements"):
        data = read_code(py["pip_requirements"])
        if data is None:
            raise InputError(f"{where}: environment.python.pip_requirements: {py['pip_requirements']!r} is not a "
                             f"file in the source directory ({job.source_directory})")
        lines += [ln.strip() for ln in data.decode("utf-8", "replace").splitlines()
                  if ln.strip() and not ln.strip().startswith("#")]
    out = {"base": python, "requirements": lines, "installer_options": installer_options(backend.options)}
    if backend.options.get("env_root"):
        out["root"] = backend.options["env_root"]
    return out


def installer_options(options: dict[str, Any]) -> list[str]:
    """The target's ``python_packages`` (where packages come from: an index, find-links, a
    wheelhouse, no index) as the installer's arguments (pip's and uv's are the same)."""
    where = options.get("python_packages") or {}
    args: list[str] = []
    if where.get("index_url"):
        args += ["--index-url", where["index_url"]]
    for url in where.get("extra_index_urls") or []:
        args += ["--extra-index-url", url]
    for link in where.get("find_links") or []:
        args += ["--find-links", link]
    if where.get("no_index"):
        args.append("--no-index")
    return args


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
    if store.full:
        raise DiskFull(f"{store.full}; free some space (`runctl gc` removes what runctl no longer needs) and try again")
    backend = check(session, job)
    if unique_key is not None:
        _refresh_holders(session, unique_key)
    if snapshot_id is None:
        snapshot_id = make_snapshot(session, job.source_directory, script=job.script)
    record, created = new_run(session, job, backend, snapshot_id, unique_key=unique_key, properties=properties)
    if not created:
        return record, False
    with start_failures(session, [record.id]):
        spec, plan = prepare(session, job, backend, record, snapshot_id)
        handle = backend.submit(spec, plan)
    store.update(record.id, handle=handle.to_dict(), status=RunStatus.STARTING, host=handle.host)
    return store.get(record.id), True


def new_run(session: Session, job: JobConfig, backend: Backend, snapshot_id: str, *, unique_key: str | None = None,
            properties: dict[str, str] | None = None, run_id: str | None = None, parent_id: str | None = None,
            tags: dict[str, str] | None = None) -> tuple[RunRecord, bool]:
    """The run's record, with its properties and tags (nothing exists on the backend yet)."""
    store = session.store
    record, created = store.create_run(
        job.experiment, unique_key=unique_key, display_name=job.display_name, description=job.description,
        compute_target=job.compute_target, backend=backend.name, snapshot_id=snapshot_id,
        spec={**job_document(job), "workspace_config": str(session.ws.config_path) if session.ws.config_path else None},
        run_id=run_id, parent_id=parent_id,
    )
    if not created:
        return record, False
    props = {"ContentSnapshotId": snapshot_id, "azureml.runsource": "runctl"}
    props.update(git_properties(job.source_directory) if properties is None else properties)
    store.add_properties(record.id, props)
    if job.tags or tags:
        store.set_tags(record.id, {**job.tags, **(tags or {})})
    return record, True


def prepare(session: Session, job: JobConfig, backend: Backend, record: RunRecord,
            snapshot_id: str) -> tuple[LaunchSpec, Handle]:
    """Place the run (recorded before anything exists there: a submitter killed at any instant
    from here on leaves a run that the next refresh adopts or marks abandoned), then stage
    its RUN_DIR (while the backend begins what is slow to start). Returns what
    ``backend.submit`` needs."""
    store = session.store
    code = staging.code_files(store.objects, snapshot_id)
    spec = launch_spec(job, backend, record.id, snapshot_id, record.number, code, portal=portal_base(store.dir),
                       read_code=snapshot_reader(store.objects, code))
    backend.on_queued = functools.partial(_queued, session, record.id)
    plan = backend.plan(spec)
    store.update(record.id, handle=plan.to_dict(), status=RunStatus.PREPARING)
    try:
        with no_space_is_an_error(Path(plan.run_dir)):
            backend.begin(spec, plan)
            objects = store.objects
            staging.stage(objects, backend.transport(plan), plan.run_dir,
                          staging.plan(objects, snapshot_id, spec.launcher_spec()))
    except BaseException:
        backend.abort(plan)
        raise
    return spec, plan


@contextlib.contextmanager
def start_failures(session: Session, run_ids: list[str]) -> Iterator[None]:
    """Whatever stops the runs from starting is recorded on each of them (Failed) and raised
    as a StartError (keeping the cause's exit code), or as DiskFull."""
    store = session.store
    try:
        yield
    except BackendUnreachable as e:
        # The compute side stopped answering: its launcher may have started and only the
        # answer got lost. A run whose place was recorded stays pending, handed to the next
        # command exactly as after a killed submit (adopted if its launcher started, else
        # recorded as never started); only a run with no place yet never ran.
        placed = [rid for rid in run_ids if _hand_over(store, rid)]
        for rid in run_ids:
            if rid not in placed:
                store.update(rid, status=RunStatus.FAILED, error=f"failed to start: {e}", synced=True)
        if not placed:
            raise
        first = placed[0]
        lost = BackendUnreachable(
            f"{e}; run {first}{' and others' if len(placed) > 1 else ''} may have started: `runctl status {first}` "
            f"finds out (it adopts the job if its launcher started, else records that it never ran)")
        lost.run_id = first  # type: ignore[attr-defined]
        raise lost from e
    except DiskFull as e:
        for rid in run_ids:
            store.update(rid, status=RunStatus.FAILED, error=str(e), synced=True)
        raise
    except RunctlError as e:
        for rid in run_ids:
            _keep_logs(session, rid)  # e.g. an image build's output: `runctl logs RUN` shows why
            store.update(rid, status=RunStatus.FAILED, error=f"failed to start: {e}", synced=True)
        wrapped = StartError(f"run {run_ids[0]} failed to start: {e}" if len(run_ids) == 1 else
                             f"runs {run_ids[0]}..{run_ids[-1]} failed to start: {e}")
        wrapped.exit_code = e.exit_code  # e.g. an unreachable daemon keeps its own exit code
        wrapped.run_id = run_ids[0]  # type: ignore[attr-defined]  # (the CLI prints it for -q/--json)
        raise wrapped from e
    except Exception as e:
        for rid in run_ids:
            store.update(rid, status=RunStatus.FAILED, error=f"failed to start: {e}", synced=True)
        failed = StartError(f"run {run_ids[0]} failed to start: {type(e).__name__}: {e}")
        failed.run_id = run_ids[0]  # type: ignore[attr-defined]
        raise failed from e


def _hand_over(store: Store, run_id: str) -> bool:
    """Leave a run whose place was recorded (a pending handle) to the next command, as if its
    submitter had been killed; False if it has no place yet."""
    record = store.get(run_id)
    if record.handle is None or record.handle.get("native_id"):
        return False
    store.update(run_id, spec={**(record.spec or {}), "handed_over": True})
    return True


def _keep_logs(session: Session, run_id: str) -> None:
    """Best effort: what a run that failed to start wrote to its logs/ reaches the store."""
    from runctl.backends.base import Handle
    from runctl.ops.sync import ingest_logs

    record = session.store.get(run_id)
    if record.handle is None:
        return
    try:
        ingest_logs(session.store, session.backend_for(record), Handle.from_dict(record.handle), run_id, final=True)
    except Exception:  # noqa: S110 - the start error is what the user must see
        pass


def _queued(session: Session, run_id: str, spec: LaunchSpec, why: str) -> None:
    """The backend waits for capacity before it can place the run: show it Queued, and why."""
    import sys

    session.store.update(run_id, status=RunStatus.QUEUED)
    print(f"runctl: run {run_id} is queued: {why}", file=sys.stderr)


def check_placement(job: JobConfig, backend: Backend) -> None:
    """Refuse multi-node or distributed jobs on backends that would silently run one process."""
    where = f"{job.job_file or 'the job'}"
    if job.node_count > backend.max_nodes:
        raise InputError(f"{where}: node_count: {job.node_count}, but the {backend.name} target "
                         f"{job.compute_target!r} runs at most {backend.max_nodes} node; use node_count: 1 "
                         f"or a multi-node target")
    check_environment_fields(job, backend)
    if job.distributed_job_config and backend.max_nodes == 1:
        raise InputError(f"{where}: distributed_job_config: the {backend.name} backend does not launch "
                         f"distributed jobs yet; remove it (a single process still sees every GPU it is given)")


IMAGE_FIELDS = ("image", "base_image", "dockerfile", "build_context", "shm_size")


def check_environment_fields(job: JobConfig, backend: Backend) -> None:
    """No environment field its target cannot honour is dropped without a word: packages that
    would be missing are an error (exit 2), an image the target does not use a warning."""
    import sys

    docker = job.environment.get("docker") or {}
    where, target = f"{job.job_file or 'the job'}", f"target {job.compute_target!r} ({backend.name})"
    pip = [f for f in ("pip_packages", "pip_requirements") if docker.get(f)]
    if not backend.runs_images:
        if pip:
            raise InputError(f"{where}: environment.docker.{pip[0]}: {target} runs jobs without images, so these "
                             f"packages would be missing; move them to environment.python.{pip[0]} (built on the "
                             f"host the job runs on, and into the image on Docker targets)")
        ignored = [f"environment.docker.{f}" for f in IMAGE_FIELDS if docker.get(f)]
        if ignored:
            print(f"runctl: {where}: {', '.join(ignored)} ignored on {target}: it runs the job with the host's Python "
                  f"(environment.python.interpreter_path, pip_packages)", file=sys.stderr)
    elif (job.environment.get("python") or {}).get("conda_dependencies_file"):
        raise InputError(f"{where}: environment.python.conda_dependencies_file: {target} runs images and does not "
                         f"build conda environments in them; use an image that has the environment "
                         f"(environment.docker.image, or a Dockerfile: environment.docker.dockerfile)")
    elif pip:
        print(f"runctl: {where}: environment.docker.{pip[0]} still works; environment.python.{pip[0]} is its place "
              f"now (honoured on every target)", file=sys.stderr)


def job_document(job: JobConfig) -> dict[str, Any]:
    """What is stored with the run (and resubmitted by rerun): the validated job, paths resolved."""
    doc = dict(job.document)
    doc["source_directory"] = str(job.source_directory)
    doc["experiment"] = job.experiment
    doc["compute_target"] = job.compute_target
    return {"job": doc, "job_file": str(job.job_file) if job.job_file else None, "submitter": this_process()}


def rerun(session: Session, record: RunRecord, compute: str | None = None) -> RunRecord:
    """Submit the exact snapshot of ``record`` again, with the same job settings."""
    from runctl.config.jobconfig import job_from_document

    if record.parent_id:
        raise InputError(f"run {record.id} is a child run of {record.parent_id}: its script made it, so it has "
                         f"no job of its own; rerun the parent (`runctl rerun {record.parent_id}`)")
    if not record.spec or not record.snapshot_id:
        raise InputError(f"run {record.id} was not submitted (an interactive or offline run); it has no job to "
                         f"rerun: submit a job file with `runctl submit JOB.yaml`")
    job = job_from_document(record.spec["job"], session.ws, compute=compute)
    old_props = session.store.properties(record.id)
    git = {k: v for k, v in old_props.items() if "git" in k}
    new, _ = submit(session, job, snapshot_id=record.snapshot_id, properties=git)
    session.store.add_properties(new.id, {"runctl.rerun_of": record.id})
    return new


def _refresh_holders(session: Session, unique_key: str) -> None:
    from runctl.ops.runs import refresh

    for r in session.store.runs(unfinished_only=True):
        if r.unique_key == unique_key:
            refresh(session, r)
