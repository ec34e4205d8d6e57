"""Buffered, crash-safe appender for RUN_DIR/events.jsonl (stdlib only).

The training thread only appends a tuple to a deque; a daemon thread serialises and
appends whole lines with one write() every ``interval_s``. Exit, SIGTERM and flush()
write what is pending. A forked child starts with an empty buffer so nothing is
written twice.
"""

from __future__ import annotations

import atexit
import collections
import json
import math
import os
import signal
import threading

DEFAULT_INTERVAL_S = 0.5


def _json_default(value):
    raise TypeError("value of type %s is not JSON serialisable" % type(value).__name__)


def encode_event(ev) -> str:
    kind, name, value, step, ts, extra = ev
    rec = {"k": kind, "n": name, "v": value, "t": ts}
    if step is not None:
        rec["s"] = step
    if extra:
        rec.update(extra)
    return json.dumps(rec, default=_json_default, allow_nan=True, separators=(",", ":"))


class EventWriter:
    def __init__(self, path: str | None, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self.pending: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        if path is not None:
            self._start_thread()
            atexit.register(self.close)
            _install_sigterm_flush(self)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=self._after_fork)

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="runctl-events", daemon=True)
        self._thread.start()

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
            except Exception:  # a full disk must not kill training; retry next tick
                pass

    def flush(self) -> None:
        if self.path is None:
            return
        with self._lock:
            n = len(self.pending)
            if not n:
                return
            pop = self.pending.popleft
            lines = []
            for _ in range(n):
                ev = pop()
                try:
                    lines.append(encode_event(ev))
                except (TypeError, ValueError):
                    lines.append(encode_event((ev[0], ev[1], repr(ev[2]), ev[3], ev[4], ev[5])))
            data = ("\n".join(lines) + "\n").encode("utf-8")
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._wake.set()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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


def is_finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
