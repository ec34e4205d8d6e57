"""The launcher's inputs and outputs, as files: spec.json (golden), status.json, the job environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runctl.backends.base import LaunchSpec
from runctl.backends.localfs import LocalTransport
from runctl.ops import staging
from runctl.store.snapshot import ObjectStore, list_source, take_snapshot
from runctl.store.sqlite import Store

from .conftest import wait_for

GOLDEN_SPEC = {
    "run_id": "exp_1_abcd",
    "experiment": "exp",
    "argv": ["/usr/bin/python3", "my script's.py", "--name", 'say "hi"; rm -rf $HOME'],
    "env": {"A": "1 2", "QUOTE": "it's"},
    "cwd": "code",
    "timeout_s": 5,
    "grace_s": 1.5,
    "system_metrics_interval_s": 10.0,
}


def make_run_dir(tmp_path: Path, code: str) -> Path:
    src = tmp_path / "src with space"
    src.mkdir(parents=True)
    (src / "my script's.py").write_text(code)
    store = Store(tmp_path / "store")
    objects = ObjectStore(store.dir)
    sid = take_snapshot(list_source(src), objects, store.stat_cache_get, store.stat_cache_put)
    spec = LaunchSpec(run_id="exp_1_abcd", experiment="exp", argv=GOLDEN_SPEC["argv"], env=GOLDEN_SPEC["env"],
                      timeout_s=5, grace_s=1.5, snapshot_id=sid)
    run_dir = tmp_path / "run 'dir' \"quoted\""
    staging.stage(objects, LocalTransport(tmp_path / "store" / "objects"), str(run_dir),
                  staging.plan(objects, sid, spec.launcher_spec()))
    return run_dir


def test_spec_json_golden(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, "print(1)\n")
    assert json.loads((run_dir / ".runctl" / "spec.json").read_text()) == GOLDEN_SPEC
    shipped = sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / ".runctl").rglob("*.py"))
    assert ".runctl/launcher.py" in shipped and ".runctl/lib/sitecustomize.py" in shipped
    assert ".runctl/lib/runctl_job/context/run.py" in shipped and ".runctl/shim/azureml/core/__init__.py" in shipped


def test_launcher_runs_job_in_weird_paths_with_verbatim_argv(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, "import os, sys\nprint(sys.argv[1:], os.environ['QUOTE'], os.getcwd())\n")
    spec = json.loads((run_dir / ".runctl" / "spec.json").read_text())
    spec["argv"][0] = sys.executable
    (run_dir / ".runctl" / "spec.json").write_text(json.dumps(spec))
    rc = subprocess.run([sys.executable, str(run_dir / ".runctl" / "launcher.py"), str(run_dir)]).returncode
    assert rc == 0
    log = (run_dir / "logs" / "std_log.txt").read_text()
    assert log == f"['--name', 'say \"hi\"; rm -rf $HOME'] it's {run_dir / 'code'}\n"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["reason"] == "exit" and status["exit_code"] == 0
    assert not list(run_dir.glob("status.json.tmp*"))


def test_launcher_records_a_missing_interpreter(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, "print(1)\n")
    spec = json.loads((run_dir / ".runctl" / "spec.json").read_text())
    spec["argv"][0] = "/nonexistent/python"
    (run_dir / ".runctl" / "spec.json").write_text(json.dumps(spec))
    assert subprocess.run([sys.executable, str(run_dir / ".runctl" / "launcher.py"), str(run_dir)]).returncode == 127
    status = json.loads((run_dir / "status.json").read_text())
    assert status["reason"] == "start_failed" and "nonexistent" in status["error"]
    assert "cannot start" in (run_dir / "logs" / "std_log.txt").read_text()


def _pythons() -> list[str]:
    """Interpreters on this machine (pyenv's, Debian's) to check the job side against: >= 3.8."""
    import glob

    found = []
    for exe in sorted(glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.*" / "bin" / "python3"))) + ["/usr/bin/python3"]:
        p = subprocess.run([exe, "-c", "import sys; print(sys.version_info >= (3, 8))"], capture_output=True, text=True) \
            if Path(exe).exists() else None
        if p is not None and p.stdout.strip() == "True":
            found.append(exe)
    return found


def test_job_side_runs_on_every_python_here(tmp_path: Path) -> None:
    pythons = _pythons()
    assert pythons
    if (Path.home() / ".pyenv" / "versions").is_dir():
        assert any("/3.8." in p for p in pythons), "pyenv has 3.8 here: the oldest supported Python must be checked"
    code = ("import sys\nfrom azureml.core import Run\nrun = Run.get_context()\nrun.log('v', sys.version_info[1])\n"
            "run.log_row('r', a=1)\nc = run.child_run('c')\nc.log('x', 1)\nc.complete()\nprint('ok', run.id)\n")
    for i, python in enumerate(pythons):
        run_dir = make_run_dir(tmp_path / str(i), code)
        spec = json.loads((run_dir / ".runctl" / "spec.json").read_text())
        spec["argv"] = [python, "my script's.py"]
        (run_dir / ".runctl" / "spec.json").write_text(json.dumps(spec))
        rc = subprocess.run([python, str(run_dir / ".runctl" / "launcher.py"), str(run_dir)]).returncode
        log = (run_dir / "logs" / "std_log.txt").read_text()
        assert rc == 0 and "ok exp_1_abcd" in log, (python, log)
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        record = [e for e in events if e["n"] == "runctl.environment"]  # (the launcher's environment record)
        assert len(record) == 1 and json.loads(record[0]["v"])["python"]["executable"], python
        assert [e["k"] for e in events if e not in record] == ["scalar", "row", "run", "scalar", "status"], python
        assert json.loads((run_dir / "status.json").read_text())["exit_code"] == 0


def test_process_liveness_with_and_without_proc(tmp_path: Path) -> None:
    import os

    from runctl.job.launcher import proc_start_ticks, process_alive

    me = os.getpid()
    assert process_alive(me, proc_start_ticks(me))
    assert not process_alive(me, (proc_start_ticks(me) or 0) + 1), "a reused pid is not the same process"
    assert process_alive(me, None), "no /proc (macOS): existence only"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not process_alive(dead.pid, None)


def test_the_ssh_agent_runs_on_every_python_here(tmp_path: Path) -> None:
    """runctl's remote agent (with safefs and the launcher beside it) on each Python >= 3.8
    found here: what an SSH host with an old Python runs."""
    import hashlib

    from runctl.backends import ssh
    from runctl.backends.sshlink import AGENT_BOOTSTRAP, AGENT_LOADER

    agent = tmp_path / "agent"
    for dest, data in ssh.agent_files():
        (agent / dest).parent.mkdir(parents=True, exist_ok=True)
        (agent / dest).write_bytes(data)
    digests = json.dumps({dest: hashlib.sha256(data).hexdigest() for dest, data in ssh.agent_files()})
    run_dir = make_run_dir(tmp_path / "run", "print('from the job')\n")
    spec = json.loads((run_dir / ".runctl" / "spec.json").read_text())
    spec["argv"][0] = sys.executable
    (run_dir / ".runctl" / "spec.json").write_text(json.dumps(spec))
    assert subprocess.run([sys.executable, str(run_dir / ".runctl" / "launcher.py"), str(run_dir)]).returncode == 0
    import base64

    blob = b"X = 1\n"
    digest = hashlib.sha256(blob).hexdigest()
    cache, work = tmp_path / "w" / ".objects", tmp_path / "w"
    for n, python in enumerate(_pythons()):
        fresh = make_run_dir(tmp_path / f"fresh{n}", "print('launched')\n")
        fresh_spec = json.loads((fresh / ".runctl" / "spec.json").read_text())
        fresh_spec["argv"][0] = python
        (fresh / ".runctl" / "spec.json").write_text(json.dumps(fresh_spec))
        requests = [{"op": "info", "work_dir": str(work)}, {"op": "status", "runs": [str(run_dir)]},
                    {"op": "list", "run_dir": str(run_dir), "reldir": "logs"},
                    {"op": "read", "run_dir": str(run_dir), "path": "logs/std_log.txt", "offset": 0, "max": 100},
                    {"op": "put", "cache": str(cache), "objects": [[digest, base64.b64encode(blob).decode()]]},
                    {"op": "missing", "cache": str(cache), "digests": [digest, "0" * 64]},
                    {"op": "materialize", "cache": str(cache), "run_dir": str(tmp_path / f"m{n}"), "work_dir": str(work),
                     "spare": True, "files": [["code/x.py", digest, 0o644]], "links": [["code/y.py", "x.py"]],
                     "inline": [["note", base64.b64encode(b"hi").decode()]]},
                    {"op": "launch", "run_dir": str(fresh), "variables": {"SECRET": "s"}}]
        p = subprocess.run([python, "-S", "-E", "-c", AGENT_LOADER, AGENT_BOOTSTRAP, str(agent), digests], capture_output=True,
                           text=True, input="".join(json.dumps(r) + "\n" for r in requests), timeout=60)
        hello, *answers = [json.loads(line) for line in p.stdout.splitlines()]
        assert p.returncode == 0 and hello == {"ready": True} and len(answers) == len(requests), (python, p.stderr)
        assert not any("error" in a for a in answers), (python, answers)
        assert answers[1]["runs"][str(run_dir)]["status"]["exit_code"] == 0
        assert answers[2]["entries"] == [["logs/std_log.txt", len("from the job\n"), "file"]]
        assert base64.b64decode(answers[3]["data"]) == b"from the job\n", python
        assert answers[5]["missing"] == ["0" * 64], "a packed object counts as present"
        made = tmp_path / f"m{n}"
        assert (made / "code" / "x.py").read_bytes() == blob and os.readlink(made / "code" / "y.py") == "x.py"
        assert (made / "note").read_text() == "hi"
        assert answers[7]["pid"] > 0
        wait_for(lambda f=fresh: json.loads((f / "status.json").read_text()).get("state") == "finished",
                 what=f"the launched job on {python}")
        assert "launched" in (fresh / "logs" / "std_log.txt").read_text()
