"""Staging, the contract's other half: what RUN_DIR must hold (``StagePlan``, decided by core
in runctl/staging.py) and how it gets there (``Transport``, provided by a backend)."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class StagePlan:
    """What RUN_DIR must hold, decided by core: every file by content digest (the snapshot's
    code under ``code/``, the job-side files under ``.runctl/``, spec.json), and links."""

    files: tuple[tuple[str, str, int], ...]  # (path under RUN_DIR, sha256 digest, mode)
    links: tuple[tuple[str, str], ...] = ()  # (path under RUN_DIR, relative link target)
    inline: tuple[tuple[str, bytes], ...] = ()  # small files of this run only (spec.json): sent with materialize

    @property
    def digests(self) -> list[str]:
        return sorted({d for _, d, _ in self.files})


class CacheDamaged(Exception):
    """``materialize`` found objects of the far side's cache whose content no longer matches
    their digest (something changed them there); it removed them, so core sends them again."""


class Transport(abc.ABC):
    """How files reach the compute side; core drives it (runctl/staging.py), so the logic of
    sending only what is missing is written once. The far side keeps an object cache of
    files by sha256 digest; ``materialize`` builds a RUN_DIR from it."""

    # Core sets this to follow an upload: call it with each number of bytes that reached the
    # far side (a transport that only copies locally may never call it).
    sent_bytes: Callable[[int], None] = staticmethod(lambda n: None)

    @abc.abstractmethod
    def missing(self, digests: list[str]) -> set[str]:
        """The digests the far side's object cache lacks."""

    @abc.abstractmethod
    def send(self, digest: str, source: Path) -> None:
        """Put the local file ``source`` (whose content has ``digest``) into the far side's cache."""

    @abc.abstractmethod
    def materialize(self, run_dir: str, plan: StagePlan) -> None:
        """Make RUN_DIR (which must not exist, or be the empty directory a backend's ``begin``
        made) from cached objects: copies, so that a job can
        never alter the cache. Raise StartError (or OSError) if it cannot."""

    @abc.abstractmethod
    def discard(self, run_dir: str) -> None:
        """Remove a RUN_DIR that was only partly made (idempotent, never follows links)."""


