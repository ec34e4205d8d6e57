"""The local backend: the conformance suite, plus what only a local process shows."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from runctl.store.layout import services
from runctl.testing.contract import BackendContract, BackendMethods, WatchingMethods


class TestLocalContract(BackendContract):
    @pytest.fixture
    def target_config(self) -> dict[str, Any]:
        return {"type": "local"}


class TestLocalMethods(WatchingMethods, BackendMethods):
    @pytest.fixture
    def make_backend(self, home: Path) -> Any:
        from runctl.backends.local import LocalBackend

        return lambda options: LocalBackend("under-test", options, services(home, "local"))

    @pytest.fixture
    def stop_from_outside(self) -> Any:
        def stop(handle: Any) -> None:  # `kill PID` of the launcher, as an operator would
            status = json.loads((Path(handle.run_dir) / "status.json").read_text())
            os.kill(status["launcher_pid"], signal.SIGTERM)

        return stop


def test_a_stop_runctl_did_not_ask_for_is_a_failure(project) -> None:  # type: ignore[no-untyped-def]
    import json
    import os
    import signal

    from .conftest import wait_for

    job = project.script_job("import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    run_id = project.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: "up" in project.cli("logs", run_id).out, what="the job to start")
    status_file = project.root.parent / "store" / "work" / run_id / "status.json"
    os.kill(json.loads(status_file.read_text())["launcher_pid"], signal.SIGTERM)
    assert project.cli("wait", run_id, "--timeout", "60").rc == 143
    st = project.cli("status", run_id, "--json", check=True).json()
    assert st["status"] == "Failed" and "outside runctl" in st["error"]


def test_outputs_are_moved_into_the_store_not_copied(project, home) -> None:  # type: ignore[no-untyped-def]
    job = project.script_job("open('outputs/big.bin', 'wb').write(b'x' * 1000)\n")
    run_id = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    assert (home / "runs" / run_id / "outputs" / "big.bin").stat().st_size == 1000
    assert not (home / "work" / run_id / "outputs" / "big.bin").exists()


def test_run_directories_are_dropped_once_synced_except_failed_ones(project, home) -> None:  # type: ignore[no-untyped-def]
    ok = project.cli("submit", str(project.script_job("print('fine')\n")), "-q", "--wait", check=True).out.strip()
    bad = project.cli("submit", str(project.script_job("raise SystemExit(3)\n", name="bad.yaml")), "-q", "--wait")
    assert bad.rc == 3
    assert not (home / "work" / ok).exists() and (home / "work" / bad.out.strip() / "code").is_dir()
    assert "fine" in project.cli("logs", ok).out, "everything needed is in the store"
    assert project.cli("rerun", ok, "-q", "--wait").rc == 0, "rerun needs only the stored snapshot"


def test_a_follower_wakes_when_the_run_starts_prints_or_ends(tmp_path: Path) -> None:
    """wait_for_change returns early for a new status.json or a first log byte (so `--follow`
    shows them at once), and sleeps its whole time otherwise: later log bytes do not wake it."""
    import threading

    from runctl.backends.base import Handle
    from runctl.backends.local import LocalBackend

    backend = LocalBackend("local", {}, services(tmp_path / "store", "local"))
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    handle = Handle("local", "1", str(run_dir))

    def later(action: Any) -> None:
        threading.Timer(0.3, action).start()

    for action in (lambda: (run_dir / "status.json").write_text('{"state": "running"}'),
                   lambda: (run_dir / "logs" / "std_log.txt").write_text("first line\n"),
                   lambda: (run_dir / "status.json.tmp").replace(run_dir / "status.json")):
        if not (run_dir / "status.json.tmp").exists():
            (run_dir / "status.json.tmp").write_text('{"state": "finished"}')
        later(action)
        t0 = time.monotonic()
        backend.wait_for_change(handle, 30)
        assert time.monotonic() - t0 < 20, "woken by the change, not by the 30 s timeout"
    later(lambda: (run_dir / "logs" / "std_log.txt").write_text("first line\nmore\n"))
    t0 = time.monotonic()
    backend.wait_for_change(handle, 1.0)
    assert time.monotonic() - t0 >= 1.0, "more output of a log that had some waits for the caller's poll"
