"""Buffered, crash-safe event writers (stdlib only).

The training thread only appends a tuple to a deque; a daemon thread hands what is
pending to ``emit()`` every ``interval_s`` (appending whole lines to events.jsonl with one
write() in the default writer). Exit, SIGTERM and flush() emit what is pending. A forked
child starts with an empty buffer, so nothing is written twice.

An event is (kind, name, value, step, time, extra): ``extra`` is None or a dict of more
fields, e.g. {"r": child_run_id} or {"d": description}.
"""

from __future__ import annotations

import array
import atexit
import base64
import collections
import itertools
import json
import os
import signal
import sys
import threading
from operator import itemgetter

DEFAULT_INTERVAL_S = 0.5


def _json_default(value):
    raise TypeError("value of type %s is not JSON serialisable" % type(value).__name__)


def event_record(ev) -> dict:
    kind, name, value, step, ts, extra = ev
    rec = {"k": kind, "n": name, "v": value, "t": ts}
    if step is not None:
        rec["s"] = step
    if extra:
        rec.update(extra)
    return rec


def encode_event(ev) -> str:
    try:
        return json.dumps(event_record(ev), default=_json_default, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError):  # checked at the call; this only guards odd subclasses
        return json.dumps(event_record(ev[:2] + (repr(ev[2]),) + ev[3:]), default=repr, separators=(",", ":"))


_NAMES: dict = {}


def _number(value, t):
    if t is int:
        return "%d" % value
    if value != value:
        return "NaN"
    if value in (_INF, -_INF):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


_INF = float("inf")


def encode_line(ev) -> str:
    """encode_event, with a fast path for the common case: a plain number logged by run.log()."""
    kind, name, value, step, ts, extra = ev
    t = type(value)
    if kind == "scalar" and extra is None and (t is float or t is int) and (step is None or type(step) is int):
        n = _NAMES.get(name)
        if n is None:
            n = json.dumps(name)
            if len(_NAMES) < 10000:  # names built from loop variables must not grow this forever
                _NAMES[name] = n
        if step is None:
            return '{"k":"scalar","n":%s,"v":%s,"t":%r}' % (n, _number(value, t), ts)
        return '{"k":"scalar","n":%s,"v":%s,"t":%r,"s":%d}' % (n, _number(value, t), ts, step)
    return encode_event(ev)


BATCH_MIN = 2  # this many values of one metric in one flush travel as one "scalars" line


def encode_batch(events) -> str:
    """The lines for ``events``, in order, except that the plain numbers run.log() gave one
    metric (same name, run and description; all floats or all ints; steps all given or
    none) become ONE line (``_batch_line``) at the place of the first: the store keeps such a
    batch as one row, so a million values cost no parse per value."""
    if len(events) >= BATCH_MIN:
        uniform = _uniform_batch(events)
        if uniform is not None:
            return uniform
    slots = []
    groups: dict = {}
    get = groups.get
    for ev in events:
        kind, name, value, step, _ts, extra = ev
        t = type(value)
        if kind != "scalar" or (t is not float and t is not int) or (step is not None and type(step) is not int):
            slots.append(ev)
            continue
        # the common case (a float, no step, no child run, no description) is keyed by the name alone
        key = name if (t is float and step is None and extra is None) else (
            name, t, step is None, None if extra is None else json.dumps(extra, sort_keys=True, default=repr))
        group = get(key)
        if group is None:
            group = groups[key] = []
            slots.append(group)
        group.append(ev)
    lines = []
    for slot in slots:
        if type(slot) is not list:
            lines.append(encode_line(slot))
        elif len(slot) < BATCH_MIN:
            lines.extend(map(encode_line, slot))
        else:
            lines.append(_batch_line(slot))
    return "\n".join(lines)


UNIFORM_MAX_NAMES = 16


def _uniform_batch(events):
    """encode_batch's lines, made column by column at C speed, for the usual flush: only
    run.log() numbers, all floats or all ints, steps all given (ints) or none, the same run
    and no description, a few metric names. None for anything else (the general path)."""
    n = len(events)
    if set(map(itemgetter(0), events)) != {"scalar"}:
        return None
    extras = list(map(itemgetter(5), events))
    if extras.count(extras[0]) != n:
        return None
    names, values, steps, times = (list(map(itemgetter(i), events)) for i in (1, 2, 3, 4))
    types = set(map(type, values))
    if types != {float} and types != {int}:
        return None
    no_steps = steps.count(None)
    if no_steps not in (0, n) or (not no_steps and set(map(type, steps)) != {int}):
        return None
    distinct = set(names)
    if len(distinct) > UNIFORM_MAX_NAMES or set(map(type, distinct)) != {str}:
        return None
    code = "d" if float in types else "q"
    extra = extras[0]
    lines = []
    try:
        for name in sorted(distinct, key=names.index):  # in the order of each metric's first value
            if len(distinct) == 1:
                vs, ts, ss = values, times, steps
            else:
                mine = list(map(name.__eq__, names))
                vs, ts, ss = (list(itertools.compress(col, mine)) for col in (values, times, steps))
            if len(vs) < BATCH_MIN:
                lines.append(encode_line(("scalar", name, vs[0], ss[0], ts[0], extra)))
                continue
            lines.append(_scalars_line(name, code, vs, ts, None if no_steps else ss, extra))
    except OverflowError:  # an int beyond 64 bits: the general path sends it as a line of its own
        return None
    return "\n".join(lines)


