"""Building a run directory (the contract in docs/architecture.md) on a local filesystem.

RUN_DIR/code/ (the snapshot), RUN_DIR/.runctl/launcher.py, .runctl/spec.json,
.runctl/lib/runctl_context/ (the stdlib-only client) + sitecustomize.py, .runctl/shim/azureml/.
Backends whose RUN_DIR is local (local, docker) call ``prepare``; remote ones ship
``jobside_files()`` themselves.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from . import protocol
from .snapshot import ObjectStore, materialize

PKG = Path(__file__).resolve().parent


def jobside_files() -> Iterator[tuple[Path, str]]:
    """(source file, path relative to RUN_DIR) of every job-side file runctl ships."""
    yield PKG / "launcher.py", ".runctl/launcher.py"
    yield PKG / "protocol.py", ".runctl/lib/runctl_protocol.py"
    yield PKG / "_shim" / "sitecustomize.py", ".runctl/lib/sitecustomize.py"
    for src_root, dest_root in ((PKG / "context", ".runctl/lib/runctl_context"),
                                (PKG / "_shim" / "azureml", ".runctl/shim/azureml")):
        for p in sorted(src_root.rglob("*.py")):
            yield p, f"{dest_root}/{p.relative_to(src_root).as_posix()}"


def prepare(run_dir: Path, objects: ObjectStore, snapshot_id: str, launcher_spec: dict[str, Any]) -> None:
    materialize(objects, snapshot_id, run_dir / "code")
    for src, rel in jobside_files():
        dest = run_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    write_json_atomic(run_dir / protocol.SPEC_FILE, launcher_spec)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
