"""Content-addressed snapshots of a source directory.

One object per distinct file content (``objects/ab/cdef...``, sha256) and one manifest
per snapshot (``snapshots/<id>.json``, the id being the hash of the manifest, so the same
tree always gives the same id). Ignore files use gitignore syntax: ``.gitignore`` at any
depth, then a root ``.runctlignore`` or ``.amlignore`` whose ``!pattern`` can re-include.
``.git/`` is always left out. A stat cache (path, size, mtime, inode) avoids re-hashing
unchanged files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from runctl.errors import InputError
from runctl.job import protocol
from runctl.store import private

ROOT_IGNORE_FILES = (".amlignore", ".runctlignore")
ALWAYS_EXCLUDED = (".git",)
RACY_WINDOW_NS = 2_000_000_000


@dataclass
class Entry:
    path: str  # posix, relative to the source directory
    size: int
    mode: int
    mtime_ns: int
    ino: int
    link: str | None = None
    digest: str | None = None


@dataclass
class Listing:
    root: Path
    entries: list[Entry] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries if e.link is None)

    def largest(self, n: int = 5) -> list[Entry]:
        return sorted((e for e in self.entries if e.link is None), key=lambda e: -e.size)[:n]


class _Rules:
    """Ignore decisions for one path: later, deeper rules win; the root ignore file wins last."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir_specs: dict[str, Any] = {}
        self.final: list[Any] = []
        for name in ROOT_IGNORE_FILES:
            p = root / name
            if p.is_file():
                self.final.append(self._read(p))

    def load_dir(self, rel_dir: str) -> None:
        p = self.root / rel_dir / ".gitignore"
        if p.is_file():
            self.dir_specs[rel_dir] = self._read(p)

    def _read(self, path: Path) -> Any:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
        except OSError as e:
            raise InputError(f"{path}: cannot read it ({e.strerror}); make it readable") from None
        import pathspec  # only for a tree with ignore files (its import is 12 ms of a submit)

        for n, line in enumerate(lines, 1):
            try:
                pathspec.GitIgnoreSpec.from_lines([line])
            except ValueError as e:
                raise InputError(f"{path}:{n}: invalid pattern {line!r} ({e}); fix or remove the line") from None
        return pathspec.GitIgnoreSpec.from_lines(lines)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        probe = rel + "/" if is_dir else rel
        decision = None
        parts = rel.split("/")
        for depth in range(len(parts)):
            base = "/".join(parts[:depth])
            spec = self.dir_specs.get(base)
            if spec is None:
                continue
            sub = probe[len(base) + 1 :] if base else probe
            r = spec.check_file(sub).include
            if r is not None:
                decision = r
        for spec in self.final:
            r = spec.check_file(probe).include
            if r is not None:
                decision = r
        return bool(decision)


def list_source(root: Path, exclude: tuple[Path, ...] = ()) -> Listing:
    """Walk ``root`` applying the ignore rules; refuse symlinks that leave it. Directories in
    ``exclude`` (runctl's own store, when it lives inside the source) are left out."""
    try:
        return _list_source(root, exclude)
    except PermissionError as e:
        raise InputError(f"{e.filename}: cannot read it (permission denied); make it readable") from None


def _list_source(root: Path, exclude: tuple[Path, ...]) -> Listing:
    root = root.resolve()
    rules = _Rules(root)
    listing = Listing(root)
    skip = {str(p.resolve()) for p in exclude}

    def walk(rel_dir: str) -> None:
        here = root / rel_dir if rel_dir else root
        try:
            with os.scandir(here) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise InputError(f"{here}: cannot read this directory ({e.strerror}); make it readable, or add "
                             f"{rel_dir + '/' if rel_dir else '/'} to .runctlignore") from None
        rules.load_dir(rel_dir)
        for de in items:
            rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
            if not rel_dir and de.name in ALWAYS_EXCLUDED:
                continue
            is_link = de.is_symlink()
            is_dir = not is_link and de.is_dir()
            if rules.ignored(rel, is_dir):
                continue
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(f"{root}/{ascii(rel)[1:-1]}: the file name is not valid UTF-8; rename it, "
                                 f"or add it to .runctlignore") from None
            try:
                st = de.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walked: it is not part of the tree any more
            if is_link:
                listing.entries.append(_link_entry(root, rel, st))
            elif is_dir:
                if not skip or str(root / rel) not in skip:
                    walk(rel)
            elif stat.S_ISREG(st.st_mode):
                listing.entries.append(Entry(rel, st.st_size, st.st_mode & 0o777, st.st_mtime_ns, st.st_ino))

    walk("")
    return listing


