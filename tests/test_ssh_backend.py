"""The SSH backend against a real sshd with its own address (tests/infra/up-ssh.sh): the
conformance suites, host-key trust, and hostile names."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from .backend_contract import BackendContract, BackendMethods
from .conftest import Project, require_service

STATE = Path(os.environ.get("RUNCTL_TEST_SSH_STATE", "/var/lib/runctl-test-ssh"))
HOST, PORT = "10.231.0.2", 2222


def ssh_ready() -> bool:
    if not (STATE / "known_hosts").exists() or not (STATE / "client_ed25519").exists():
        return False
    import socket

    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def _sshd() -> None:
    require_service("the test sshd", ssh_ready(), "run tests/infra/up-ssh.sh")


def target(**more: Any) -> dict[str, Any]:
    return {"type": "ssh", "hosts": [HOST], "port": PORT, "user": "root", "identity_file": str(STATE / "client_ed25519"),
            "known_hosts": str(STATE / "known_hosts"), "python": "/usr/bin/python3", **more}


class TestSSHMethods(BackendMethods):
    @pytest.fixture
    def make_backend(self, home: Path) -> Any:
        from runctl.backends.ssh import SSHBackend

        def make(options: dict[str, Any]) -> SSHBackend:
            opts = {k: v for k, v in target(cancel_grace_s=2, **options).items() if k != "type"}
            return SSHBackend("under-test", opts, home)

        return make

    @pytest.fixture
    def job_python(self) -> str:
        return "/usr/bin/python3"

    @pytest.fixture
    def stop_from_outside(self, rig: Any) -> Any:
        def stop(handle: Any) -> None:  # `ssh host kill PID`, as an operator would
            status = json.loads(rig.backend.read(handle, "status.json", 0, 1 << 20))
            rc, _, err = rig.backend.conn.run(f"kill {int(status['launcher_pid'])}")
            assert rc == 0, err

        return stop

    @pytest.fixture
    def unreachable_options(self) -> dict[str, Any]:
        return {"hosts": ["10.231.0.99"], "connect_timeout_s": 1}


class TestSSHContract(BackendContract):
    @pytest.fixture
    def target_config(self, tmp_path: Path) -> dict[str, Any]:
        return target(work_dir=str(tmp_path / "remote work 'dir' $HOME"))


def test_unknown_and_changed_host_keys_are_refused_and_trust_is_explicit(tmp_path: Path, home: Path) -> None:
    known = tmp_path / "known_hosts"
    proj = Project(tmp_path / "proj", {"lab": target(known_hosts=str(known))})
    job = proj.script_job("print('hi')\n", compute_target="lab")
    r = proj.cli("submit", str(job))
    assert r.rc == 2 and "not trusted yet" in r.err and "SHA256:" in r.err and "runctl compute trust" in r.err, r.err
    assert proj.cli("list", "--json").json() == [] and not known.exists(), "nothing added, no run made"
    r = proj.cli("compute", "trust", "lab")
    assert r.rc == 0 and "SHA256:" in r.out, r.err
    assert proj.cli("submit", str(job), "--wait").rc == 0
    stranger = (STATE / "client_ed25519.pub").read_text().split()[:2]  # any other key stands in for a new host key
    known.write_text(f"[{HOST}]:{PORT} {stranger[0]} {stranger[1]}\n")
    r = proj.cli("submit", str(job))
    assert r.rc == 2 and "CHANGED" in r.err, r.err
