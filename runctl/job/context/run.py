"""The run a script sees: ``Run.get_context()`` and Azure ML v1's Run calls (stdlib only).

Inside a job started by any runctl backend the launcher's environment names the run
directory; everything logged is appended to RUN_DIR/events.jsonl by a background thread.
Child runs write to the same file, each event tagged with the child's id.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

from .. import events
from .. import protocol as P
from ..sysmetrics import is_system
from . import _values
from ._children import MAX_CHILDREN, ChildCalls  # noqa: F401  (MAX_CHILDREN: the limit, as before)
from ._file_api import FileCalls, RegisteredModel  # noqa: F401
from ._log_api import MAX_JSON_METRIC_BYTES, LoggingCalls  # noqa: F401
from ._shape import shape_metrics
from ._writer import EventWriter, MemoryWriter

ENV_RUN_ID = P.RUN_ID
ENV_RUN_DIR = P.RUN_DIR
ENV_EXPERIMENT = P.EXPERIMENT
ENV_RUN_NUMBER = P.RUN_NUMBER
ENV_FLUSH_INTERVAL = P.FLUSH_INTERVAL
ENV_OFFLINE = P.OFFLINE  # "memory": an offline run keeps nothing in the store

NOT_METRICS = ("tag", "property", "display_name", "run", "status")

_time = time.time


class ExperimentRef:
    """What ``run.experiment`` is inside a job: the experiment's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return "Experiment(name=%r)" % self.name


class Run(LoggingCalls, FileCalls, ChildCalls):
    """A run that logs through an event writer; Azure ML v1's Run surface."""

    _context = None  # type: Run | None

    def __init__(self, run_id, files_root, experiment, writer, parent=None, number=None, display_name=None):
        self._id = run_id
        self._root = files_root
        self._experiment = experiment if hasattr(experiment, "name") else ExperimentRef(experiment)
        self._writer = writer
        self._pending = writer.pending
        self._parent = parent
        self._extra = {"r": run_id} if parent is not None else None
        self._number = number
        self._display_name = display_name
        self._status = "Running"
        self._children: list = []
        self._tags: dict = {}
        self._properties: dict = {}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def get_context(cls, allow_offline=True, used_for_context_manager=False, **kwargs):
        """The submitted run inside a runctl job; outside one, an offline run kept in memory (or
        an error). runctl's Python API (``runctl.Run``) keeps offline runs in the store instead."""
        if Run._context is not None:
            return Run._context
        run_id, run_dir = os.environ.get(ENV_RUN_ID), os.environ.get(ENV_RUN_DIR)
        if run_id and run_dir:
            interval = float(os.environ.get(ENV_FLUSH_INTERVAL, "0.5"))
            writer = (EventWriter(os.path.join(run_dir, P.EVENTS_FILE), interval) if P.logs_metrics(os.environ)
                      else MemoryWriter())  # another rank of a job of several processes
            number = os.environ.get(ENV_RUN_NUMBER)
            Run._context = Run(run_id, run_dir, os.environ.get(ENV_EXPERIMENT, ""), writer,
                               number=int(number) if number else None)
        elif allow_offline:
            Run._context = OfflineRun()
        else:
            raise RuntimeError(
                "Run.get_context(allow_offline=False) outside a run: %s and %s are not set; "
                "submit the script with `runctl submit`" % (ENV_RUN_ID, ENV_RUN_DIR)
            )
        return Run._context

    get_submitted_run = get_context

    def _make_child(self, child_id, root, name):
        return Run(child_id, root, self._experiment, self._writer, parent=self, display_name=name)

    # -- identity -----------------------------------------------------------------------
    @property
    def id(self):
        return self._id

    @property
    def number(self):
        return self._number

    @property
    def experiment(self):
        return self._experiment

    @property
    def parent(self):
        return self._parent

    @property
    def status(self):
        return self._status

    def get_portal_url(self):
        """Where `runctl ui` shows this run (the portal's address when the run was submitted)."""
        base = os.environ.get(P.PORTAL, "http://127.0.0.1:8765")
        return "%s/runs/%s" % (base.rstrip("/"), self.id)

    def get_status(self):
        return self._status

    @property
    def display_name(self):
        return self._display_name

    @display_name.setter
    def display_name(self, value):
        value = str(value)
        if len(value) > _values.MAX_DISPLAY_NAME_CHARS:
            raise _values.LoggingError("display_name is %d characters, the limit is %d"
                                       % (len(value), _values.MAX_DISPLAY_NAME_CHARS))
        self._display_name = value
        self._pending.append(("display_name", "display_name", self._display_name, None, _time(), self._extra))

    @property
    def tags(self):
        return dict(self._tags)

    def get_tags(self):
        return dict(self._tags)

    @property
    def properties(self):
        return dict(self._properties)

    def get_properties(self):
        return dict(self._properties)

    def __repr__(self):
        return "Run(experiment=%r, id=%r)" % (self._experiment.name, self._id)

    # -- lifecycle ------------------------------------------------------------------------
    def flush(self, timeout_seconds=300):
        self._writer.flush()

    def _end(self, status, error=None):
        extra = dict(self._extra or {})
        if error is not None:
            extra["error"] = str(error)
        self._pending.append(("status", "status", status, None, _time(), extra or None))
        self._status = status
        self._writer.flush()

    def complete(self, _set_status=True):
        if self._parent is not None:
            self._end("Completed")
        else:  # a submitted run's status comes from the script's exit, as on Azure ML
            self._writer.flush()

    def fail(self, error_details=None, error_code=None, _set_status=True):
        if self._parent is not None:
            self._end("Failed", error_details or "failed")
        else:
            sys.stderr.write("runctl: run.fail() in a submitted run: its status comes from the script's exit code\n")
            self._writer.flush()

    def cancel(self):
        if self._parent is not None:
            self._end("Canceled", "canceled")
        else:
            sys.stderr.write("runctl: run.cancel() in a submitted run does nothing; use `runctl cancel %s`\n" % self._id)

    def start(self):
        self._status = "Running"

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or (exc_type is SystemExit and exc.code in (0, None)):
            self.complete()
        else:
            self.fail(error_details=exc)
        return False

    # -- reading back ---------------------------------------------------------------------
    def _events(self):
        """(run_id, kind, name, value) of every event logged by this run's writer."""
        self._writer.flush()
        out = []
        path = self._writer.path
        if path and os.path.exists(path):
            out = events.read_file(path)
        elif isinstance(self._writer, MemoryWriter):
            out = [((ev[5] or {}).get("r"), ev[0], ev[1], ev[2]) for ev in self._writer.kept]
        return out

    def _top_id(self):
        run = self
        while run._parent is not None:
            run = run._parent
        return run._id

    def get_metrics(self, name=None, recursive=False, run_type=None, populate=False):
        events = self._events()
        top = self._top_id()

        def metrics_of(run_id):
            want = None if run_id == top else run_id
            m = shape_metrics((k, n, v) for r, k, n, v in events if r == want and k not in NOT_METRICS
                              and (name is not None or not is_system(n)))  # (the launcher's samples: not the script's)
            if name is not None:
                m = {name: m[name]} if name in m else {}
            return m

        if not recursive:
            return metrics_of(self._id)
        ids = [self._id] + [c.id for c in self.get_children(recursive=True)]
        out = {}
        for rid in ids:
            m = metrics_of(rid)
            if m:
                out[rid] = m
        return out

    def get_details(self):
        return {"runId": self._id, "status": self._status, "experiment": self._experiment.name,
                "properties": dict(self._properties), "tags": dict(self._tags)}