def _link_entry(root: Path, rel: str, st: os.stat_result) -> Entry:
    target = os.readlink(root / rel)
    resolved = os.path.realpath(root / rel)
    if not (resolved == str(root) or resolved.startswith(str(root) + os.sep)):
        raise InputError(
            f"{root / rel}: symlink points outside source_directory (-> {target}); "
            f"copy the file in, or add {rel!r} to .runctlignore"
        )
    rel_target = os.path.relpath(resolved, os.path.dirname(root / rel))
    return Entry(rel, 0, 0o777, st.st_mtime_ns, st.st_ino, link=rel_target)


def check_size(listing: Listing, max_mb: float) -> None:
    limit = int(max_mb * 1024 * 1024)
    total = listing.total_bytes
    if total > limit:
        top = ", ".join(f"{e.path} ({human_bytes(e.size)})" for e in listing.largest(3))
        raise InputError(
            f"{listing.root}: snapshot would be {human_bytes(total)}, over the limit of "
            f"{human_bytes(limit)} (largest: {top}); add large files to .runctlignore, or raise "
            f"snapshot.max_size_mb in .runctl/config.yaml"
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


SMALL_FILE_BYTES = 1 << 20


class ObjectStore:
    """Files by content under ``<store>/objects`` (at ``protocol.object_relpath``), manifests under
    ``<store>/snapshots`` (store/layout.py)."""

    def __init__(self, store_dir: Path) -> None:
        from runctl.store import layout

        self.objects = layout.objects_dir(store_dir)
        self.manifests = layout.snapshots_dir(store_dir)
        self._objects = str(self.objects)
        self._made: set[str] = set()  # fan-out directories known to exist

    def object_path(self, digest: str) -> Path:
        return self.objects / protocol.object_relpath(digest)

    def add_file(self, src: str | Path) -> str:
        """Store a file by its content (read once: hashed while copied); returns its digest."""
        with open(src, "rb") as f:
            head = f.read(SMALL_FILE_BYTES + 1)
            if len(head) <= SMALL_FILE_BYTES:  # most code files: one read, then as add_bytes
                return self.add_bytes(head)
            private.makedirs(self.objects)
            tmp = self.objects / f".incoming.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                h = hashlib.sha256(head)
                with private.open_file(tmp) as out:
                    out.write(head)
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                digest = h.hexdigest()
                dest = self.object_path(digest)
                if not dest.exists():
                    self._dir_for(digest)
                    os.chmod(tmp, 0o400)
                    os.replace(tmp, dest)
                return digest
            finally:
                tmp.unlink(missing_ok=True)

    def add_bytes(self, data: bytes) -> str:
        """Store ``data`` by its content; returns its digest. (Written beside its final name,
        created read-only: a cold snapshot of thousands of files is mostly this, so paths are
        plain strings here.)"""
        digest = hashlib.sha256(data).hexdigest()
        dest = self.object_file(digest)
        if os.path.exists(dest):
            return digest
        self._dir_for(digest)
        tmp = f"{dest}.incoming.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o400)
        try:
            os.fchmod(fd, 0o400)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.close(fd)
            fd = -1
            os.replace(tmp, dest)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return digest

    def object_file(self, digest: str) -> str:
        """object_path as a string (for loops over thousands of files)."""
        return f"{self._objects}/{protocol.object_relpath(digest)}"

    def _dir_for(self, digest: str) -> None:
        fan_out = protocol.object_relpath(digest).split("/")[0]
        if fan_out not in self._made:
            private.makedirs(self.objects / fan_out)
            self._made.add(fan_out)

    def put_manifest(self, manifest: dict) -> str:
        data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        snap_id = hashlib.sha256(data).hexdigest()[:32]
        path = self.manifests / f"{snap_id}.json"
        if not path.exists():
            private.makedirs(self.manifests)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            private.write_bytes(tmp, data)
            os.replace(tmp, path)
        return snap_id

    # -- for gc ---------------------------------------------------------------------------
    def leftovers(self) -> list[Path]:
        """Temporary files of adds that a killed process left behind."""
        return sorted(self.objects.glob(".incoming.*"))

    def manifest_files(self) -> list[tuple[str, Path]]:
        """(snapshot id, its manifest's file) of every snapshot held."""
        return [(m.stem, m) for m in sorted(self.manifests.glob("*.json"))]

    def stored(self) -> Iterator[tuple[str, Path]]:
        """(digest, file) of every object held (a name that is not a digest: a leftover in a fan-out folder)."""
        for sub in sorted(self.objects.iterdir()) if self.objects.is_dir() else []:
            if sub.is_dir():
                for obj in sorted(sub.iterdir()):
                    yield sub.name + obj.name, obj

    def prune_empty_dirs(self) -> None:
        for sub in self.objects.glob("??"):
            with contextlib.suppress(OSError):
                os.rmdir(sub)  # only when empty

    def manifest(self, snap_id: str) -> dict:
        return json.loads((self.manifests / f"{snap_id}.json").read_bytes())



def take_snapshot(
    listing: Listing,
    objects: ObjectStore,
    cache_get: Callable[[list[str]], dict[str, tuple]],
    cache_put: Callable[[list[tuple]], None],
) -> str:
    """Hash (or reuse cached hashes of) every file, store new objects, return the snapshot id."""
    root = str(listing.root)
    keys = [f"{root}/{e.path}" for e in listing.entries if e.link is None]
    cached = cache_get(keys)
    now_ns = time.time_ns()
    fresh: list[tuple] = []
    exists = os.path.exists
    for e in listing.entries:
        if e.link is not None:
            continue
        full = f"{root}/{e.path}"
        hit = cached.get(full)
        if hit and hit[:3] == (e.size, e.mtime_ns, e.ino) and exists(objects.object_file(hit[3])):
            e.digest = hit[3]
            continue
        try:
            e.digest = objects.add_file(full)
        except FileNotFoundError:
            raise InputError(f"{full}: removed while the snapshot was taken; submit again") from None
        except PermissionError:
            raise InputError(f"{full}: cannot read this file (permission denied); make it readable, or add "
                             f"{e.path!r} to .runctlignore") from None
        if now_ns - e.mtime_ns > RACY_WINDOW_NS:
            fresh.append((full, e.size, e.mtime_ns, e.ino, e.digest))
    if fresh:
        cache_put(fresh)
    manifest = {
        "version": 1,
        "files": [[e.path, e.digest, e.size, e.mode] for e in listing.entries if e.link is None],
        "links": [[e.path, e.link] for e in listing.entries if e.link is not None],
    }
    return objects.put_manifest(manifest)


def git_properties(src: Path) -> dict[str, str]:
    """Azure ML's git run properties for the repository holding ``src`` (empty if none)."""

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    status = git("status", "--porcelain=v2", "--branch", "--untracked-files=normal", ".")
    if status is None:
        return {}
    commit = branch = ""
    dirty = False
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.split(" ", 2)[2]
        elif line.startswith("# branch.head "):
            branch = line.split(" ", 2)[2]
        elif not line.startswith("#"):
            dirty = True
    remote = _strip_credentials(git("ls-remote", "--get-url") or "")
    props = {
        "azureml.git.repository_uri": remote,
        "azureml.git.branch": "" if branch == "(detached)" else branch,
        "azureml.git.commit": "" if commit == "(initial)" else commit,
        "azureml.git.dirty": str(dirty),
    }
    props.update({
        "mlflow.source.git.repoURL": props["azureml.git.repository_uri"],
        "mlflow.source.git.branch": props["azureml.git.branch"],
        "mlflow.source.git.commit": props["azureml.git.commit"],
    })
    return props


def _strip_credentials(url: str) -> str:
    """Never record a token embedded in a remote URL: user:token@ (https://user:token@host/...)
    and the query string (?private_token=..., ?access_token=...) are dropped."""
    if "://" not in url:
        return url  # scp-like git@host:path holds no secret
    scheme, rest = url.split("://", 1)
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    if "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}://{rest}"
