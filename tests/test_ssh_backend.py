"""The SSH backend against a real sshd with its own address (tests/infra/up-ssh.sh): the
conformance suites, host-key trust, and hostile names."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from runctl.store.layout import services
from runctl.testing.contract import BackendContract, BackendMethods, WatchingMethods

from .conftest import ALIVE_JOB, Project, kill_submits_at_random, require_service

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


@pytest.fixture(autouse=True)
def _no_strays(tmp_path: Path) -> Any:
    """An agent whose SSH session died with a cut link waits for its (long) alarm: the tests
    stop what they left on the "host" (this machine), found by this test's own paths."""
    yield
    import signal

    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(tmp_path).encode() in cmdline and b"runctl_job" in cmdline:
            os.kill(int(pid), signal.SIGKILL)


def target(**more: Any) -> dict[str, Any]:
    return {"type": "ssh", "hosts": [HOST], "port": PORT, "user": "root", "identity_file": str(STATE / "client_ed25519"),
            "known_hosts": str(STATE / "known_hosts"), "python": "/usr/bin/python3", **more}


class TestSSHMethods(WatchingMethods, BackendMethods):
    @pytest.fixture
    def make_backend(self, home: Path) -> Any:
        from runctl.backends.ssh import SSHBackend

        def make(options: dict[str, Any]) -> SSHBackend:
            opts = {k: v for k, v in target(cancel_grace_s=2, **options).items() if k != "type"}
            return SSHBackend("under-test", opts, services(home, "ssh"))

        return make

    @pytest.fixture
    def job_python(self) -> str:
        return "/usr/bin/python3"

    @pytest.fixture
    def stop_from_outside(self, rig: Any) -> Any:
        def stop(handle: Any) -> None:  # `ssh host kill PID`, as an operator would
            status = json.loads(rig.backend.read(handle, "status.json", 0, 1 << 20))
            rc, _, err = rig.backend.link(handle).conn.run(f"kill {int(status['launcher_pid'])}")
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
    assert r.rc == 0 and f"{HOST}: trusted ssh-ed25519 SHA256:" in r.out, r.err
    assert proj.cli("compute", "trust", "lab", check=True).out.startswith(f"{HOST}: already trusted")
    assert len(known.read_text().splitlines()) == 1
    assert proj.cli("submit", str(job), "--wait").rc == 0
    stranger = (STATE / "client_ed25519.pub").read_text().split()[:2]  # any other key stands in for a new host key
    known.write_text(f"[{HOST}]:{PORT} {stranger[0]} {stranger[1]}\n")
    r = proj.cli("submit", str(job))
    assert r.rc == 2 and "CHANGED" in r.err, r.err
    r = proj.cli("compute", "trust", "lab")
    assert r.rc == 2 and "CHANGED" in r.err and "ssh-keygen" in r.err, "a changed key is not trusted over"
    assert stranger[1] in known.read_text()


def test_compute_check_reports_every_host_and_fails_for_one_that_does_not_answer(tmp_path: Path, home: Path) -> None:
    proj = Project(tmp_path / "proj", {"lab": target(hosts=[HOST, "10.231.0.99"], connect_timeout_s=1,
                                                     work_dir=str(tmp_path / "remote"))})
    r = proj.cli("compute", "check", "lab")
    assert r.rc == 4, (r.out, r.err)
    assert f"{HOST}: reachable, host key trusted" in r.err and "python: /usr/bin/python3 3." in r.err
    assert "GiB free" in r.err and "GPUs: none" in r.err
    assert "10.231.0.99: NOT usable: 10.231.0.99: connecting" in r.err


def cut_link(seconds: float) -> None:
    """Take the test host's link down (our own veth, nothing else), then up again."""
    import subprocess
    import time

    subprocess.run(["ip", "link", "set", "rctl-h", "down"], check=True)
    try:
        time.sleep(seconds)
    finally:
        subprocess.run(["ip", "link", "set", "rctl-h", "up"], check=True)


