"""Reading a run directory that a hostile job controls, without ever leaving it (stdlib only).

Every path under RUN_DIR is opened one component at a time from a directory descriptor
with ``O_NOFOLLOW``: a symlink anywhere (``outputs -> /root``, ``logs/x -> /etc/shadow``)
is never followed, a FIFO or device is never read, and a name swapped between a check
and its use cannot redirect the open. RUN_DIR itself is trusted (runctl made it); what
the job made inside it is not.

Stdlib only (Python >= 3.8) and free of runctl imports: the SSH backend ships this very
file to remote hosts, where its remote agent (runctl/remote_agent.py) reads through it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from typing import Any, Callable, Iterator

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# A name that is not what it should be (a link, a file where a directory was expected).
_REFUSED = (errno.ELOOP, errno.ENOTDIR, errno.ENOENT, errno.EMLINK, errno.ENXIO)


class Unsafe(OSError):
    """A path under RUN_DIR is a link or a special file: runctl does not follow or read it."""


def _components(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise Unsafe(errno.EPERM, f"{rel!r} leaves the run directory")
    return parts


def open_dir(root: str, rel: str = "") -> int:
    """A descriptor of directory RUN_DIR/rel, reached without following any link."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in _components(rel):
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_file(root: str, rel: str) -> int:
    parts = _components(rel)
    if not parts:
        raise Unsafe(errno.EISDIR, "no file name")
    dfd = open_dir(root, "/".join(parts[:-1]))
    try:
        # Look before opening: opening a device node (a root job can make one) has effects of
        # its own, so only a name that is a regular file now is opened, and it must still be
        # that very file once open (a swap in between is refused).
        before = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(before.st_mode):
            raise Unsafe(errno.EPERM, f"{rel!r} is not a regular file")
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dfd)
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise Unsafe(errno.EPERM, f"{rel!r} is not a regular file")
    return fd


