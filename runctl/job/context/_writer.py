"""Buffered, crash-safe event writers (stdlib only).

The training thread only appends a tuple to a deque; a daemon thread hands what is
pending to ``emit()`` every ``interval_s`` (appending whole lines to events.jsonl with one
write() in the default writer). Exit, SIGTERM and flush() emit what is pending. A forked
child starts with an empty buffer, so nothing is written twice.

An event is (kind, name, value, step, time, extra): ``extra`` is None or a dict of more
fields, e.g. {"r": child_run_id} or {"d": description}. How events become lines of
events.jsonl, and lines events again, is runctl_job/events.py's.
"""

from __future__ import annotations

import atexit
import collections
import os
import signal
import threading

from ..events import encode_batch

DEFAULT_INTERVAL_S = 0.5


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
