"""Checks and conversions for logged values (stdlib only; numpy is recognised, never imported)."""

from __future__ import annotations

import json
import types

MAX_NAME_CHARS = 255
MAX_ROW_COLUMNS = 15
MAX_STRING_CHARS = 4096
MAX_DISPLAY_NAME_CHARS = 256
MAX_EVENT_BYTES = 64 << 20  # one logged value as a line of events.jsonl; sync reads any line up to this

_SCALARS = (bool, int, float, str, type(None))


class LoggingError(ValueError):
    """A value or name that runctl cannot log; the message says what to use instead."""


def check_name(name) -> str:
    if type(name) is not str or not name:
        raise LoggingError("metric name must be a non-empty string, got %r" % (name,))
    if len(name) > MAX_NAME_CHARS:
        raise LoggingError(
            "metric name is %d characters, the limit is %d: %r..." % (len(name), MAX_NAME_CHARS, name[:40])
        )
    return name


def scalar(name: str, value, what: str = "run.log"):
    """Return ``value`` as a plain JSON scalar, or raise a LoggingError that says what to do."""
    t = type(value)
    if t in _SCALARS:
        if t is str and len(value) > MAX_STRING_CHARS:
            raise LoggingError(
                "%s(%r): string value is %d characters, the limit is %d; upload long text with "
                "run.upload_file instead" % (what, name, len(value), MAX_STRING_CHARS)
            )
        return value
    if isinstance(value, (list, tuple, range, types.GeneratorType)) or t.__name__ == "ndarray" and value.ndim:
        raise LoggingError(
            "%s does not support list type for %r. Use run.log_list instead" % (what, name)
        )
    module = t.__module__ or ""
    if module.startswith(("numpy", "torch", "jax")) and hasattr(value, "item"):
        try:
            item = value.item()
        except (ValueError, RuntimeError) as e:
            raise LoggingError("%s(%r): %s is not a scalar: %s" % (what, name, t.__name__, e)) from None
        if type(item) in _SCALARS:
            return item
    if isinstance(value, (int, float, str)):  # subclasses such as enum.IntEnum
        for base in (bool, int, float, str):
            if isinstance(value, base):
                return base(value)
    raise LoggingError(
        "%s(%r): values must be numbers, booleans or strings, got %s; convert it first "
        "(e.g. float(x) or str(x))" % (what, name, t.__name__)
    )


def scalars(name: str, values, what: str) -> list:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise LoggingError("%s(%r): expected a list of values, got %s" % (what, name, type(values).__name__))
    return [scalar(name, v, what) for v in values]


def row(name: str, cols: dict, what: str = "run.log_row") -> dict:
    if len(cols) > MAX_ROW_COLUMNS:
        raise LoggingError(
            "%s(%r): %d columns, the limit is %d; log several rows or several names"
            % (what, name, len(cols), MAX_ROW_COLUMNS)
        )
    out = {}
    for k, v in cols.items():
        check_name(k)
        out[k] = scalar("%s.%s" % (name, k), v, what)
    return out


MAX_TAG_KEY_CHARS = 100
MAX_TAG_VALUE_CHARS = 1000


def step(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if hasattr(value, "item") and (type(value).__module__ or "").startswith("numpy"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int):
            raise LoggingError("step must be an integer, got %s" % type(value).__name__)
    return int(value)


def table(name: str, value) -> dict:
    if not isinstance(value, dict):
        raise LoggingError("run.log_table(%r): value must be a dict of columns" % name)
    if len(value) > MAX_ROW_COLUMNS:
        raise LoggingError("run.log_table(%r): %d columns, the limit is %d; log several tables" % (name, len(value), MAX_ROW_COLUMNS))
    cols = {}
    for col, vals in value.items():
        check_name(col)
        if isinstance(vals, (list, tuple)) or type(vals).__name__ == "ndarray":
            cols[col] = scalars(name, list(vals), "run.log_table")
        else:
            cols[col] = [scalar(name, vals, "run.log_table")]
    lengths = sorted({len(v) for v in cols.values()})
    if len(lengths) > 1:
        raise LoggingError(
            "run.log_table(%r): columns have different lengths %s; every column needs the same number of values"
            % (name, lengths)
        )
    return cols


def check_tag(key: str, value: str) -> None:
    if len(key) > MAX_TAG_KEY_CHARS:
        raise LoggingError("tag/property key %r... is %d characters, the limit is %d" % (key[:20], len(key), MAX_TAG_KEY_CHARS))
    if len(value) > MAX_TAG_VALUE_CHARS:
        raise LoggingError("tag/property %r: value is %d characters, the limit is %d" % (key, len(value), MAX_TAG_VALUE_CHARS))


def check_event_size(what: str, name: str, value) -> None:
    """Refuse, in the script, a value too big for one event (MAX_EVENT_BYTES as JSON): a cheap
    upper bound first, the exact size only when the bound is over the limit."""
    if _upper_bound(value) <= MAX_EVENT_BYTES:
        return
    size = len(json.dumps(value, allow_nan=True))
    if size > MAX_EVENT_BYTES:
        raise LoggingError(
            "%s(%r): the value is %d bytes as JSON, the limit is %d (64 MiB); log it in several parts, "
            "or save it to a file and use run.upload_file" % (what, name, size, MAX_EVENT_BYTES)
        )


def _upper_bound(value) -> int:
    t = type(value)
    if t is str:
        return 6 * len(value) + 2
    if t is list:
        return 2 + sum(_upper_bound(v) + 1 for v in value)
    if t is dict:
        return 2 + sum(6 * len(k) + 4 + _upper_bound(v) for k, v in value.items())
    return 24  # a number, a boolean or null: at most 24 characters as JSON
