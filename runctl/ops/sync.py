"""Sync: pull a run's new events and log bytes from its backend into the store, idempotently.

Events are read from the offset stored with the run and only up to the last complete
line, and stored together with the new offset in one transaction, so a torn last line
waits for the next sync and a second sync changes nothing. Log files are appended to
the store's copy, whose size is the offset. Once the backend reports a final state,
outputs are copied and the run is marked synced.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

from runctl.config.workspace import DEFAULT_OUTPUTS_MAX_MB
from runctl.job import events as events_format
from runctl.job import protocol
from runctl.ops import answers
from runctl.status import RunStatus
from runctl.store import private
from runctl.store.sqlite import RunRecord, Store, sync_warning

if TYPE_CHECKING:
    from runctl.backends.base import Backend, Handle, JobState, RunFile

CHUNK_BYTES = 8 << 20
DEFAULT_OUTPUTS_MAX_BYTES = int(DEFAULT_OUTPUTS_MAX_MB * 2**20)
EVENTS_FILE = protocol.EVENTS_FILE
MAX_EVENT_LINE_BYTES = 80 << 20  # the Run API refuses values whose event would be over 64 MiB


@contextmanager
def sync_lock(store: Store, run_id: str, blocking: bool) -> Iterator[bool]:
    d = store.run_dir(run_id)
    private.makedirs(d)
    with private.open_file(d / ".sync.lock", "ab") as f:
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
             after_logs: Callable[[], None] | None = None, state: JobState | None = None,
             outputs_max_bytes: int = DEFAULT_OUTPUTS_MAX_BYTES) -> RunRecord:
    """Bring ``record`` up to date from its backend and return the fresh record.
    ``after_logs`` runs as soon as new log bytes are in the store (before a final sync's
    slower work), so a follower prints them without waiting for outputs and clean-up.
    ``state``: the backend's answer already fetched for many runs at once (status_many).
    ``outputs_max_bytes``: what the run's outputs may bring into the store (the rest is skipped)."""
    if record.synced or record.handle is None:
        return record
    from runctl.backends.base import Handle

    handle = Handle.from_dict(record.handle)
    with sync_lock(store, record.id, blocking) as locked:
        if not locked:
            return store.get(record.id)
        record = store.get(record.id)
        if record.synced:
            return record
        state = answers.state(backend.status(handle) if state is None else state)
        final = state.status.is_terminal
        ingest_events(store, backend, handle, record.id, final)
        logs_skipped = ingest_logs(store, backend, handle, record.id, final)
        if after_logs is not None:
            after_logs()
        if state.status.is_terminal:
            fetch_outputs(store, backend, handle, record.id, outputs_max_bytes, logs_skipped)
        _record_state(store, record, state)
        if state.status.is_terminal:
            backend.release(handle, state)
    return store.get(record.id)


def ingest_events(store: Store, backend: Backend, handle: Handle, run_id: str, final: bool = False) -> None:
    """Ingest every complete line after the stored offset, however long one line is: a line
    longer than a chunk is gathered from several reads (up to MAX_EVENT_LINE_BYTES; a longer
    one cannot come from the Run API, which refuses such values in the script, and is skipped
    and counted). With ``final`` (the job has ended), a last line without its newline is
    ingested if it is whole JSON."""
    while True:
        offset = store.events_offset(run_id)
        data = answers.read(backend, handle, EVENTS_FILE, offset, CHUNK_BYTES)
        end = data.rfind(b"\n")
        if end < 0 and len(data) >= CHUNK_BYTES:  # one line longer than a chunk
            line_end = _next_line(backend, handle, offset + len(data))
            if line_end is None and not final:
                return  # still being written
            if line_end is None or line_end - offset > MAX_EVENT_LINE_BYTES:
                skip_to = line_end if line_end is not None else _file_end(backend, handle, offset)
                store.ingest_events(run_id, offset, skip_to, [sync_warning(
                    offset, f"an event line of {skip_to - offset} bytes was skipped (over "
                            f"{MAX_EVENT_LINE_BYTES >> 20} MiB, or cut off when the job ended)")])
                continue  # (or another process got there first) go on from the stored offset
            buf = io.BytesIO()
            copy_range(backend, handle, EVENTS_FILE, buf, offset, line_end)
            data = buf.getvalue()
            end = len(data) - 1
        if end < 0:
            if final and data.strip():
                events, bad = events_format.parse_lines(data + b"\n")
                if bad:
                    events.append(sync_warning(offset, "the last event line was cut off when the job ended"))
                store.ingest_events(run_id, offset, offset + len(data), events)
            return  # nothing new, or only a torn line: wait for the next sync
        events, bad = events_format.parse_lines(data[: end + 1])
        if bad:
            events.append(sync_warning(offset, f"{bad} damaged event line(s) skipped"))
        if not store.ingest_events(run_id, offset, offset + end + 1, events):
            continue  # another process ingested this range first; re-read the offset
        if len(data) < CHUNK_BYTES:
            return


