"""Batched, rate-aware status: core asks a backend about all its unfinished runs in ONE call
per poll interval (``status_many``), and never faster than the backend's ``poll_interval_s``."""

from __future__ import annotations

from typing import Any

import pytest

from runctl.ops import runs
from runctl.ops.session import Session

from .conftest import Project


class Counted:
    def __init__(self, backend: Any) -> None:
        self.calls: dict[str, int] = {"status": 0, "status_many": 0}
        self.sizes: list[int] = []
        for name in self.calls:
            original = getattr(backend, name)

            def counted(*args: Any, _name: str = name, _orig: Any = original) -> Any:
                self.calls[_name] += 1
                if _name == "status_many":
                    self.sizes.append(len(args[0]))
                return _orig(*args)

            setattr(backend, name, counted)


@pytest.fixture
def five_running(project: Project) -> list[str]:
    job = project.script_job("import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    ids = [project.cli("submit", str(job), "-q", check=True).out.strip() for _ in range(5)]
    yield ids
    for rid in ids:
        project.cli("cancel", rid)


def test_list_refreshes_all_runs_of_a_backend_in_one_call(project: Project, five_running: list[str]) -> None:
    with Session(start=project.root) as s:
        counter = Counted(s.backend("local"))
        records = runs.refresh_many(s, s.store.runs())
        assert {r.id for r in records} == set(five_running)
        assert all(r.status.value in ("Running", "Starting") for r in records)
        assert counter.calls["status_many"] == 1 and counter.sizes == [5]


def test_waiting_on_several_runs_asks_once_per_interval(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    job = project.script_job("import time\ntime.sleep(1.5)\n")
    ids = [project.cli("submit", str(job), "-q", check=True).out.strip() for _ in range(3)]
    with Session(start=project.root) as s:
        backend = s.backend("local")
        monkeypatch.setattr(backend, "poll_interval_s", 0.5)
        counter = Counted(backend)
        import time

        slept: list[float] = []
        monkeypatch.setattr(time, "sleep", lambda d: (slept.append(d), __import__("select").select([], [], [], d)))
        done = runs.wait_many(s, [s.store.get(r) for r in ids], timeout_s=60)
    assert [r.status.value for r in done] == ["Completed"] * 3
    assert counter.calls["status_many"] == len(slept) + 1, "one call per interval, for all three runs"
    assert all(n <= 3 for n in counter.sizes)
    assert min(slept) >= 0.5, "never faster than the backend's poll_interval_s"
    assert project.cli("wait", *ids).rc == 0
