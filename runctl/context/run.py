"""The run a script sees: ``Run.get_context()`` and Azure ML v1's Run calls (stdlib only).

Inside a job started by any runctl backend the launcher's environment names the run
directory; everything logged is appended to RUN_DIR/events.jsonl by a background thread.
Child runs write to the same file, each event tagged with the child's id.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid

from . import _files, _ids, _values
from ._shape import shape_metrics
from ._writer import EventWriter, MemoryWriter, unpack_line_values

if __package__ == "runctl.context":  # in runctl itself
    from runctl import protocol as P
else:  # RUN_DIR/.runctl/lib/runctl_context in a job: the shipped copy of the protocol
    import runctl_protocol as P  # type: ignore[no-redef]

ENV_RUN_ID = P.RUN_ID
ENV_RUN_DIR = P.RUN_DIR
ENV_EXPERIMENT = P.EXPERIMENT
ENV_RUN_NUMBER = P.RUN_NUMBER
ENV_FLUSH_INTERVAL = P.FLUSH_INTERVAL
ENV_OFFLINE = P.OFFLINE  # "memory": an offline run keeps nothing in the store

MAX_CHILDREN = 100
MAX_JSON_METRIC_BYTES = 1 << 20
NOT_METRICS = ("tag", "property", "display_name", "run", "status")

_time = time.time


class ExperimentRef:
    """What ``run.experiment`` is inside a job: the experiment's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return "Experiment(name=%r)" % self.name


