"""The run a script sees: ``Run.get_context()`` and Azure ML v1's logging calls (stdlib only)."""

from __future__ import annotations

import json
import os
import time
import uuid

from . import _values
from ._shape import shape_metrics
from ._writer import EventWriter

ENV_RUN_ID = "RUNCTL_RUN_ID"
ENV_RUN_DIR = "RUNCTL_RUN_DIR"
ENV_EXPERIMENT = "RUNCTL_EXPERIMENT"
ENV_OUTPUTS_DIR = "RUNCTL_OUTPUTS_DIR"
ENV_FLUSH_INTERVAL = "RUNCTL_FLUSH_INTERVAL_S"

_time = time.time
_PLAIN = (float, int, str, bool)


class ExperimentRef:
    """What ``run.experiment`` is inside a job: the experiment's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return "Experiment(name=%r)" % self.name


class Run:
    """A run that appends what it logs to its run directory's events.jsonl."""

    _context: Run | None = None

    def __init__(self, run_id: str, run_dir: str | None, experiment: str, writer: EventWriter) -> None:
        self._id = run_id
        self._run_dir = run_dir
        self._experiment = ExperimentRef(experiment)
        self._writer = writer
        self._pending = writer.pending
        self._tags: dict = {}
        self._properties: dict = {}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def get_context(cls, allow_offline: bool = True, **kwargs) -> Run:
        if Run._context is not None:
            return Run._context
        run_id = os.environ.get(ENV_RUN_ID)
        run_dir = os.environ.get(ENV_RUN_DIR)
        if run_id and run_dir:
            interval = float(os.environ.get(ENV_FLUSH_INTERVAL, "0.5"))
            writer = EventWriter(os.path.join(run_dir, "events.jsonl"), interval)
            Run._context = Run(run_id, run_dir, os.environ.get(ENV_EXPERIMENT, ""), writer)
        elif allow_offline:
            Run._context = OfflineRun()
        else:
            raise RuntimeError(
                "Run.get_context(allow_offline=False) outside a run: %s and %s are not set; "
                "submit the script with `runctl submit`" % (ENV_RUN_ID, ENV_RUN_DIR)
            )
        return Run._context

    # -- identity -----------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._id

    @property
    def experiment(self) -> ExperimentRef:
        return self._experiment

    @property
    def tags(self) -> dict:
        return dict(self._tags)

    @property
    def properties(self) -> dict:
        return dict(self._properties)

    def __repr__(self) -> str:
        return "Run(experiment=%r, id=%r)" % (self._experiment.name, self._id)

    # -- logging (the hot path: no I/O here) ----------------------------------------------
    def log(self, name, value, description="", step=None):
        if type(name) is not str or len(name) > _values.MAX_NAME_CHARS:
            _values.check_name(name)
        if type(value) not in _PLAIN:
            value = _values.scalar(name, value)
        self._pending.append(("scalar", name, value, step, _time(), None))

    def log_list(self, name, value, description=""):
        _values.check_name(name)
        vals = _values.scalars(name, value, "run.log_list")
        if vals:
            self._pending.append(("list", name, vals, None, _time(), None))

    def log_row(self, name, description=None, **kwargs):
        _values.check_name(name)
        self._pending.append(("row", name, _values.row(name, kwargs), None, _time(), None))

    def log_table(self, name, value, description=""):
        _values.check_name(name)
        if not isinstance(value, dict):
            raise _values.LoggingError("run.log_table(%r): value must be a dict of columns" % name)
        cols = {}
        for col, vals in value.items():
            _values.check_name(col)
            if isinstance(vals, (list, tuple)):
                cols[col] = _values.scalars(name, vals, "run.log_table")
            else:
                cols[col] = [_values.scalar(name, vals, "run.log_table")]
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise _values.LoggingError(
                "run.log_table(%r): columns have different lengths %s; every column needs the same "
                "number of values" % (name, sorted(lengths))
            )
        if len(cols) > _values.MAX_ROW_COLUMNS:
            raise _values.LoggingError(
                "run.log_table(%r): %d columns, the limit is %d" % (name, len(cols), _values.MAX_ROW_COLUMNS)
            )
        self._pending.append(("table", name, cols, None, _time(), None))

    # -- tags and properties --------------------------------------------------------------
    def tag(self, key, value=None):
        self.set_tags({key: value})

    def set_tags(self, tags):
        for k, v in dict(tags).items():
            v = "" if v is None else str(v)
            self._tags[str(k)] = v
            self._pending.append(("tag", str(k), v, None, _time(), None))

    def add_properties(self, properties):
        for k, v in dict(properties).items():
            k, v = str(k), str(v)
            if k in self._properties and self._properties[k] != v:
                raise _values.LoggingError("property %r is already set to %r; properties are add-only" % (k, self._properties[k]))
            self._properties[k] = v
            self._pending.append(("property", k, v, None, _time(), None))

    # -- lifecycle ------------------------------------------------------------------------
    def flush(self, timeout_seconds=300):
        self._writer.flush()

    def complete(self, _set_status=True):
        self._writer.flush()

    def fail(self, error_details=None, error_code=None, _set_status=True):
        if error_details is not None:
            self._pending.append(("error", "error", str(error_details), None, _time(), None))
        self._writer.flush()

    def cancel(self):
        self._writer.flush()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or (exc_type is SystemExit and exc.code in (0, None)):
            self.complete()
        else:
            self.fail(error_details=exc)
        return False

    # -- reading back ---------------------------------------------------------------------
    def _events(self) -> list:
        self._writer.flush()
        out = []
        if self._writer.path and os.path.exists(self._writer.path):
            with open(self._writer.path, "rb") as f:
                for line in f:
                    if line.endswith(b"\n"):
                        rec = json.loads(line)
                        out.append((rec["k"], rec["n"], rec["v"]))
        return out

    def get_metrics(self, name=None, recursive=False, run_type=None, populate=False) -> dict:
        metrics = shape_metrics(e for e in self._events() if e[0] not in _NOT_METRICS)
        if name is not None:
            metrics = {name: metrics[name]} if name in metrics else {}
        return {self._id: metrics} if recursive else metrics


_NOT_METRICS = ("tag", "property", "error")


class _MemoryWriter(EventWriter):
    """Keeps an offline run's events in memory (nothing to flush to)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.kept: list = []

    def flush(self) -> None:
        while self.pending:
            self.kept.append(self.pending.popleft())


class OfflineRun(Run):
    """The run outside a submitted job: prints what it logs (as Azure did) and keeps it."""

    def __init__(self) -> None:
        super().__init__("OfflineRun_%s" % uuid.uuid4(), None, "offline", _MemoryWriter())

    def _say(self, kind, name, value):
        print("Attempted to log %s metric %s:\n%s" % (kind, name, value))

    def log(self, name, value, description="", step=None):
        super().log(name, value, description, step)
        self._say("scalar", name, value)

    def log_list(self, name, value, description=""):
        value = list(value)
        super().log_list(name, value, description)
        self._say("list", name, value)

    def log_row(self, name, description=None, **kwargs):
        super().log_row(name, description, **kwargs)
        self._say("row", name, kwargs)

    def log_table(self, name, value, description=""):
        super().log_table(name, value, description)
        self._say("table", name, value)

    def _events(self) -> list:
        writer = self._writer
        assert isinstance(writer, _MemoryWriter)
        writer.flush()
        return [(k, n, v) for k, n, v, *_ in writer.kept]
