"""The store is private: its directories are made 0700 and its files 0600 whatever the umask
(logs can hold secrets a script printed). Everything that creates in the store goes here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def makedirs(d: Path) -> None:
    """mkdir -p where each directory this makes is 0700."""
    missing = []
    while not d.exists():
        missing.append(d)
        d = d.parent
    for m in reversed(missing):
        try:
            m.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(m, DIR_MODE)  # mkdir's mode is filtered by the umask


def open_file(path: Path, mode: str = "wb") -> BinaryIO:
    """Open a store file for writing ("wb" or "ab"), created 0600; a link at ``path`` is refused, never followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, os.fstat(fd).st_mode & FILE_MODE)
    return os.fdopen(fd, mode)  # type: ignore[return-value]


def write_bytes(path: Path, data: bytes) -> None:
    with open_file(path) as f:
        f.write(data)


def copy_tree(src: Path, dest: Path) -> None:
    """Copy a folder's regular files into the store (links are not followed), privately."""
    for dirpath, _dirs, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        for fn in files:
            s = Path(dirpath) / fn
            if s.is_symlink() or not s.is_file():
                continue
            makedirs(dest / rel)
            with open(s, "rb") as fin, open_file(dest / rel / fn) as fout:
                shutil.copyfileobj(fin, fout)


def protect(path: Path, mode: int = FILE_MODE) -> None:
    """Narrow an existing file's mode (e.g. SQLite's, made with the umask)."""
    try:
        os.chmod(path, mode)
    except FileNotFoundError:
        pass
