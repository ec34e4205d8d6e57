"""Hardening against jobs on shared SSH hosts (the real sshd of tests/infra/up-ssh.sh): what a
job can change on its host never runs on runctl's side, and what it leaves is private."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from .conftest import Project
from .test_ssh_backend import _no_strays, _sshd, target  # noqa: F401  (the module's fixtures)


def test_a_job_that_rewrites_runctls_agent_never_gets_its_code_run(tmp_path: Path, home: Path) -> None:
    """The job rewrites every file of runctl's agent in work_dir (same user): the next command
    notices, reinstalls runctl's own copy and runs only that; the planted code never runs."""
    work = tmp_path / "remote"
    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(work))})
    marker = tmp_path / "planted-code-ran"
    planted = (f"import os\nopen({str(marker)!r}, 'w').write('ran')\n"
               "import sys, json\nsys.stdout.write(json.dumps({'ready': True}) + '\\n')\nsys.stdout.flush()\n"
               "for line in sys.stdin:\n"
               "    sys.stdout.write(json.dumps({'entries': [['outputs/../../../../escaped', 5, 'file']]}) + '\\n')\n"
               "    sys.stdout.flush()\n")
    job = proj.script_job(f"""
        import glob, os
        for d in glob.glob(os.path.join({str(work)!r}, ".runctl-agent", "*")):
            for name in ("runctl_job/agent.py", "runctl_job/launcher.py", "runctl_job/safefs.py", "runctl_job/protocol.py"):
                with open(os.path.join(d, name), "w") as f:
                    f.write({planted!r})
        print("rewritten", flush=True)
        """, compute_target="lab")
    rid = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    assert "rewritten" in proj.cli("logs", rid, check=True).out
    plain = proj.script_job("print('plain')\n", compute_target="lab", name="plain.yaml")
    again = proj.cli("submit", str(plain), "--wait", "-q")  # the next command starts an agent again
    assert again.rc == 0, again.err
    for cmd in (("status", rid), ("list",), ("show", again.out.strip())):
        assert proj.cli(*cmd).rc == 0
    assert not marker.exists(), "the planted agent code never ran"
    assert not (tmp_path / "escaped").exists()
    from runctl.backends import sshlink

    installed = list((work / ".runctl-agent").iterdir())
    assert len(installed) == 1
    assert (installed[0] / "runctl_job" / "agent.py").read_bytes() == dict(sshlink.agent_files())["runctl_job/agent.py"]


def test_run_directories_on_a_shared_host_are_private(tmp_path: Path, home: Path) -> None:
    """Other users of the host cannot read a run's logs, events or spec (they may hold secrets)."""
    work = tmp_path / "remote"
    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(work), keep_run_dirs="all")})
    job = proj.script_job("""
        from azureml.core import Run
        Run.get_context().log("x", 1)
        print("secret-ish output", flush=True)
        """, compute_target="lab")
    old = os.umask(0o022)
    try:
        rid = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    finally:
        os.umask(old)
    run_dir = work / rid
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    for rel in ("logs/std_log.txt", "events.jsonl", ".runctl/spec.json", "status.json"):
        mode = stat.S_IMODE((run_dir / rel).stat().st_mode)
        assert mode & 0o077 == 0, f"{rel} is {oct(mode)}"
    for d in (work, work / ".objects"):
        assert stat.S_IMODE(d.stat().st_mode) & 0o077 == 0, d


