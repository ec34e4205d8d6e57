"""The Run's logging calls: metrics, rows, tables, images, tags and properties (stdlib only).
A mixin of ``Run`` (run.py); the hot path (``log``) does no I/O: events go to the run's writer."""

from __future__ import annotations

import json
import os
import time

from . import _files, _values

_time = time.time

MAX_JSON_METRIC_BYTES = 1 << 20


class LoggingCalls:
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

