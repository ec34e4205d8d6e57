"""A backend's answers are hostile input. A job controls what its RUN_DIR holds, and on an SSH
host or a login node it can even change what runctl's agent says, so core checks every
answer before it acts on one: names before they become paths in the store, sizes and
offsets before they become reads, states before they become records."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from runctl.job import protocol
from runctl.status import RunStatus

if TYPE_CHECKING:
    from runctl.backends.base import Backend, Handle, JobState, RunFile

MAX_NAME_BYTES = 255  # one path component (NAME_MAX)
MAX_PATH_BYTES = 4000  # a whole path under the store (PATH_MAX with room for the store's own prefix)
MAX_FILE_BYTES = 1 << 50
KINDS = ("file", "symlink", "fifo", "socket", "device", "deep", "hardlink")
SKIP_REASONS = {"deep": "too deep", "hardlink": "another name of a file already listed"}
MAX_ERROR_CHARS = 4000


def path_problem(path: object, reldir: str) -> str | None:
    """Why ``path`` (a name a backend listed under RUN_DIR/reldir) cannot become a file in the
    store, or None if it can."""
    if not isinstance(path, str):
        return "not a name"
    if "\0" in path:
        return "a NUL in the name"
    if path.startswith("/"):
        return "an absolute path"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "an empty, '.' or '..' component"
    if parts[0] != reldir:
        return f"not under {reldir}/"
    try:
        encoded = path.encode("utf-8", "surrogateescape")
    except UnicodeError:
        return "a name the store cannot hold"
    if len(encoded) > MAX_PATH_BYTES or any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts):
        return "a name too long for the store"
    return None


def list_files(backend: Backend, handle: Handle, reldir: str) -> tuple[list[RunFile], list[str]]:
    """``backend.list_files`` checked: (regular files core may fetch, what was skipped and why)."""
    files, skipped = [], []
    for f in backend.list_files(handle, reldir):
        why = path_problem(getattr(f, "path", None), reldir)
        kind, size = getattr(f, "kind", None), getattr(f, "size", None)
        if why is None and kind not in KINDS:
            why = "an unknown kind"
        if why is None and not (type(size) is int and 0 <= size <= MAX_FILE_BYTES):
            why = "an impossible size"
        if why is not None:
            skipped.append(f"{_shown(getattr(f, 'path', '?'))} ({why})")
        elif kind != "file":
            skipped.append(f"{_shown(f.path)} ({SKIP_REASONS.get(str(kind), kind)})")
        else:
            files.append(f)
    return files, skipped


def read(backend: Backend, handle: Handle, relpath: str, offset: int, max_bytes: int) -> bytes:
    """``backend.read`` checked: bytes, and never more than were asked for."""
    data = backend.read(handle, relpath, offset, max_bytes)
    if not isinstance(data, bytes):
        return b""
    return data[:max_bytes]


def state(js: JobState) -> JobState:
    """A backend's JobState with every value of the wrong type or out of range dropped (and said)."""
    from runctl.backends.base import JobState

    if not isinstance(js, JobState) or not isinstance(js.status, RunStatus):
        return JobState(RunStatus.FAILED, error="the backend answered with no usable state")
    fixes: dict = {}
    dropped = []
    if js.exit_code is not None and not (type(js.exit_code) is int and -(1 << 31) <= js.exit_code < 1 << 31):
        fixes["exit_code"] = None
        dropped.append("exit_code")
    for name in ("started_at", "ended_at"):
        t = getattr(js, name)
        if t is not None and not (type(t) in (int, float) and math.isfinite(t) and 0 <= t < protocol.MAX_TIME_S):
            fixes[name] = None
            dropped.append(name)
    for name, limit in (("error", MAX_ERROR_CHARS), ("host", 255), ("warning", MAX_ERROR_CHARS)):
        text = getattr(js, name)
        if text is not None and not isinstance(text, str):
            fixes[name] = None
            dropped.append(name)
        elif text is not None and len(text) > limit:
            fixes[name] = text[:limit] + "..."
    if dropped:
        note = f"the backend's state had unusable values ({', '.join(dropped)}), ignored"
        warning = fixes.get("warning", js.warning if isinstance(js.warning, str) else None)
        fixes["warning"] = f"{warning}; {note}" if warning else note
    return replace(js, **fixes) if fixes else js


def _shown(path: object) -> str:
    text = repr(path) if not isinstance(path, str) else path
    return text if len(text) <= 160 else text[:160] + "..."
