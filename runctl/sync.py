"""Sync: pull a run's new events and log bytes from its backend into the store, idempotently.

Events are read from the offset stored with the run and only up to the last complete
line, and stored together with the new offset in one transaction, so a torn last line
waits for the next sync and a second sync changes nothing. Log files are appended to
the store's copy, whose size is the offset. Once the backend reports a final state,
outputs are copied and the run is marked synced.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

from .status import RunStatus
from .store import RunRecord, Store

if TYPE_CHECKING:
    from .backends.base import Backend, Handle, JobState

CHUNK_BYTES = 8 << 20
EVENTS_FILE = "events.jsonl"


@contextmanager
def sync_lock(store: Store, run_id: str, blocking: bool) -> Iterator[bool]:
    d = store.run_dir(run_id)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".sync.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sync_run(store: Store, backend: Backend, record: RunRecord, blocking: bool = False,
             after_logs: Callable[[], None] | None = None) -> RunRecord:
    """Bring ``record`` up to date from its backend and return the fresh record.
    ``after_logs`` runs as soon as new log bytes are in the store (before a final sync's
    slower work), so a follower prints them without waiting for outputs and clean-up."""
    if record.synced or record.handle is None:
        return record
    from .backends.base import Handle

    handle = Handle.from_dict(record.handle)
    with sync_lock(store, record.id, blocking) as locked:
        if not locked:
            return store.get(record.id)
        record = store.get(record.id)
        if record.synced:
            return record
        state = backend.status(handle)
        ingest_events(store, backend, handle, record.id)
        ingest_logs(store, backend, handle, record.id)
        if after_logs is not None:
            after_logs()
        if state.status.is_terminal:
            fetch_outputs(store, backend, handle, record.id)
        _record_state(store, record, state)
        if state.status.is_terminal:
            backend.release(handle, state)
    return store.get(record.id)


def ingest_events(store: Store, backend: Backend, handle: Handle, run_id: str) -> None:
    while True:
        offset = store.events_offset(run_id)
        data = backend.read(handle, EVENTS_FILE, offset, CHUNK_BYTES)
        end = data.rfind(b"\n")
        if end < 0:
            return  # nothing new, or only a torn line: wait for the next sync
        events = parse_events(data[: end + 1])
        if not store.ingest_events(run_id, offset, offset + end + 1, events):
            continue  # another process ingested this range first; re-read the offset
        if len(data) < CHUNK_BYTES:
            return


def parse_events(data: bytes) -> list[dict]:
    """Complete lines of events.jsonl -> events. The whole chunk is parsed as one JSON array
    (one C-level call); if a line is damaged, line by line, skipping what cannot be read."""
    text = data.decode("utf-8", errors="replace")
    lines = [ln for ln in text.split("\n") if ln.strip()]
    try:
        parsed = json.loads("[" + ",".join(lines) + "]")
    except ValueError:
        parsed = []
        for ln in lines:
            try:
                parsed.append(json.loads(ln))
            except ValueError:
                continue  # a line damaged on disk cannot be recovered; the rest still counts
    return [ev for ev in parsed if isinstance(ev, dict) and "k" in ev and "n" in ev]


def ingest_logs(store: Store, backend: Backend, handle: Handle, run_id: str) -> None:
    dest_root = store.run_dir(run_id)
    for rel, size in backend.list_files(handle, "logs"):
        dest = dest_root / rel
        have = dest.stat().st_size if dest.exists() else 0
        if have >= size:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "ab") as f:
            copy_range(backend, handle, rel, f, have, size)


FETCHED_AT_END = ("outputs", "artifacts", "runs")


def fetch_outputs(store: Store, backend: Backend, handle: Handle, run_id: str) -> None:
    """Bring outputs/ and uploaded artifacts/ (and child runs' files under runs/<id>/) into the
    store: moved when the run directory is on this filesystem, else copied by chunks."""
    files = [f for d in FETCHED_AT_END for f in backend.list_files(handle, d)]
    for rel, size in files:
        dest = _store_path(store, run_id, rel)
        if dest.exists() and dest.stat().st_size == size:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        local = backend.host_path(handle, rel)
        if local is not None:
            try:
                os.replace(local, dest)  # same filesystem: a rename, however big the file
                continue
            except OSError:
                pass  # another filesystem (or gone): copy below
        tmp = dest.with_name(f".{dest.name}.part")
        with open(tmp, "wb") as f:
            copy_range(backend, handle, rel, f, 0, size)
        os.replace(tmp, dest)


def copy_range(backend: Backend, handle: Handle, rel: str, out: BinaryIO, start: int, end: int) -> None:
    """Write bytes [start, end) of RUN_DIR/rel to ``out``, in chunks (less if the file is shorter)."""
    offset = start
    while offset < end:
        chunk = backend.read(handle, rel, offset, min(CHUNK_BYTES, end - offset))
        if not chunk:
            return
        out.write(chunk)
        offset += len(chunk)


def _store_path(store: Store, run_id: str, rel: str) -> Path:
    parts = rel.split("/")
    if parts[0] == "runs" and len(parts) > 2:  # a child run's file: runs/<child id>/<name>
        return store.run_dir(parts[1]) / "/".join(parts[2:])
    return store.run_dir(run_id) / rel


def _record_state(store: Store, record: RunRecord, state: JobState) -> None:
    status = state.status
    if record.status == RunStatus.CANCEL_REQUESTED and not status.is_terminal:
        status = RunStatus.CANCEL_REQUESTED
    values: dict = {"status": status}
    if state.host and not record.host:
        values["host"] = state.host
    if state.started_at and not record.started_at:
        values["started_at"] = state.started_at
    if status.is_terminal:
        values.update(exit_code=state.exit_code, error=state.error, synced=True,
                      ended_at=state.ended_at or time.time())
    if any(getattr(record, k) != v for k, v in values.items()):
        store.update(record.id, **values)
    if status.is_terminal:
        store.finish_children(record.id, status, values["ended_at"])


def store_log_path(store: Store, run_id: str, name: str = "logs/std_log.txt") -> Path:
    return store.run_dir(run_id) / name
