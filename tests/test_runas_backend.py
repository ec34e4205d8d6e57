"""The acceptance test of "Writing a backend": tests/runas_backend.py, written from the docs
alone, passes the method-level conformance suite (jobs run as uid 65534 via setpriv)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest

from runctl.store.layout import services
from runctl.testing.contract import WEIRD_WORK_DIR, BackendMethods

from .conftest import require_service, stage_run_dir, wait_for
from .runas_backend import RunAsBackend


@pytest.fixture
def open_base() -> Any:
    """A folder the other user can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="runctl-runas-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


class TestRunAsMethods(BackendMethods):
    @pytest.fixture
    def make_backend(self, home: Path, open_base: Path) -> Any:
        require_service("root (to run jobs as another user)", os.getuid() == 0 and shutil.which("setpriv") is not None,
                        "run the suite as root on Linux")

        def make(options: dict[str, Any]) -> RunAsBackend:
            options = {**options}
            if "work_dir" in options:
                options["work_dir"] = str(open_base / WEIRD_WORK_DIR)
            return RunAsBackend("runas", options, services(home, "runas"))

        return make

    @pytest.fixture
    def job_python(self) -> str:
        return "/usr/bin/python3"

    @pytest.fixture
    def stop_from_outside(self) -> Any:
        def stop(handle: Any) -> None:
            import json

            os.kill(json.loads((Path(handle.run_dir) / "status.json").read_text())["launcher_pid"], signal.SIGTERM)

        return stop


def test_the_job_runs_as_the_other_user(tmp_path: Path, home: Path, open_base: Path) -> None:
    require_service("root (to run jobs as another user)", os.getuid() == 0, "run the suite as root")
    from runctl.backends.base import LaunchSpec
    from runctl.store.snapshot import ObjectStore, list_source, take_snapshot
    from runctl.store.sqlite import Store

    secret = open_base / "root-only.txt"
    secret.write_text("root's")
    os.chmod(secret, 0o600)
    src = tmp_path / "src"
    src.mkdir()
    (src / "who.py").write_text("import os, sys\nprint('uid', os.getuid())\n"
                                "try:\n    open(sys.argv[1]).read()\nexcept PermissionError:\n    print('denied')\n")
    store = Store(home)
    sid = take_snapshot(list_source(src), ObjectStore(home), store.stat_cache_get, store.stat_cache_put)
    store.close()
    backend = RunAsBackend("runas", {"work_dir": str(open_base / "w")}, services(home, "runas"))
    spec = LaunchSpec(run_id="exp_1_who", experiment="exp", argv=["/usr/bin/python3", "who.py", str(secret)], env={},
                      timeout_s=60, grace_s=1, snapshot_id=sid)
    stage_run_dir(backend, spec, home)
    handle = backend.submit(spec, backend.plan(spec))
    state = wait_for(lambda: (lambda st: st if st.status.is_terminal else None)(backend.status(handle)),
                     what="the job to end")
    assert state.status.value == "Completed"
    assert backend.read(handle, "logs/std_log.txt", 0, 1000) == b"uid 65534\ndenied\n"