def test_a_cut_link_while_following_loses_and_repeats_nothing(tmp_path: Path, home: Path) -> None:
    import subprocess
    import sys
    import time

    proj = Project(tmp_path / "proj", {"lab": target(command_timeout_s=2, connect_timeout_s=2,
                                                     work_dir=str(tmp_path / "remote"))})
    job = proj.script_job("""
        import time
        from azureml.core import Run
        run = Run.get_context()
        for i in range(40):
            run.log("i", i)
            print("line", i, flush=True)
            time.sleep(0.15)
        """, compute_target="lab")
    rid = proj.cli("submit", str(job), "-q", check=True).out.strip()
    follower = subprocess.Popen([sys.executable, "-m", "runctl", "logs", rid, "--follow"], cwd=proj.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    cut_link(3.0)
    out, err = follower.communicate(timeout=180)
    assert follower.returncode == 0, err
    assert "retrying" in err, "the drop was noticed and ridden out"
    assert "Traceback" not in err and "Exception" not in err, err  # one line per retry, not paramiko's log
    assert [ln for ln in out.splitlines() if ln.startswith("line")] == [f"line {i}" for i in range(40)]
    assert proj.cli("metrics", rid, "--json", check=True).json()["i"] == list(range(40))


def test_a_cut_link_while_uploading_resumes_the_upload(tmp_path: Path, home: Path) -> None:
    import hashlib
    import subprocess
    import sys
    import time

    proj = Project(tmp_path / "proj", {"lab": target(command_timeout_s=2, connect_timeout_s=2,
                                                     work_dir=str(tmp_path / "remote"))})
    blob = os.urandom(16 << 20)
    (proj.src / "weights.bin").write_bytes(blob)
    job = proj.script_job("import os\nprint('size', os.path.getsize('weights.bin'))\n", compute_target="lab")
    cache = tmp_path / "remote" / ".objects"
    digest = hashlib.sha256(blob).hexdigest()
    part = cache / digest[:2] / f".part.{digest[2:]}"
    # The upload is slowed to ~5 MB/s on our own veth, so the cut surely lands in the middle of it.
    subprocess.run(["tc", "qdisc", "add", "dev", "rctl-h", "root", "tbf", "rate", "40mbit", "burst", "64kb",
                    "latency", "400ms"], check=True)
    try:
        p = subprocess.Popen([sys.executable, "-m", "runctl", "submit", str(job), "--wait", "-q"], cwd=proj.root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size > (1 << 20)) and time.monotonic() < wait_until:
            time.sleep(0.01)
        arrived = part.stat().st_size
        cut_link(6.0)  # longer than command_timeout_s: the SFTP channel gives up, runctl reconnects
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", "rctl-h", "root"], check=False)
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err
    assert "retrying" in err, err
    rid = out.strip()
    assert f"size {len(blob)}" in proj.cli("logs", rid, check=True).out
    assert hashlib.sha256((cache / digest[:2] / digest[2:]).read_bytes()).hexdigest() == digest
    assert 0 < arrived < len(blob), "the cut came mid-upload"


def test_submit_killed_at_random_instants_leaves_no_untracked_run(tmp_path: Path, home: Path) -> None:
    """The crash hand-over on an SSH host: every run ends true (ran with its logs and
    metrics, or recorded as never run), and nothing of it runs afterwards."""
    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(tmp_path / "remote"))})
    kill_submits_at_random(proj, proj.script_job(ALIVE_JOB, compute_target="lab"), kills=12, seed=5)
    marker = str(tmp_path / "remote").encode()
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and _environ_has(pid, marker)]
    assert left == [], "no process of these runs is left on the host"


def _environ_has(pid: str, marker: bytes) -> bool:
    try:
        return any(v.startswith(b"RUNCTL_RUN_DIR=") and marker in v
                   for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return False


def _edit_handle(home: Path, rid: str, **changes: Any) -> None:
    from runctl.store.sqlite import Store

    store = Store(home)
    handle = store.get(rid).handle or {}
    extra = {**handle.get("extra", {}), **changes.pop("extra", {})}
    store.update(rid, handle={**handle, **changes, "extra": extra})
    store.close()


def test_an_unreachable_host_leaves_its_runs_as_they_were_with_a_warning(tmp_path: Path, home: Path) -> None:
    """Two hosts; one stops answering: `runctl list` warns about it and refreshes the runs of
    the other; the silent host's run keeps its last state (never Failed by guesswork), and
    with the link back it is followed to its true end."""
    from .conftest import wait_for

    lost = "10.231.0.99"  # nothing answers there
    proj = Project(tmp_path / "proj", {"lab": target(hosts=[HOST, lost], connect_timeout_s=1,
                                                     work_dir=str(tmp_path / "remote"))})
    quick = proj.script_job("print('quick')\n", compute_target="lab")
    slow = proj.script_job("import time\nprint('slow', flush=True)\ntime.sleep(3)\n", name="slow.yaml",
                           compute_target="lab")
    ran = proj.cli("submit", str(quick), "-q", check=True).out.strip()
    away = proj.cli("submit", str(slow), "-q", check=True).out.strip()
    wait_for(lambda: proj.cli("status", away).out.strip() == "Running", what="the slow run to start")
    _edit_handle(home, away, host=lost)  # as if it had been placed on the host that is now silent
    r = proj.cli("list", "--json")
    assert r.rc == 0, r.err
    assert f"{lost}: connecting" in r.err and "status not refreshed" in r.err, r.err
    states = {run["id"]: run["status"] for run in r.json()}
    assert states == {ran: "Completed", away: "Running"}, states
    time.sleep(4)  # the slow job has ended on the host meanwhile: still nothing is guessed
    again = proj.cli("list", "--json")
    assert {run["id"]: run["status"] for run in again.json()}[away] == "Running"
    assert f"{lost}: did not answer" in again.err and "compute check` asks now" in again.err, \
        "a host that failed moments ago is reported at once, not asked again"
    checked = proj.cli("compute", "check", "lab")
    assert checked.rc == 4 and f"{lost}: NOT usable: {lost}: connecting" in checked.err, "the check asks for real"
    _edit_handle(home, away, host=HOST)  # the host answers again
    assert proj.cli("wait", away, "--timeout", "60").rc == 0
    assert "slow" in proj.cli("logs", away, check=True).out


def test_a_host_that_rebooted_under_a_run_marks_it_failed_with_that_reason(tmp_path: Path, home: Path) -> None:
    """The handle remembers the host's boot id at launch; a different one now means the host
    rebooted, and whatever status.json says, the run did not survive it."""
    from .conftest import wait_for

    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(tmp_path / "remote"), keep_run_dirs="all")})
    job = proj.script_job("import time\nprint('up', flush=True)\ntime.sleep(8)\n", compute_target="lab")
    rid = proj.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: proj.cli("status", rid).out.strip() == "Running", what="the run to start")
    _edit_handle(home, rid, extra={"boot_id": "00000000-0000-4000-8000-000000000000"})
    assert proj.cli("wait", rid, "--timeout", "60").rc != 0
    shown = proj.cli("show", rid, "--json", check=True).json()
    assert shown["status"] == "Failed" and "rebooted" in shown["error"]["message"], shown
    status = tmp_path / "remote" / rid / "status.json"
    wait_for(lambda: json.loads(status.read_text()).get("state") == "finished", what="the job to end on the host")
