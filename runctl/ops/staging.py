"""Staging a run: what RUN_DIR must hold (the plan), and getting it there through a backend's
transport, sending only the objects the far side lacks. Written once, for every backend.

RUN_DIR/code/ (the snapshot), RUN_DIR/.runctl/launcher.py, .runctl/spec.json,
.runctl/lib/runctl_job/ (the job-side package, runctl/job/, whole), .runctl/lib/runctl_task.py,
.runctl/lib/sitecustomize.py, .runctl/shim/azureml/ and .runctl/shim/runctl/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from runctl import job
from runctl.job import protocol
from runctl.store.snapshot import ObjectStore

if TYPE_CHECKING:
    from runctl.backends.transport import StagePlan, Transport

def jobside_files() -> Iterator[tuple[Path, str]]:
    """(source file, path relative to RUN_DIR) of every job-side file runctl ships."""
    yield Path(job.entry_file("launcher.py")), protocol.LAUNCHER_FILE
    yield Path(job.entry_file("runctl_task.py")), f"{protocol.LIB_DIR}/runctl_task.py"
    for src, rel in job.package_files():
        yield Path(src), f"{protocol.LIB_DIR}/{rel}"
    shim = Path(job.shim_dir())
    yield shim / "sitecustomize.py", f"{protocol.LIB_DIR}/sitecustomize.py"
    for name in ("azureml", "runctl"):
        for p in sorted((shim / name).rglob("*.py")):
            yield p, f"{protocol.SHIM_DIR}/{name}/{p.relative_to(shim / name).as_posix()}"


def plan(objects: ObjectStore, snapshot_id: str, launcher_spec: dict[str, Any]) -> StagePlan:
    """RUN_DIR's files by digest. The job-side files are objects too, so the far side's
    cache holds them once however many runs use them; spec.json, this run's own, goes inline."""
    from runctl.backends.transport import StagePlan

    manifest = objects.manifest(snapshot_id)
    files = [(f"{protocol.CODE_DIR}/{rel}", digest, mode) for rel, digest, _size, mode in manifest["files"]]
    for src, rel in jobside_files():
        files.append((rel, objects.add_bytes(src.read_bytes()), 0o644))  # small: no throwaway copy
    links = tuple((f"{protocol.CODE_DIR}/{rel}", link) for rel, link in manifest["links"])
    return StagePlan(tuple(files), links, ((protocol.SPEC_FILE, json.dumps(launcher_spec).encode()),))


@dataclass
class Staged:
    sent_objects: int
    sent_bytes: int


def _retrying(fn: Any) -> Any:
    """A link that drops while staging is retried with back-off (the transport resumes a
    partly sent object) before the error reaches the user."""
    import sys

    import tenacity

    from runctl.errors import BackendUnreachable

    def warn(state: tenacity.RetryCallState) -> None:
        if state.attempt_number == 1 and state.outcome is not None:
            print(f"runctl: {state.outcome.exception()}; retrying for up to {STAGING_PATIENCE_S:g} s", file=sys.stderr)

    return tenacity.retry(retry=tenacity.retry_if_exception_type(BackendUnreachable),
                          wait=tenacity.wait_exponential(multiplier=0.5, max=10), before_sleep=warn,
                          stop=tenacity.stop_after_delay(STAGING_PATIENCE_S), reraise=True)(fn)


STAGING_PATIENCE_S = 120.0


def stage(objects: ObjectStore, transport: Transport, run_dir: str, run_plan: StagePlan) -> Staged:
    """Send the objects the far side lacks, then materialise RUN_DIR there. A RUN_DIR left
    half-made by a failure is discarded."""
    from runctl.backends.transport import CacheDamaged

    sent = Staged(0, 0)
    send = _retrying(transport.send)
    for attempt in (1, 2):  # a second time if the far side's cache was found damaged (and cleaned)
        todo = sorted(_retrying(transport.missing)(run_plan.digests))
        sizes = {digest: objects.object_path(digest).stat().st_size for digest in todo}
        with Progress(sum(sizes.values()), len(todo)) as progress:
            transport.sent_bytes = progress.add_bytes
            for digest in todo:
                send(digest, objects.object_path(digest))
                sent.sent_objects += 1
                sent.sent_bytes += sizes[digest]
                progress.object_done(sizes[digest])
            try:
                transport.materialize(run_dir, run_plan)
                return sent
            except CacheDamaged:
                transport.discard(run_dir)
                if attempt == 2:
                    raise
            except BaseException:
                transport.discard(run_dir)
                raise
    return sent


class Progress:
    """One self-updating line on a terminal while an upload of some size runs (nothing when
    stderr is not a terminal, or for small uploads)."""

    SHOW_FROM_BYTES = 4 << 20
    EVERY_S = 0.2

    def __init__(self, total_bytes: int, total_objects: int) -> None:
        import sys
        import time

        self.stream = sys.stderr
        self.show = total_bytes >= self.SHOW_FROM_BYTES and self.stream.isatty()
        self.total_bytes, self.total_objects = total_bytes, total_objects
        self.bytes = self.objects = self.done_bytes = 0
        self.clock = time.monotonic
        self.start = self.last = self.clock()

    def __enter__(self) -> Progress:
        return self

    def add_bytes(self, n: int) -> None:
        self.bytes = min(self.total_bytes, self.bytes + n)
        self._draw()

    def object_done(self, size: int) -> None:
        self.objects += 1
        self.done_bytes += size
        self.bytes = max(self.bytes, min(self.total_bytes, self.done_bytes))
        self._draw()

    def _draw(self, final: bool = False) -> None:
        now = self.clock()
        if not self.show or (not final and now - self.last < self.EVERY_S):
            return
        self.last = now
        rate = self.bytes / max(now - self.start, 1e-3) / 1e6
        self.stream.write(f"\rrunctl: uploading code: {self.bytes / 1e6:.1f} of {self.total_bytes / 1e6:.1f} MB, "
                          f"{self.objects} of {self.total_objects} files, {rate:.1f} MB/s\x1b[K")
        self.stream.flush()

    def __exit__(self, *exc: object) -> None:
        if self.show:
            self._draw(final=True)
            self.stream.write("\n")
            self.stream.flush()


def code_files(objects: ObjectStore, snapshot_id: str) -> tuple[tuple[str, str], ...]:
    return tuple((rel, digest) for rel, digest, *_ in objects.manifest(snapshot_id)["files"])