def _file_end(backend: Backend, handle: Handle, offset: int) -> int:
    while chunk := answers.read(backend, handle, EVENTS_FILE, offset, CHUNK_BYTES):
        offset += len(chunk)
    return offset


def _next_line(backend: Backend, handle: Handle, offset: int) -> int | None:
    """The offset just after the next newline at or after ``offset`` (None: none yet)."""
    while True:
        data = answers.read(backend, handle, EVENTS_FILE, offset, CHUNK_BYTES)
        if not data:
            return None
        cut = data.find(b"\n")
        if cut >= 0:
            return offset + cut + 1
        offset += len(data)


def ingest_logs(store: Store, backend: Backend, handle: Handle, run_id: str, final: bool = False) -> list[str]:
    """Append what each log file gained since the last sync. A file the job rewrote in place
    (its bytes before our offset changed) is fetched again whole."""
    dest_root = store.run_dir(run_id)
    files, skipped = answers.list_files(backend, handle, protocol.LOGS_DIR)  # (recorded at the end, with outputs')
    for f in files:
        dest = dest_root / f.path
        have = dest.stat().st_size if dest.exists() else 0
        if have and (f.size != have or final) and not _same_tail(backend, handle, f.path, dest, have, final):
            _fetch_whole(backend, handle, f.path, f.size, dest)
            continue
        if have >= f.size:
            continue
        private.makedirs(dest.parent)
        with private.open_file(dest, "ab") as out:
            copy_range(backend, handle, f.path, out, have, f.size)
    return skipped


TAIL_CHECK_BYTES = 4096
FINAL_FULL_CHECK_BYTES = 16 << 20


def _same_tail(backend: Backend, handle: Handle, rel: str, dest: Path, have: int, final: bool) -> bool:
    """Do the bytes we hold still match the file's (its last 4 KiB before our offset; all of it
    at the end of the run when it is small)?"""
    start = 0 if final and have <= FINAL_FULL_CHECK_BYTES else max(0, have - TAIL_CHECK_BYTES)
    with open(dest, "rb") as mine:
        offset = start
        while offset < have:
            n = min(CHUNK_BYTES, have - offset)
            mine.seek(offset)
            if answers.read(backend, handle, rel, offset, n) != mine.read(n):
                return False
            offset += n
    return True


def _fetch_whole(backend: Backend, handle: Handle, rel: str, size: int, dest: Path) -> None:
    """RUN_DIR/rel copied to ``dest``; runs of zeros become holes (a sparse file stays sparse)."""
    tmp = dest.with_name(f".{dest.name}.part")
    with private.open_file(tmp, "wb") as out:
        copy_range(backend, handle, rel, out, 0, size, sparse=True)
        out.truncate(out.tell())
    os.replace(tmp, dest)


FETCHED_AT_END = ("outputs", "artifacts", "runs")


def fetch_outputs(store: Store, backend: Backend, handle: Handle, run_id: str,
                  max_bytes: int = DEFAULT_OUTPUTS_MAX_BYTES, logs_skipped: list[str] | None = None) -> None:
    """Bring outputs/ and uploaded artifacts/ (and child runs' files under runs/<id>/) into the
    store: moved when the run directory is on this filesystem, else copied by chunks. Links,
    special files, a second name of a hard-linked file, folders of runs that are not this run's
    children and whatever would take the run past ``max_bytes`` are skipped, and the skips are
    recorded as the run's ``runctl.skipped_files`` property."""
    children = store.descendants(run_id)
    skipped: list[str] = list(logs_skipped or [])  # (what logs/ held that was skipped: listed by ingest_logs)
    total = 0
    for reldir in FETCHED_AT_END:
        files, not_files = answers.list_files(backend, handle, reldir)
        skipped += not_files
        for f in files:
            dest = _store_path(store, run_id, f.path, children)
            if dest is None:
                skipped.append(f"{f.path} (not a child run of this run)")
                continue
            if total + f.size > max_bytes:
                skipped.append(f"{f.path} ({f.size} bytes: past outputs.max_size_mb, "
                               f"{max_bytes / 2**20:g} MB for the run)")
                continue
            total += f.size
            _fetch_output(backend, handle, f, dest)
    _record_skipped(store, run_id, skipped)


