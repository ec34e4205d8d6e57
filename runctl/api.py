"""The Python submission API, mirroring Azure ML SDK v1: Workspace, Experiment,
ScriptRunConfig and a store-backed Run.

    ws = Workspace.from_config()
    exp = Experiment(ws, "train")
    run = exp.submit(ScriptRunConfig(source_directory=".", script="train.py"))
    run.wait_for_completion(show_output=True)
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from runctl.config.workspace import load_workspace
from runctl.errors import InputError, RunFailed
from runctl.job.context import run as ctx
from runctl.job.context._writer import EventWriter
from runctl.job.events import event_record
from runctl.ops.portal import portal_url
from runctl.ops.session import Session
from runctl.status import RunStatus
from runctl.store.sqlite import RunRecord, Store

_EXPERIMENT_NAME = re.compile(r"^[a-zA-Z0-9][\w\-]{0,254}$")




class Workspace:
    """A workspace: the store and compute targets of a ``.runctl/config.yaml`` (or the defaults)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None, **kwargs: Any) -> Workspace:
        """Find ``.runctl/config.yaml`` from ``path`` (a directory or the file) or the current directory."""
        if path is not None and Path(path).is_file():
            return cls(Session(load_workspace(config_path=Path(path))))
        return cls(Session(load_workspace(Path(path) if path else None)))

    @property
    def name(self) -> str:
        cfg = self._session.ws.config_path
        return cfg.parent.parent.name if cfg else "default"

    @property
    def store_dir(self) -> Path:
        return self._session.ws.store_dir

    @property
    def compute_targets(self) -> dict[str, Any]:
        return dict(self._session.ws.targets)

    @property
    def experiments(self) -> dict[str, Experiment]:
        names = self._session.store.experiment_names()
        return {n: Experiment(self, n) for n in names}

    def get_run(self, run_id: str) -> Run:
        return Run.get(self, run_id)

    def __repr__(self) -> str:
        return f"Workspace(name={self.name!r}, store={str(self.store_dir)!r})"


class Experiment:
    """A named group of runs (created on first use)."""

    def __init__(self, workspace: Workspace, name: str, **kwargs: Any) -> None:
        if not isinstance(name, str) or not _EXPERIMENT_NAME.match(name):
            raise InputError(f"experiment name {name!r}: use 1-255 letters, digits, _ or -, starting with a letter or digit")
        self.workspace = workspace
        self.name = name

    def __repr__(self) -> str:
        return f"Experiment(name={self.name!r})"

    def submit(self, config: ScriptRunConfig, tags: dict[str, str] | None = None, **kwargs: Any) -> Run:
        """Start ``config``: a ScriptRunConfig, or a HyperDriveConfig (azureml.train.hyperdrive)
        whose tuning run is returned as a HyperDriveRun at once."""
        from runctl.ops.submit import submit

        session = self.workspace._session
        tuning = getattr(config, "_runctl_hyperdrive", None)
        if tuning is not None:
            from runctl.ops.hyperdrive.tune import submit_tuning

            run_config, section = tuning()
            record = submit_tuning(session, run_config._to_job(session, self.name, hyperdrive=section))
        else:
            job = config._to_job(session, self.name)
            record, _ = submit(session, job)
        run = Run._from_record(self.workspace, record)
        if tags:
            run.set_tags(tags)
            run.flush()
        return run

    def start_logging(self, *args: Any, outputs: str | bool | None = None, snapshot_directory: str | None = ".",
                      display_name: str | None = None, tags: dict[str, str] | None = None, run_id: str | None = None,
                      **kwargs: Any) -> Run:
        """An interactive run recorded in the store: log to it, then ``run.complete()``."""
        from runctl.ops.interactive import start_interactive

        return start_interactive(self, InteractiveRun, outputs=outputs, snapshot_directory=snapshot_directory,
                                 display_name=display_name or kwargs.get("name"), tags=tags, run_id=run_id)

    def get_runs(self, type: str | None = None, tags: Any = None, properties: Any = None,
                 include_children: bool = False) -> Iterator[Run]:
        """This experiment's runs, newest first."""
        return Run.list(self, type=type, tags=tags, properties=properties, include_children=include_children)