def test_a_lost_answer_to_launch_leaves_the_run_pending_and_a_retry_adopts_it(tmp_path: Path, home: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The link stops right after the agent started the launcher (the answer is lost): the run
    is not closed as "failed to start" while its job runs; the next command adopts it, and a
    retry with the same --unique key gets that run instead of starting a second copy."""
    from runctl.backends import sshlink
    from runctl.config.jobconfig import load_job
    from runctl.errors import BackendUnreachable
    from runctl.ops.session import Session
    from runctl.ops.submit import submit

    marks = tmp_path / "marks"
    marks.mkdir()
    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(tmp_path / "remote"))})
    job = proj.script_job(f"""
        import os, time
        open(os.path.join({str(marks)!r}, str(os.getpid())), "w").close()
        print("job ran", flush=True)
        time.sleep(2)
        """, compute_target="lab")
    real_agent = sshlink.HostLink.agent

    def answer_lost(self: Any, request: dict[str, Any]) -> dict[str, Any]:
        answer = real_agent(self, request)
        if request["op"] == "launch":
            self.close()
            raise BackendUnreachable(f"{self.alias}: asking runctl's agent (launch): the link dropped")
        return answer  # type: ignore[no-any-return]

    with monkeypatch.context() as m, Session(start=proj.root) as s, pytest.raises(BackendUnreachable) as lost:
        m.setattr(sshlink.HostLink, "agent", answer_lost)
        submit(s, load_job(job, s.ws), unique_key="nightly")
    assert "may have started" in str(lost.value) and "runctl status" in str(lost.value)
    runs = proj.cli("list", "--json", check=True).json()
    assert len(runs) == 1 and runs[0]["status"] in ("Starting", "Running"), runs
    rid = runs[0]["id"]
    retry = proj.cli("submit", str(job), "-q", "--unique", "nightly")
    assert retry.rc == 0 and retry.out.strip() == rid, (retry.out, retry.err)
    assert proj.cli("wait", rid, "--timeout", "60").rc == 0
    assert "job ran" in proj.cli("logs", rid, check=True).out
    assert len(list(marks.iterdir())) == 1, "one copy of the job ran"


def test_a_job_that_poisons_the_hosts_ready_copy_and_cache_cannot_change_the_next_run(tmp_path: Path,
                                                                                        home: Path) -> None:
    """Same-user limits: a job rewrites the host's ready copy of the code (.spare/ready-*) and
    the object cache; the next run of the same code runs runctl's code, not the job's."""
    import time

    work = tmp_path / "remote"
    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(work))})
    job = proj.script_job(f"""
        import glob, os, time
        print("genuine run", flush=True)
        if os.environ.get("POISON"):
            work = {str(work)!r}
            deadline = time.time() + 30
            while not glob.glob(os.path.join(work, ".spare", "ready-*")) and time.time() < deadline:
                time.sleep(0.1)
            hit = 0
            for root, _dirs, files in os.walk(work):
                for name in files:
                    path = os.path.join(root, name)
                    try:
                        data = open(path, "rb").read()
                    except OSError:
                        continue
                    if b"genuine run" in data and ("/.spare/" in path or "/.objects/" in path):
                        open(path, "wb").write(data.replace(b'print("genuine run"', b'print("POISONED"'))
                        hit += 1
            print("poisoned", hit, flush=True)
        """, compute_target="lab")
    first = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    assert "genuine run" in proj.cli("logs", first, check=True).out
    (proj.root / "job.yaml").write_text((proj.root / "job.yaml").read_text() +
                                       "environment:\n  environment_variables:\n    POISON: '1'\n")
    poisoner = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    said = proj.cli("logs", poisoner, check=True).out
    assert "poisoned" in said and "poisoned 0" not in said, said
    time.sleep(0.5)
    for _ in range(2):
        after = proj.cli("submit", str(job), "--wait", "-q")
        assert after.rc == 0, after.err
        out = proj.cli("logs", after.out.strip(), check=True).out
        assert "genuine run" in out and "POISONED" not in out, out


def test_a_wrong_python_is_bad_input_at_once_and_makes_no_run(tmp_path: Path, home: Path) -> None:
    proj = Project(tmp_path / "proj", {"lab": target(python="/no/such/python3", work_dir=str(tmp_path / "remote"))})
    r = proj.cli("submit", str(proj.script_job("print(1)\n", compute_target="lab")), timeout=60)
    assert r.rc == 2 and "/no/such/python3" in r.err and "set the target's python" in r.err, r.err
    assert "Traceback" not in r.err
    assert proj.cli("list", "--json", check=True).json() == []


def test_trust_refuses_a_key_of_a_new_type_when_another_type_is_known(tmp_path: Path, home: Path) -> None:
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(tmp_path / "other")], check=True)
    kind, blob = (tmp_path / "other.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[10.231.0.2]:2222 {kind} {blob}\n")
    proj = Project(tmp_path / "proj", {"lab": target(known_hosts=str(known))})
    r = proj.cli("compute", "trust", "lab")
    assert r.rc == 2 and "CHANGED" in r.err and "[10.231.0.2]:2222" in r.err, r.err
    assert known.read_text().count("\n") == 1, "nothing added"


def test_from_runctl_import_run_works_in_an_ssh_job(tmp_path: Path, home: Path) -> None:
    """The host's Python has no runctl installed: the job-side stand-in gives Run."""
    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(tmp_path / "remote"))})
    job = proj.script_job("""
        from runctl import Run
        run = Run.get_context()
        run.log("acc", 0.5)
        print("id", run.id, flush=True)
        """, compute_target="lab")
    r = proj.cli("submit", str(job), "--wait", "-q")
    assert r.rc == 0, (r.err, proj.cli("logs", r.out.strip()).out)
    assert proj.cli("metrics", r.out.strip(), "--json", check=True).json() == {"acc": 0.5}


def test_a_status_json_of_the_wrong_types_and_a_deep_tree_on_an_ssh_host(tmp_path: Path, home: Path) -> None:
    """What the local tests check (tests/test_hardening_answers.py), through runctl's agent."""
    import json

    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(tmp_path / "remote"))})
    deep = proj.script_job("""
        import os
        fd = os.open("outputs", os.O_RDONLY)
        for i in range(3000):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        open("outputs/shallow.txt", "w").write("kept")
        """, name="deep.yaml", compute_target="lab")
    r = proj.cli("submit", str(deep), "--wait", "-q")
    assert r.rc == 0, r.err
    skipped = json.loads(proj.cli("show", r.out.strip(), "--json", check=True).json()["properties"]["runctl.skipped_files"])
    assert any("too deep" in s for s in skipped), skipped
    bad = proj.script_job("""
        import json, os, signal
        rd = os.environ["RUNCTL_RUN_DIR"]
        st = json.load(open(os.path.join(rd, "status.json")))
        launcher = st["launcher_pid"]
        st.update(state="finished", reason="exit", exit_code={"not": "a code"}, start_time="yesterday",
                  end_time=10 ** 30, host=["x"])
        with open(os.path.join(rd, "status.tmp"), "w") as f:
            json.dump(st, f)
        os.replace(os.path.join(rd, "status.tmp"), os.path.join(rd, "status.json"))
        os.kill(launcher, signal.SIGKILL)
        """, name="bad.yaml", compute_target="lab")
    rid = proj.cli("submit", str(bad), "-q", check=True).out.strip()
    assert proj.cli("wait", rid, "--timeout", "60").rc != 0
    for cmd in (("status", rid), ("list",), ("show", rid)):
        assert proj.cli(*cmd).rc == 0
    assert "exit_code" in proj.cli("show", rid, "--json", check=True).json()["properties"]["runctl.status_warning"]
    for child in (tmp_path / "remote").iterdir():  # (pytest's own clean-up recurses: no deep tree left)
        from runctl.job import safefs

        safefs.remove_tree(str(child))
