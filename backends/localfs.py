"""The local filesystem transport: RUN_DIR on this machine, its cache the object cache that
core lends backends (``services.objects``), so nothing is ever sent twice, and for local and
Docker runs nothing is sent at all. Stdlib only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runctl.backends.transport import StagePlan, Transport
from runctl.job import protocol as P
from runctl.job import safefs


class LocalTransport(Transport):
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)

    def _object(self, digest: str) -> Path:
        return self.cache_dir / P.object_relpath(digest)

    def missing(self, digests: list[str]) -> set[str]:
        return {d for d in digests if not self._object(d).is_file()}

    def send(self, digest: str, source: Path) -> None:
        dest = self._object(digest)
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = dest.with_name(f".incoming.{os.getpid()}.{digest[:8]}")
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o400)
        os.replace(tmp, dest)

    def materialize(self, run_dir: str, plan: StagePlan) -> None:
        root = Path(run_dir)
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            root.mkdir()
        except FileExistsError:  # made by the backend's begin(): only if a real, empty directory
            if root.is_symlink() or not root.is_dir() or any(os.scandir(root)):
                raise
        made: set[Path] = {root}
        for rel, digest, mode in plan.files:
            target = root / rel
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            shutil.copyfile(self._object(digest), target)
            os.chmod(target, mode | 0o200)
        for rel, link in plan.links:
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link, target)
        for rel, data in plan.inline:
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    def discard(self, run_dir: str) -> None:
        safefs.remove_tree(run_dir)