class _Announcing:
    """Prints what is logged, in Azure ML's offline wording."""

    def log(self, name, value, description="", step=None):
        super().log(name, value, description, step)  # type: ignore[misc]
        print("Attempted to log scalar metric %s:\n%s" % (name, value))

    def _announce(self, kind, name, value):
        if kind in ("tags", "properties"):
            print("Attempted to %s %s" % ("set tags" if kind == "tags" else "add properties", value))
        else:
            print("Attempted to log %s metric %s:\n%s" % (kind, name, value))


class OfflineRun(_Announcing, Run):
    """Outside a submitted job, with runctl's store unavailable: prints and keeps in memory."""

    def __init__(self, run_id=None, parent=None, display_name=None):
        writer = parent._writer if parent is not None else MemoryWriter()
        super().__init__(run_id or "OfflineRun_%s" % uuid.uuid4(), None, "offline", writer, parent=parent,
                         display_name=display_name)

    def _make_child(self, child_id, root, name):
        return OfflineRun(child_id, parent=self, display_name=name)

    def complete(self, _set_status=True):
        if self._parent is not None:
            self._end("Completed")
        else:
            self._set("Completed")

    def fail(self, error_details=None, error_code=None, _set_status=True):
        print("Run failed with error code %s: %s" % (error_code, error_details))
        self._set("Failed")

    def cancel(self):
        self._set("Canceled")

    def _set(self, status):
        self._status = status
        self._writer.flush()


def in_a_job(environ=None):
    """Whether this process runs inside a runctl job (its run's variables are set)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get(ENV_RUN_ID) and environ.get(ENV_RUN_DIR))


def keeps_offline_runs(environ=None):
    """Whether an offline run may be kept in the store (RUNCTL_OFFLINE=memory says no)."""
    return (os.environ if environ is None else environ).get(ENV_OFFLINE) != "memory"
