"""A public fake backend: its RUN_DIR is a folder the test writes to directly and its state
is what the test sets. For testing what consumes a backend (core's sync, fault injection),
never as the only proof that a backend works."""

from __future__ import annotations

from pathlib import Path

from runctl.backends.base import Backend, Handle, JobState, LaunchSpec, RunFile, Services
from runctl.backends.localfs import LocalTransport
from runctl.job import safefs
from runctl.status import RunStatus


class FakeBackend(Backend):
    """RUN_DIR in a local folder the test writes to directly; state set by the test."""

    name = "fake"

    def __init__(self, run_dir: Path) -> None:
        super().__init__("fake", {}, Services(objects=run_dir / "objects", work_root=run_dir.parent, state_dir=run_dir))
        self.run_dir = run_dir
        self.state = JobState(RunStatus.RUNNING)
        self.reads = 0

    def plan(self, spec: LaunchSpec) -> Handle:
        return Handle("fake", "", str(self.run_dir))

    def transport(self, handle: Handle) -> LocalTransport:
        return LocalTransport(self.services.objects)

    def submit(self, spec: LaunchSpec, handle: Handle) -> Handle:
        return Handle("fake", "1", str(self.run_dir))

    def status(self, handle: Handle) -> JobState:
        return self.state

    def read(self, handle: Handle, relpath: str, offset: int, max_bytes: int) -> bytes:
        self.reads += 1
        return safefs.read_file(str(self.run_dir), relpath, offset, max_bytes)

    def list_files(self, handle: Handle, reldir: str) -> list[RunFile]:
        return [RunFile(*entry) for entry in safefs.walk(str(self.run_dir), reldir)]

    def cancel(self, handle: Handle) -> None:
        pass