def _fetch_output(backend: Backend, handle: Handle, f: RunFile, dest: Path) -> None:
    if dest.exists() and dest.stat().st_size == f.size:
        return
    private.makedirs(dest.parent)
    if backend.move_file(handle, f.path, dest):
        private.protect(dest)
        return
    _fetch_whole(backend, handle, f.path, f.size, dest)


def _record_skipped(store: Store, run_id: str, skipped: list[str]) -> None:
    """The run's ``runctl.skipped_files`` property: a JSON list of at most 4000 characters."""
    if not skipped:
        return
    shown: list[str] = []
    for i, entry in enumerate(skipped):
        entry = entry if len(entry) <= 300 else entry[:300] + "..."
        rest = [f"... and {len(skipped) - i - 1} more"] if i < len(skipped) - 1 else []
        if len(json.dumps([*shown, entry, *rest])) > 4000:
            shown.append(f"... and {len(skipped) - i} more")
            break
        shown.append(entry)
    store.add_properties(run_id, {"runctl.skipped_files": json.dumps(shown)})


HOLE_BYTES = 1 << 16
_ZEROS = bytes(HOLE_BYTES)


def copy_range(backend: Backend, handle: Handle, rel: str, out: BinaryIO, start: int, end: int,
               sparse: bool = False) -> None:
    """Write bytes [start, end) of RUN_DIR/rel to ``out``, in chunks (less if the file is shorter).
    With ``sparse`` (``out`` seekable, not appending), 64 KiB blocks of zeros are skipped over."""
    offset = start
    while offset < end:
        chunk = answers.read(backend, handle, rel, offset, min(CHUNK_BYTES, end - offset))
        if not chunk:
            return
        if sparse:
            _write_sparse(out, chunk)
        else:
            out.write(chunk)
        offset += len(chunk)


def _write_sparse(out: BinaryIO, chunk: bytes) -> None:
    view = memoryview(chunk)
    for i in range(0, len(chunk), HOLE_BYTES):
        block = view[i:i + HOLE_BYTES]
        if len(block) == HOLE_BYTES and block == _ZEROS:
            out.seek(HOLE_BYTES, os.SEEK_CUR)
        else:
            out.write(block)


def _store_path(store: Store, run_id: str, rel: str, children: set[str]) -> Path | None:
    """Where RUN_DIR/rel (checked by answers.path_problem) goes in the store."""
    parts = rel.split("/")
    if parts[0] == "runs":  # a child run's file: runs/<child id>/<name>, only for this run's children
        if len(parts) < 4 or parts[1] not in children or parts[2] not in (protocol.LOGS_DIR, *FETCHED_AT_END[:2]):
            return None
        return store.run_dir(parts[1]) / "/".join(parts[2:])
    return store.run_dir(run_id) / rel


def _record_state(store: Store, record: RunRecord, state: JobState) -> None:
    status = state.status
    if record.status == RunStatus.CANCEL_REQUESTED and not status.is_terminal:
        status = RunStatus.CANCEL_REQUESTED
    if record.status == RunStatus.CANCEL_REQUESTED and status == RunStatus.FAILED \
            and state.error == protocol.STOPPED_OUTSIDE_ERROR:
        # runctl did ask (the store says so) though the job hid the cancel marker from the backend
        from dataclasses import replace

        status, state = RunStatus.CANCELED, replace(state, error="canceled")
    if status == RunStatus.CANCELED and record.status == RunStatus.CANCEL_REQUESTED and record.error:
        from dataclasses import replace

        state = replace(state, error=record.error)  # why runctl canceled it (a tuning policy's comparison)
    values: dict = {"status": status}
    if state.host and not record.host:
        values["host"] = state.host
    if state.started_at and not record.started_at:
        values["started_at"] = state.started_at
    if status.is_terminal:
        values.update(exit_code=state.exit_code, error=state.error, synced=True,
                      ended_at=state.ended_at or time.time())
    elif status == RunStatus.QUEUED or record.status == RunStatus.QUEUED:
        values["error"] = state.error if status == RunStatus.QUEUED else None  # why it waits (Slurm's reason)
    if any(getattr(record, k) != v for k, v in values.items()):
        store.update(record.id, **values)
    if state.warning:
        store.add_properties(record.id, {"runctl.status_warning": state.warning})
    if status.is_terminal:
        store.finish_children(record.id, status, values["ended_at"])


def store_log_path(store: Store, run_id: str, name: str = protocol.LOG_FILE) -> Path:
    return store.run_dir(run_id) / name
