"""A run's files (stdlib only): names as Azure ML shows them, mapped onto a run's folder.

``outputs/...`` and ``logs/...`` live in those folders; any other name is an uploaded
artifact under ``artifacts/``. The same mapping serves the job side (RUN_DIR) and the
store (``<store>/runs/<id>``).
"""

from __future__ import annotations

import os
import shutil

SPECIAL = ("outputs", "logs")

_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def check_name(name: str) -> str:
    norm = str(name).replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if not parts or norm.startswith("/") or ".." in parts:
        raise ValueError("file name %r must be a relative path inside the run (no '..')" % (name,))
    return "/".join(parts)


def path_for(root: str, name: str) -> str:
    name = check_name(name)
    if name.split("/", 1)[0] in SPECIAL:
        return os.path.join(root, name)
    return os.path.join(root, "artifacts", name)


def list_names(root: str) -> list:
    names = []
    for top in ("outputs", "logs", "artifacts"):
        base = os.path.join(root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.startswith(".") and fn.endswith(".part"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, fn), base).replace(os.sep, "/")
                names.append(rel if top == "artifacts" else top + "/" + rel)
    return names


def copy_in(root: str, name: str, src) -> str:
    """Store ``src`` (a path or a readable binary stream) as file ``name`` of the run."""
    dest = path_for(root, name)
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    if not hasattr(src, "read") and not os.path.isfile(src):
        raise FileNotFoundError("no such file: %r" % (src,))
    # 0600: in an interactive run this file is in the store, which is private
    with os.fdopen(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        if hasattr(src, "read"):
            shutil.copyfileobj(src, f)
        else:
            with open(src, "rb") as fin:
                shutil.copyfileobj(fin, f)
    return check_name(name)


def image_kind(path: str):
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, kind in _IMAGE_MAGIC:
        if head.startswith(magic):
            return kind
    return None