class Run:
    """A run that logs through an event writer; Azure ML v1's Run surface."""

    _context = None
    offline_factory = None  # set by runctl.api: records an offline run in the store

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
        """The submitted run inside a runctl job; outside one, an offline run (or an error)."""
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
            Run._context = _offline_run()
        else:
            raise RuntimeError(
                "Run.get_context(allow_offline=False) outside a run: %s and %s are not set; "
                "submit the script with `runctl submit`" % (ENV_RUN_ID, ENV_RUN_DIR)
            )
        return Run._context

    get_submitted_run = get_context

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

    # -- logging (the hot path: no I/O here) ----------------------------------------------
    def log(self, name, value, description="", step=None):
        if type(name) is not str or len(name) > _values.MAX_NAME_CHARS:
            _values.check_name(name)
        t = type(value)
        if t is not float and t is not int and t is not bool and (t is not str or len(value) > _values.MAX_STRING_CHARS):
            value = _values.scalar(name, value)
        if step is not None and type(step) is not int:
            step = _values.step(step)
        self._pending.append(("scalar", name, value, step, _time(), self._extra_with(description)))

    def _extra_with(self, description):
        if not description:
            return self._extra
        if len(str(description)) > _values.MAX_STRING_CHARS:
            raise _values.LoggingError("description is %d characters, the limit is %d"
                                       % (len(str(description)), _values.MAX_STRING_CHARS))
        extra = dict(self._extra or {})
        extra["d"] = str(description)
        return extra

    def log_list(self, name, value, description=""):
        _values.check_name(name)
        vals = _values.scalars(name, value, "run.log_list")
        _values.check_event_size("run.log_list", name, vals)
        if vals:
            self._pending.append(("list", name, vals, None, _time(), self._extra_with(description)))
        self._announce("list", name, vals)

    def log_row(self, name, description=None, **kwargs):
        _values.check_name(name)
        row = _values.row(name, kwargs)
        self._pending.append(("row", name, row, None, _time(), self._extra_with(description)))
        self._announce("row", name, row)

    def log_table(self, name, value, description=""):
        _values.check_name(name)
        cols = _values.table(name, value)
        _values.check_event_size("run.log_table", name, cols)
        self._pending.append(("table", name, cols, None, _time(), self._extra_with(description)))
        self._announce("table", name, cols)

    def log_image(self, name, path=None, plot=None, description=""):
        _values.check_name(name)
        if (path is None) == (plot is None):
            raise _values.LoggingError("run.log_image(%r): give exactly one of path= or plot=" % name)
        if plot is not None:
            if not hasattr(plot, "savefig"):
                raise _values.LoggingError("run.log_image(%r): plot must have savefig() (a matplotlib figure)" % name)
            artifact = "%s_%d.png" % (name, int(_time()))
            target = self._file_path(artifact)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            plot.savefig(target, format="png")
        else:
            path = os.fspath(path)
            if not os.path.isfile(path):
                raise _values.LoggingError("run.log_image(%r): no such file %r" % (name, path))
            if _files.image_kind(path) is None:
                raise _values.LoggingError("run.log_image(%r): %r is not a PNG, JPEG, GIF, BMP, TIFF or WebP image"
                                           % (name, path))
            artifact = path if not os.path.isabs(path) and ".." not in path.split(os.sep) else os.path.basename(path)
            artifact = self._store_file(artifact, path)
        self._pending.append(("image", name, artifact, None, _time(), self._extra_with(description)))
        self._announce("image", name, artifact)

    def _log_json(self, kind, name, value, description):
        _values.check_name(name)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise _values.LoggingError("run.log_%s(%r): value is not valid JSON" % (kind, name)) from None
        if not isinstance(value, dict):
            raise _values.LoggingError("run.log_%s(%r): value must be a dict or a JSON string" % (kind, name))
        size = len(json.dumps(value, allow_nan=True))
        if size > MAX_JSON_METRIC_BYTES:
            raise _values.LoggingError("run.log_%s(%r): %d bytes, the limit is %d" % (kind, name, size, MAX_JSON_METRIC_BYTES))
        self._pending.append((kind, name, value, None, _time(), self._extra_with(description)))
        self._announce(kind, name, value)

    def log_confusion_matrix(self, name, value, description=""):
        self._log_json("confusion_matrix", name, value, description)

    def log_accuracy_table(self, name, value, description=""):
        self._log_json("accuracy_table", name, value, description)

    def log_residuals(self, name, value, description=""):
        self._log_json("residuals", name, value, description)

    def log_predictions(self, name, value, description=""):
        self._log_json("predictions", name, value, description)

    def _announce(self, kind, name, value):
        """Offline runs print what they log, as Azure ML's did."""

    # -- tags and properties --------------------------------------------------------------
    def tag(self, key, value=None):
        self.set_tags({key: value})

    def set_tags(self, tags):
        for k, v in dict(tags).items():
            k, v = str(k), "" if v is None else str(v)
            _values.check_tag(k, v)
            self._tags[k] = v
            self._pending.append(("tag", k, v, None, _time(), self._extra))
        self._announce("tags", "", tags)

    def remove_tags(self, tags):
        for k in tags:
            self._tags.pop(k, None)
            self._pending.append(("tag", str(k), None, None, _time(), self._extra))

    def add_properties(self, properties):
        for k, v in dict(properties).items():
            k, v = str(k), str(v)
            _values.check_tag(k, v)
            if k in self._properties and self._properties[k] != v:
                raise _values.LoggingError("property %r is already %r; properties are add-only" % (k, self._properties[k]))
            self._properties[k] = v
            self._pending.append(("property", k, v, None, _time(), self._extra))
        self._announce("properties", "", properties)

    # -- files ------------------------------------------------------------------------------
    def _file_path(self, name):
        if self._root is None:
            raise _values.LoggingError("this offline run keeps no files")
        return _files.path_for(self._root, name)

    def _store_file(self, name, src):
        if self._root is None:
            print("Attempted to track file %s at %s" % (name, src))
            return name
        try:
            return _files.copy_in(self._root, name, src)
        except ValueError as e:
            raise _values.LoggingError(str(e)) from None

    def register_model(self, model_name, model_path=None, tags=None, properties=None, model_framework=None,
                       model_framework_version=None, description=None, datasets=None, sample_input_dataset=None,
                       sample_output_dataset=None, resource_configuration=None, **kwargs):
        """v1: register a file or folder of this run (``model_path``, e.g. "outputs/model.pkl")
        as a model: runctl's store records it, numbered per name (`runctl models`)."""
        _values.check_name(model_name)
        if model_path is not None:
            _files.check_name(str(model_path))
        value = {"path": None if model_path is None else str(model_path).replace(os.sep, "/"),
                 "tags": {str(k): str(v) for k, v in (tags or {}).items()},
                 "properties": {str(k): str(v) for k, v in (properties or {}).items()},
                 "framework": model_framework, "framework_version": model_framework_version,
                 "description": description}
        self._pending.append(("model", model_name, value, None, _time(), self._extra))
        return RegisteredModel(model_name, value["path"], value["tags"], self.id)

    def upload_file(self, name, path_or_stream, datastore_name=None):
        return self._store_file(name, path_or_stream)

    def upload_files(self, names, paths, return_artifacts=False, timeout_seconds=None, datastore_name=None):
        names, paths = list(names), list(paths)
        if len(names) != len(paths):
            raise TypeError("upload_files: %d names for %d paths" % (len(names), len(paths)))
        return [self._store_file(n, p) for n, p in zip(names, paths)]

    def upload_folder(self, name, path, datastore_name=None):
        if not os.path.isdir(path):
            raise FileNotFoundError("no such folder: %r" % (path,))
        stored = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                stored.append(self._store_file(name.rstrip("/") + "/" + rel, full))
        return stored

    def get_file_names(self):
        return [] if self._root is None else _files.list_names(self._root)

    def download_file(self, name, output_file_path=None, _validate_checksum=False):
        src = self._file_path(name)
        if not os.path.isfile(src):
            raise FileNotFoundError("run %s has no file %r; see run.get_file_names()" % (self._id, name))
        dest = output_file_path or os.path.basename(name)
        if os.path.isdir(dest):
            dest = os.path.join(dest, os.path.basename(name))
        shutil.copyfile(src, dest)
        return dest

    def download_files(self, prefix=None, output_directory=None, output_paths=None, batch_size=100,
                       append_prefix=True, timeout_seconds=None):
        out = output_directory or "."
        done = []
        for name in self.get_file_names():
            if prefix and not name.startswith(prefix):
                continue
            rel = name if append_prefix or not prefix else name[len(prefix):].lstrip("/")
            dest = os.path.join(out, rel)
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            done.append(self.download_file(name, dest))
        return done

    # -- children ---------------------------------------------------------------------------
    def child_run(self, name=None, run_id=None, outputs=None):
        child_id = _ids.scoped(self._id, run_id or uuid.uuid4().hex[:8])
        why = _ids.problem(self._id, child_id)
        if why:
            raise _values.LoggingError("child run id %r: %s" % (run_id, why))
        if name is not None and len(str(name)) > _values.MAX_DISPLAY_NAME_CHARS:
            raise _values.LoggingError("child run name is %d characters, the limit is %d"
                                       % (len(str(name)), _values.MAX_DISPLAY_NAME_CHARS))
        root = None if self._root is None else os.path.join(self._root, "runs", child_id)
        child = type(self)._make_child(self, child_id, root, name)
        self._pending.append(("run", child_id, {"parent": self._id, "display_name": name}, None, _time(),
                              {"r": child_id}))
        self._children.append(child)
        return child

    def _make_child(self, child_id, root, name):
        return Run(child_id, root, self._experiment, self._writer, parent=self, display_name=name)

    def create_children(self, count=None, tag_key=None, tag_values=None):
        if (count is None) == (tag_key is None or tag_values is None):
            raise ValueError("create_children: give count, or tag_key and tag_values")
        n = count if count is not None else len(tag_values)
        if n > MAX_CHILDREN:
            raise ValueError("create_children: at most %d children at once, asked for %d" % (MAX_CHILDREN, n))
        children = []
        for i in range(n):
            child = self.child_run()
            if count is not None:
                child.tag("azureml.batch_child_number", str(i))
            else:
                child.tag(tag_key, tag_values[i])
            children.append(child)
        return children

    def get_children(self, recursive=False, tags=None, properties=None, type=None, status=None):
        for child in list(self._children):
            yield child
            if recursive:
                yield from child.get_children(recursive=True)

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
            with open(path, "rb") as f:
                for line in f:
                    if line.endswith(b"\n"):
                        rec = json.loads(line)
                        if rec["k"] == "scalars":  # a batch of one metric's values (_writer.encode_batch)
                            out.extend((rec.get("r"), "scalar", rec["n"], v) for v in unpack_line_values(rec))
                        else:
                            out.append((rec.get("r"), rec["k"], rec["n"], rec["v"]))
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
            m = shape_metrics((k, n, v) for r, k, n, v in events if r == want and k not in NOT_METRICS)
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


class RegisteredModel(object):
    """What ``run.register_model`` returns: the name, the path in the run, its tags (the
    version is given when the store records it: `runctl models NAME`)."""

    def __init__(self, name, path, tags, run_id):
        self.name, self.path, self.tags, self.run_id = name, path, tags, run_id

    def __repr__(self):
        return "Model(name=%r, path=%r, run_id=%r)" % (self.name, self.path, self.run_id)


def _offline_run():
    """A run recorded in the store when runctl's API is loaded (it sets ``Run.offline_factory``),
    else an in-memory one."""
    factory = Run.offline_factory
    if factory is not None and os.environ.get(ENV_OFFLINE) != "memory":
        try:
            return factory()
        except Exception as e:  # the script must never crash for want of a store
            sys.stderr.write("runctl: not recording this offline run (%s: %s)\n" % (type(e).__name__, e))
    return OfflineRun()