class ScriptRunConfig:
    """What to run and where: Azure ML v1's ScriptRunConfig, checked against runconfig.schema.json."""

    def __init__(self, source_directory: str | os.PathLike, script: str | None = None, arguments: list | str | None = None,
                 run_config: Any = None, compute_target: Any = None, environment: Any = None,
                 distributed_job_config: Any = None, max_run_duration_seconds: int = 2592000,
                 command: list | str | None = None, docker_runtime_config: Any = None, *,
                 resources: dict | None = None, display_name: str | None = None, tags: dict | None = None,
                 node_count: int | None = None) -> None:
        self.source_directory = os.fspath(source_directory)
        self.script = script
        self.arguments = arguments.split() if isinstance(arguments, str) else list(arguments or [])
        self.compute_target = getattr(compute_target, "name", compute_target) or "local"
        self.environment = environment
        self.distributed_job_config = distributed_job_config
        self.max_run_duration_seconds = max_run_duration_seconds
        self.command = command
        self.resources = resources
        self.display_name = display_name
        self.tags = tags
        self.node_count = node_count

    def _document(self, experiment: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"source_directory": self.source_directory, "compute_target": self.compute_target,
                               "experiment": experiment, "max_run_duration_seconds": self.max_run_duration_seconds}
        if self.script is not None:
            doc["script"] = self.script
        if self.arguments:
            doc["arguments"] = [a if isinstance(a, (str, int, float, bool)) else str(a) for a in self.arguments]
        if self.command is not None:
            doc["command"] = self.command
        env = _environment_dict(self.environment)
        if env:
            doc["environment"] = env
        for key in ("resources", "display_name", "tags", "node_count"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        if self.distributed_job_config is not None:
            doc["distributed_job_config"] = _plain(self.distributed_job_config)
        return doc

    def _to_job(self, session: Session, experiment: str, hyperdrive: dict[str, Any] | None = None) -> Any:
        from runctl.config.jobconfig import job_from_mapping

        doc = self._document(experiment)
        if hyperdrive is not None:
            doc["hyperdrive"] = hyperdrive
        return job_from_mapping(doc, session.ws, "HyperDriveConfig" if hyperdrive else "ScriptRunConfig", Path.cwd())


def _plain(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and v is not None}


def _environment_dict(env: Any) -> dict[str, Any]:
    """Accept a dict, or an object shaped like azureml.core.Environment."""
    if env is None:
        return {}
    if isinstance(env, dict):
        return env
    out: dict[str, Any] = {}
    if getattr(env, "environment_variables", None):
        out["environment_variables"] = dict(env.environment_variables)
    docker = getattr(env, "docker", None)
    image = getattr(docker, "base_image", None) or getattr(docker, "image", None)
    python = getattr(env, "python", None)
    packages = [str(p) for p in (getattr(getattr(python, "conda_dependencies", None), "pip_packages", None) or [])
                if not str(p).startswith("azureml-")]  # (v1's defaults; runctl's shim stands for them)
    if image:  # (on Docker, the packages are installed on it, as Azure ML built it)
        out["docker"] = {"image": image}
    interpreter = getattr(python, "interpreter_path", None)
    py: dict[str, Any] = {}
    if interpreter and interpreter != "python":
        py["interpreter_path"] = interpreter
    if packages:  # built on every backend: a virtual environment on the host, or into the image
        py["pip_packages"] = packages
    if getattr(python, "user_managed_dependencies", False) is True:
        py["user_managed_dependencies"] = True
        py.pop("pip_packages", None)
    if py:
        out["python"] = py
    return out


class StoreWriter(EventWriter):
    """Writes events of a run started in this process straight into the store."""

    def __init__(self, ws: Any, run_id: str, interval_s: float = 0.5) -> None:
        self._ws = ws
        self._run_id = run_id
        self._store: Store | None = None
        super().__init__(None, interval_s, lazy=True)

    def emit(self, events: list) -> None:
        if self._store is None:
            from runctl.store import open_store

            self._store = open_store(self._ws)
        self._store.add_events(self._run_id, [event_record(ev) for ev in events])

    def _after_fork(self) -> None:
        self._store = None
        super()._after_fork()


class Run(ctx.Run):
    """A run in the store, seen from Python: status, details, metrics, files, waiting."""

    def __init__(self, workspace: Workspace, record: RunRecord, writer: EventWriter | None = None,
                 parent: Run | None = None) -> None:
        if writer is None:  # a child shares its parent's writer; its events carry its id
            writer = parent._writer if parent is not None else StoreWriter(workspace._session.ws, record.id)
        super().__init__(record.id, str(workspace._session.store.run_dir(record.id)), Experiment(workspace, record.experiment),
                         writer, parent=parent, number=record.number, display_name=record.display_name)
        self._workspace = workspace
        self._record = record

    @classmethod
    def get_context(cls, allow_offline: bool = True, used_for_context_manager: bool = False, **kwargs: Any) -> Any:
        """The submitted run inside a runctl job; outside one, an offline run that prints what it
        logs and is kept in the store (in memory with RUNCTL_OFFLINE=memory, or when there is
        no store to keep it in)."""
        if ctx.Run._context is None and allow_offline and not ctx.in_a_job() and ctx.keeps_offline_runs():
            try:
                ctx.Run._context = _offline_run()
            except Exception as e:  # the script must never crash for want of a store
                print(f"runctl: not recording this offline run ({type(e).__name__}: {e})", file=sys.stderr)
        return ctx.Run.get_context(allow_offline, used_for_context_manager, **kwargs)

    get_submitted_run = get_context

    @classmethod
    def _from_record(cls, workspace: Workspace, record: RunRecord) -> Run:
        kind = (InteractiveRun if record.kind in ("interactive", "offline") else
                HyperDriveRun if record.kind == "hyperdrive" else Run)
        return kind(workspace, record)

    @classmethod
    def get(cls, workspace: Workspace, run_id: str) -> Run:
        return Run._from_record(workspace, workspace._session.store.resolve(run_id))

    @staticmethod
    def list(experiment: Experiment, type: str | None = None, tags: Any = None, properties: Any = None,
             status: str | None = None, include_children: bool = False) -> Iterator[Run]:
        session = experiment.workspace._session
        want = RunStatus.parse(status) if status else None
        for record in session.store.runs(experiment=experiment.name, status=want, include_children=include_children):
            if _matches(session.store.tags(record.id), tags) and _matches(session.store.properties(record.id), properties):
                yield Run._from_record(experiment.workspace, record)

    # -- state from the store ---------------------------------------------------------------
    @property
    def _session(self) -> Session:
        return self._workspace._session

    def _refresh(self) -> RunRecord:
        from runctl.ops.runs import refresh

        self._writer.flush()
        self._record = refresh(self._session, self._session.store.get(self._id))
        return self._record

    @property
    def status(self) -> str:
        return self._refresh().status.value

    def get_status(self) -> str:
        return self.status

    @property
    def display_name(self) -> str | None:
        return self._refresh().display_name

    @display_name.setter
    def display_name(self, value: str) -> None:
        ctx.Run.display_name.fset(self, value)  # type: ignore[attr-defined]

    @property
    def parent(self) -> Run | None:
        if self._parent is None and self._record.parent_id:
            self._parent = Run.get(self._workspace, self._record.parent_id)
        return self._parent

    @property
    def tags(self) -> dict[str, str]:
        self._writer.flush()
        return self._session.store.tags(self._id)

    def get_tags(self) -> dict[str, str]:
        return self.tags

    @property
    def properties(self) -> dict[str, str]:
        from runctl.ops.runs import ENVIRONMENT_PROPERTY

        self._writer.flush()  # (the environment record has its own call: get_environment())
        return {k: v for k, v in self._session.store.properties(self._id).items() if k != ENVIRONMENT_PROPERTY}

    def get_properties(self) -> dict[str, str]:
        return self.properties

    def add_properties(self, properties: dict[str, Any]) -> None:
        have = self.properties
        for k, v in properties.items():
            if k in have and have[k] != str(v):
                from runctl.job.context import LoggingError

                raise LoggingError(f"property {k!r} is already {have[k]!r}; properties are add-only")
        super().add_properties(properties)

    def get_details(self) -> dict[str, Any]:
        from runctl.ops.runs import details

        return details(self._session, self._refresh())

    def get_environment(self) -> dict[str, Any] | None:
        """What the run ran with: its interpreter and installed packages (name -> version), the
        OS and host, the image on Docker, GPUs, driver and CUDA (None until the run has a record)."""
        from runctl.ops.runs import environment_record

        self._refresh()
        return environment_record(self._session.store.properties(self._id))

    def get_details_with_logs(self) -> dict[str, Any]:
        """v1: get_details() with "logFiles" holding each log's text instead of its location."""
        d = self.get_details()
        d["logFiles"] = {name: Path(path).read_text(errors="replace") for name, path in d.get("logFiles", {}).items()}
        return d

    def restore_snapshot(self, snapshot_id: str | None = None, path: str | None = None) -> str:
        """v1: the run's code snapshot (or ``snapshot_id``) as a zip file in ``path`` (default
        the current directory); returns the zip's path."""
        import zipfile


        snap = snapshot_id or self._record.snapshot_id
        if not snap:
            raise InputError(f"run {self._id} has no snapshot (an interactive run); nothing to restore")
        objects = self._session.store.objects
        manifest = objects.manifest(snap)
        dest = Path(path or ".") / f"{snap}.zip"
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
            for rel, digest, _size, mode in manifest["files"]:
                info = zipfile.ZipInfo(rel)
                info.external_attr = (0o100000 | (mode & 0o777)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, objects.object_path(digest).read_bytes())
        return str(dest)

    def get_portal_url(self) -> str:
        return portal_url(self._id, self._session.store.dir)

    def get_metrics(self, name: str | None = None, recursive: bool = False, run_type: Any = None,
                    populate: bool = False) -> dict[str, Any]:
        from runctl.ops.runs import metrics

        self._refresh()
        if not recursive:
            return metrics(self._session, self._record, name)
        out = {}
        for run in [self, *self.get_children(recursive=True)]:
            m = metrics(self._session, run._record, name)
            if m:
                out[run.id] = m
        return out

    def get_children(self, recursive: bool = False, tags: Any = None, properties: Any = None, type: Any = None,
                     status: Any = None) -> Iterator[Run]:
        self._writer.flush()
        want = RunStatus.parse(status) if status else None
        for record in reversed(self._session.store.runs(parent_id=self._id, status=want)):
            if _matches(self._session.store.tags(record.id), tags):
                child = Run._from_record(self._workspace, record)
                child._parent = self
                yield child
                if recursive:
                    yield from child.get_children(recursive=True)

    def _make_child(self, child_id: str, root: str | None, name: str | None) -> Run:
        self._writer.flush()
        store = self._session.store
        store.add_events(self._id, [{"k": "run", "n": child_id, "v": {"parent": self._id, "display_name": name},
                                     "r": child_id}])
        return type(self)(self._workspace, store.get(child_id), parent=self)

    def child_run(self, name: str | None = None, run_id: str | None = None, outputs: Any = None) -> Run:
        import uuid

        from runctl.job.context import _ids
        from runctl.job.context._values import LoggingError

        child_id = _ids.scoped(self._id, run_id or uuid.uuid4().hex[:8])
        why = _ids.problem(self._id, child_id)
        if why:
            raise LoggingError(f"child run id {run_id!r}: {why}")
        child = self._make_child(child_id, None, name)
        self._children.append(child)
        return child

    # -- waiting ---------------------------------------------------------------------------
    def wait_for_completion(self, show_output: bool = False, wait_post_processing: bool = False,
                            raise_on_error: bool = True) -> dict[str, Any]:
        """Block until the run ends (streaming its output with show_output); return get_details()."""
        from runctl.ops import runs

        record = self._session.store.get(self._id)
        if show_output:
            print(f"RunId: {self._id}\nWeb View: {self.get_portal_url()}\n\nStreaming logs/std_log.txt\n"
                  f"{'=' * 26}\n", flush=True)
            record = runs.follow(self._session, record, _binary_stdout())
            print(f"\nExecution Summary\n=================\nRunId: {self._id}\nWeb View: {self.get_portal_url()}\n",
                  flush=True)
        else:
            record = runs.wait(self._session, record)
        self._record = record
        details = self.get_details()
        if record.status == RunStatus.FAILED and raise_on_error:
            raise RunFailed(f"run {self._id} failed: {record.error}", error_details=details)
        return details

    def cancel(self) -> None:
        from runctl.ops.runs import cancel

        self._record = cancel(self._session, self._session.store.get(self._id))

    def complete(self, _set_status: bool = True) -> None:
        """v1: mark the run Completed. A job still running is stopped first (runctl never
        leaves a job running under a finished record), its output kept."""
        self._writer.flush()
        if _set_status:
            self._mark(RunStatus.COMPLETED, None)

    def fail(self, error_details: Any = None, error_code: Any = None, _set_status: bool = True) -> None:
        """v1: mark the run Failed with ``error_details``; a job still running is stopped."""
        self._writer.flush()
        if _set_status:
            self._mark(RunStatus.FAILED, str(error_details) if error_details is not None else "marked failed")

    def _mark(self, status: RunStatus, error: str | None) -> None:
        from runctl.ops.runs import mark_from_outside

        self._record = mark_from_outside(self._session, self._session.store.get(self._id), status, error)

    def __repr__(self) -> str:
        return f"Run(experiment={self._record.experiment!r}, id={self._id!r}, status={self._record.status.value!r})"


class HyperDriveRun(Run):
    """A tuning run (azureml.train.hyperdrive's HyperDriveRun): its children are the trials."""

    def _goal(self) -> str:
        from runctl.ops.trials import tuning_of

        return (tuning_of(self._record) or {}).get("primary_metric_goal", "maximize")

    def _ranked(self) -> list[Any]:
        from runctl.ops.runs import refresh_many
        from runctl.ops.trials import sorted_trials

        self._refresh()
        refresh_many(self._session, self._session.store.runs(parent_id=self._id), lambda target, e: None)
        return sorted_trials(self._session.store, self._record)

    def get_best_run_by_primary_metric(self, include_failed: bool = True, include_canceled: bool = True,
                                       include_resume_from_runs: bool = True) -> Run | None:
        """The child with the best value of the primary metric (None while none reported it)."""
        for t in self._ranked():
            if not t.values:
                break
            if (t.record.status == RunStatus.FAILED and not include_failed) or \
                    (t.record.status == RunStatus.CANCELED and not include_canceled):
                continue
            return Run._from_record(self._workspace, t.record)
        return None

    def get_children_sorted_by_primary_metric(self, top: int = 0, reverse: bool = False,
                                              discard_no_metric: bool = False) -> list[dict[str, Any]]:
        """``[{run_id, hyperparameters (JSON), best_primary_metric, status}]``, best first
        (``reverse``: worst first), the first ``top`` of them (0: all)."""
        import json

        goal = self._goal()
        rows = [{"run_id": t.record.id, "hyperparameters": json.dumps(t.hyperparameters),
                 "best_primary_metric": t.best(goal), "status": t.record.status.value}
                for t in self._ranked() if t.values or not discard_no_metric]
        if reverse:
            scored = [r for r in rows if r["best_primary_metric"] is not None][::-1]
            rows = scored + [r for r in rows if r["best_primary_metric"] is None]
        return rows[:top] if top else rows

    def get_hyperparameters(self) -> dict[str, str]:
        """``{child run id: its hyperparameters as JSON}``."""
        import json

        from runctl.ops.trials import hyperparameters

        return {c.id: json.dumps(hyperparameters(self._session.store, c.id))
                for c in reversed(self._session.store.runs(parent_id=self._id))}

    def get_metrics(self, name: str | None = None, recursive: bool = False, run_type: Any = None,
                    populate: bool = False) -> dict[str, Any]:
        """v1: the metrics of every run the tuning started, ``{child run id: {...}}``."""
        from runctl.ops.runs import metrics

        self._ranked()
        return {c.id: metrics(self._session, c, name) for c in reversed(self._session.store.runs(parent_id=self._id))}


class InteractiveRun(Run):
    """A run started in this process (``exp.start_logging()`` or an offline ``get_context()``)."""

    outputs_dir: str | None = None

    def _set_status(self, status: RunStatus, error: str | None = None) -> None:
        from runctl.ops.interactive import finish_interactive

        self._writer.flush()
        finish_interactive(self, status, error)

    def complete(self, _set_status: bool = True) -> None:
        self._set_status(RunStatus.COMPLETED)

    def fail(self, error_details: Any = None, error_code: Any = None, _set_status: bool = True) -> None:
        self._set_status(RunStatus.FAILED, str(error_details) if error_details is not None else "failed")

    def cancel(self) -> None:
        self._set_status(RunStatus.CANCELED, "canceled")


class _TextOut:
    """A bytes writer onto a text stream (Jupyter's sys.stdout has no .buffer)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> int:
        self.stream.write(data.decode("utf-8", errors="replace"))
        return len(data)

    def flush(self) -> None:
        self.stream.flush()


def _binary_stdout() -> Any:
    return getattr(sys.stdout, "buffer", None) or _TextOut(sys.stdout)


def _matches(have: dict[str, str], want: Any) -> bool:
    if not want:
        return True
    if isinstance(want, str):
        return want in have
    return all(have.get(k) == str(v) for k, v in dict(want).items())


def _offline_run() -> InteractiveRun:
    """``Run.get_context()`` outside a job: a run that prints what it logs and is kept in the store."""
    import uuid

    from runctl.ops.interactive import OFFLINE_EXPERIMENT, finish_at_exit, start_interactive

    class OfflineRecordedRun(ctx._Announcing, InteractiveRun):
        pass

    ws = Workspace.from_config()
    name = ws._session.ws.default_experiment or OFFLINE_EXPERIMENT
    run = start_interactive(Experiment(ws, name), OfflineRecordedRun, outputs=None, snapshot_directory=None,
                            display_name=os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else None,
                            tags=None, run_id=f"OfflineRun_{uuid.uuid4()}", kind="offline")
    finish_at_exit(run)
    return run