def _packed(typecode, values):
    """``values`` as little-endian 8-byte numbers, base64: what the store keeps, as it keeps it."""
    a = array.array(typecode, values)
    if sys.byteorder != "little":
        a.byteswap()
    return base64.b64encode(a).decode("ascii")  # (the array's own buffer: no copy of it first)


def _batch_line(slot):
    """One metric's values as ONE line: {"k": "scalars", "n", "v": null, "c": count, "vt": "d" (floats) or
    "q" (ints), "vb": values, "tb": times, "sb": steps} with the arrays packed as the store
    keeps them (8-byte little-endian, base64), so that ingesting them is a copy, not a parse
    per value. Ints beyond 64 bits go as lines of their own."""
    _, name, value, step, _, extra = slot[0]
    code = "d" if type(value) is float else "q"
    try:
        return _scalars_line(name, code, [ev[2] for ev in slot], [ev[4] for ev in slot],
                             None if step is None else [ev[3] for ev in slot], extra)
    except OverflowError:
        return "\n".join(map(encode_line, slot))


def _scalars_line(name, code, values, times, steps, extra):
    """The "scalars" line. The packed arrays are base64 (nothing in them needs escaping), so
    they are placed in the line as they are: json.dumps would scan tens of megabytes."""
    head = {"k": "scalars", "n": name, "v": None, "c": len(values), "vt": code}
    if extra:
        head.update(extra)
    parts = [json.dumps(head, separators=(",", ":"), default=repr)[:-1], ',"vb":"', _packed(code, values),
             '","tb":"', _packed("d", times)]
    if steps is not None:
        parts += ['","sb":"', _packed("q", steps)]
    parts.append('"}')
    return "".join(parts)


class EventWriter:
    """Appends events to ``path`` (events.jsonl) from a background thread."""

    def __init__(self, path: str | None, interval_s: float = DEFAULT_INTERVAL_S, background: bool = True,
                 lazy: bool = False) -> None:
        self.path = path
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._fd: int | None = None
        if background and lazy:  # no thread until the first event (many idle handles cost nothing)
            self.pending: collections.deque = _StartOnAppend(self._start)
        else:
            self.pending = collections.deque()
            if background:
                self._start()

    def _start(self) -> None:
        self._start_thread()
        atexit.register(self.close)
        _install_sigterm_flush(self)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _start_thread(self) -> None:
        threading.Thread(target=self._loop, name="runctl-events", daemon=True).start()

    def _after_fork(self) -> None:
        self.pending.clear()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._fd = None
        if not self._closed:
            self._start_thread()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a full disk must not kill training; the events wait for the next tick
                pass

    def flush(self) -> None:
        with self._lock:
            n = len(self.pending)
            if not n:
                return
            pop = self.pending.popleft
            batch = [pop() for _ in range(n)]
            try:
                self.emit(batch)
            except BaseException:
                self.pending.extendleft(reversed(batch))
                raise

    def emit(self, events: list) -> None:
        data = (encode_batch(events) + "\n").encode("utf-8")
        if self._fd is None:
            assert self.path is not None
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._wake.set()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class _StartOnAppend(collections.deque):
    def __init__(self, start) -> None:
        super().__init__()
        self._start = start

    def append(self, item) -> None:
        start, self._start = self._start, None
        if start is not None:
            start()
        super().append(item)


class MemoryWriter(EventWriter):
    """Keeps events in memory (an offline run with nowhere to write)."""

    def __init__(self) -> None:
        super().__init__(None, background=False)
        self.kept: list = []

    def emit(self, events: list) -> None:
        self.kept.extend(events)


_writers: list = []


def _install_sigterm_flush(writer: EventWriter) -> None:
    """Flush on SIGTERM, then die of it as the script would have without runctl."""
    _writers.append(writer)
    if len(_writers) > 1 or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the script (or its framework) handles SIGTERM itself; atexit still flushes

        def on_term(signum, frame):
            for w in _writers:
                try:
                    w.flush()
                except Exception:
                    pass
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_term)
    except ValueError:
        pass


def unpack_line_values(rec):
    """The values of a batch line (either form: packed "vb", or a "v" list)."""
    if rec.get("vb") is None:
        return list(rec.get("v") or [])
    a = array.array(rec["vt"])
    a.frombytes(base64.b64decode(rec["vb"]))
    if sys.byteorder != "little":
        a.byteswap()
    return a.tolist()