def read_file(root: str, rel: str, offset: int, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` of RUN_DIR/rel from ``offset``; b"" when it is absent, a link or not a file."""
    try:
        fd = _open_file(root, rel)
    except OSError as e:
        if isinstance(e, Unsafe) or e.errno in _REFUSED:
            return b""
        raise
    try:
        out = bytearray()
        while len(out) < max_bytes:
            chunk = os.pread(fd, min(max_bytes - len(out), 8 << 20), offset + len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)
    finally:
        os.close(fd)


def read_json(root: str, rel: str, max_bytes: int = 1 << 20) -> dict[str, Any]:
    """A small JSON object written by the launcher; {} if absent, damaged, oversized or not a file."""
    data = read_file(root, rel, 0, max_bytes + 1)
    if not data or len(data) > max_bytes:
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def exists(root: str, rel: str) -> bool:
    """Is RUN_DIR/rel a regular file (reached without links)?"""
    try:
        os.close(_open_file(root, rel))
    except OSError:
        return False
    return True


def mtime(root: str, rel: str) -> float | None:
    try:
        fd = _open_file(root, rel)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)


HELD = "held"  # with_free_lock's answer while another process holds the lock


def with_free_lock(root: str, rel: str, fn: Callable[[], Any]) -> Any:
    """``fn()`` while holding the flock on RUN_DIR/rel (the launcher lock) if no process holds
    it; HELD if one does. No lock file (or no RUN_DIR at all) counts as free: nothing was ever
    started there. The lock is taken on a file opened without following links."""
    parent, name = os.path.split(rel)
    try:
        dfd = open_dir(root, parent)
    except OSError:
        return fn() if os.path.isdir(root) or not os.path.lexists(root) else HELD
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644,
                     dir_fd=dfd)
    except OSError:
        return fn()
    finally:
        os.close(dfd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return HELD
        return fn()
    finally:
        os.close(fd)


def lock_held(root: str, rel: str) -> bool | None:
    """Does a process hold the flock on RUN_DIR/rel (the launcher lock)? None when that
    cannot be told: the job replaced the lock's folder or the lock with something else (a
    link, a FIFO). No lock file, or no RUN_DIR at all, is False: nothing was ever started."""
    parent, name = os.path.split(rel)
    try:
        dfd = open_dir(root, parent)
    except OSError:
        if not os.path.lexists(root) or (os.path.isdir(root) and not os.path.lexists(os.path.join(root, parent))):
            return False
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False  # free (released as the file closes)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


WATCH_EVERY_S = 0.005  # while the caller polls fast (a run's first seconds) ...
WATCH_SLOW_S = 0.05  # ... and once it has backed off (a long wait costs 20 lstat pairs a second)


def watch(root: str, status_rel: str, log_rel: str, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for RUN_DIR/status_rel to be replaced (the launcher does so
    when the job starts and ends) or for RUN_DIR/log_rel to get its first byte; True if one
    happened. Two lstat calls every 5 ms (50 ms when the caller waits longer than 0.1 s);
    nothing is opened, and what a job plants there can at worst wake its follower early.
    Later output waits for the caller's poll, so a chatty job does not make its follower spin."""
    every = WATCH_EVERY_S if timeout_s <= 0.1 else WATCH_SLOW_S
    status, log = os.path.join(root, status_rel), os.path.join(root, log_rel)
    before = _probe(status)
    log_empty = not (_probe(log) or (0,))[0]
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(every, left))
        if _probe(status) != before or (log_empty and (_probe(log) or (0,))[0]):
            return True


def _probe(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def touch(root: str, rel: str) -> None:
    """Create RUN_DIR/rel (and its directories) without following a link the job planted."""
    parts = _components(rel)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         0o644, dir_fd=fd))
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def walk(root: str, reldir: str, on_file: Callable[[int, str], Any] | None = None) -> Iterator[tuple]:
    """(path, size, kind) of every name under RUN_DIR/reldir, sorted, never descending through a link. Regular files
    have kind "file"; links and special files are reported with their kind so that the caller can record that it skipped them.
    With ``on_file(dir_fd, name)``, a regular file's tuple gets a fourth item: what it returned (e.g. a digest of the
    file, opened from its folder's descriptor: no path is walked again)."""
    try:
        top = open_dir(root, reldir)
    except OSError as e:
        if isinstance(e, Unsafe) or e.errno in _REFUSED:
            if reldir and _is_link(root, reldir):
                yield (reldir, 0, "symlink")
            return
        raise
    base = "/".join(_components(reldir))
    try:
        yield from _walk_fd(top, base, on_file)
    finally:
        os.close(top)


MAX_DEPTH = 200  # folders deeper than this under a listed folder are reported, not entered
MAX_ENTRIES = 1_000_000  # names listed at most under one folder (the rest are reported as one)


def _walk_fd(top: int, base: str, on_file: Callable[[int, str], Any] | None = None) -> Iterator[tuple]:
    """Depth first, in name order, without recursion (a job can nest folders thousands deep):
    a folder below MAX_DEPTH is reported with kind "deep" and not entered."""
    stack = [(top, base, iter(sorted(os.listdir(top))), 0)]
    seen = 0
    linked: set[tuple[int, int]] = set()  # hard-linked files met so far: a second name is reported, not read again
    try:
        while stack:
            dfd, prefix, names, depth = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if dfd != top:
                    os.close(dfd)
                continue
            seen += 1
            rel = f"{prefix}/{name}" if prefix else name
            if seen > MAX_ENTRIES:
                yield (base or ".", 0, "deep")
                return
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in linked:
                        yield (rel, 0, "hardlink")
                        continue
                    linked.add((st.st_dev, st.st_ino))
                if on_file is not None and stat.S_ISREG(st.st_mode):
                    yield (rel, st.st_size, "file", on_file(dfd, name))
                    continue
                yield (rel, st.st_size if stat.S_ISREG(st.st_mode) else 0, _kind(st.st_mode))
                continue
            if depth + 1 >= MAX_DEPTH:
                yield (rel, 0, "deep")
                continue
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError as e:
                if e.errno in _REFUSED:  # swapped for a link since the stat
                    yield (rel, 0, "symlink")
                    continue
                raise
            try:
                names_below = iter(sorted(os.listdir(sub)))
            except BaseException:
                os.close(sub)
                raise
            stack.append((sub, rel, names_below, depth + 1))
    finally:
        for dfd, _prefix, _names, _depth in stack:
            if dfd != top:
                os.close(dfd)


def _in_parent(root: str, rel: str, fn: Any) -> Any:
    """``fn(parent_fd, name)`` for RUN_DIR/rel's parent reached without links; None if it
    cannot be reached or ``fn`` fails."""
    parts = _components(rel)
    try:
        dfd = open_dir(root, "/".join(parts[:-1]))
    except OSError:
        return None
    try:
        return fn(dfd, parts[-1])
    except OSError:
        return None
    finally:
        os.close(dfd)


def _is_link(root: str, rel: str) -> bool:
    return bool(_in_parent(root, rel, lambda dfd, name: stat.S_ISLNK(os.stat(name, dir_fd=dfd,
                                                                            follow_symlinks=False).st_mode)))


def move_out(root: str, rel: str, dest: str) -> bool:
    """Rename RUN_DIR/rel to ``dest`` (same filesystem) if it is a plain regular file with no
    other hard links; False if it cannot be moved (the caller copies it instead)."""

    def move(dfd: int, name: str) -> bool:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return False  # another name shares it: copy, so that no one else's file moves
        os.replace(name, dest, src_dir_fd=dfd)
        return True

    if not _in_parent(root, rel, move):
        return False
    after = os.lstat(dest)
    if not stat.S_ISREG(after.st_mode):  # swapped between the stat and the rename
        os.unlink(dest)
        return False
    return True


def remove_tree(path: str) -> bool:
    """``rm -r path``, never following a link and without recursion (a job can nest folders
    thousands deep, past Python's recursion limit and the open-file limit): one folder open
    at a time, and the way back up checked to be the folder we came down from. Best effort:
    False if something could not be removed."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return True
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            return False
        try:
            os.unlink(path)  # a link or a file where the folder was: the name goes, not its target
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True
    above: list[tuple[int, int, str, Iterator[str]]] = []  # (dev, inode, name of the folder below, names left)
    names = iter(os.listdir(fd))
    ok = True
    try:
        while True:
            sub = None
            for name in names:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        sub = name
                        break
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError:
                    ok = False
            if sub is not None:
                try:
                    nxt = os.open(sub, _DIR_FLAGS, dir_fd=fd)
                    nxt_names = iter(os.listdir(nxt))
                except OSError:
                    ok = False
                    continue
                here = os.fstat(fd)
                above.append((here.st_dev, here.st_ino, sub, names))
                os.close(fd)
                fd, names = nxt, nxt_names
                continue
            if not above:
                break
            dev, ino, name, names = above.pop()
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            here = os.fstat(fd)
            if (here.st_dev, here.st_ino) != (dev, ino):  # moved while we were inside: stop here
                return False
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                ok = False
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return ok


def tree_size(path: str) -> int:
    """Bytes of the regular files under ``path``, without following links or recursion."""
    total = 0
    try:
        for _rel, size, kind in walk(path, ""):
            total += size if kind == "file" else 0
    except OSError:
        pass
    return total
