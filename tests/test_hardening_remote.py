"""Hardening against jobs on shared SSH hosts (the real sshd of tests/infra/up-ssh.sh): what a
job can change on its host never runs on runctl's side, and what it leaves is private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
            for name in ("remote_agent.py", "launcher.py", "safefs.py", "lib/runctl_protocol.py"):
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
    assert (installed[0] / "remote_agent.py").read_bytes() == (sshlink.RUNCTL_PKG / "remote_agent.py").read_bytes()


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
