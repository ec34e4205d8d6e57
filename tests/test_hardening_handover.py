"""Crash hand-over: no job runs without a run record saying so, whatever is killed when.

`runctl submit` SIGKILLed at random instants of its whole path, the launcher SIGKILLed
under a running job, a job that escapes its process group with setsid(): every run ends
in its true state with its logs and metrics, and no process of it is left.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runctl.store.layout import services

from .conftest import Project, stage_run_dir, wait_for

JOB = """
import os, time
from azureml.core import Run
run = Run.get_context()
open(os.path.join({marks!r}, run.id), "w").close()
run.log("alive", 1)
print("job ran", flush=True)
time.sleep(0.3)
"""


def run_pids(run_dir_part: str) -> list[int]:
    """Processes whose environment names a run directory containing ``run_dir_part``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            env = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if any(v.startswith(b"RUNCTL_RUN_DIR=") and run_dir_part.encode() in v for v in env.split(b"\0")):
            found.append(int(name))
    return found


@pytest.mark.slow
def test_submit_killed_at_random_instants_leaves_no_untracked_job(project: Project, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    job = project.script_job(JOB.format(marks=str(marks)))
    took = []
    for _ in range(3):
        t0 = time.monotonic()
        project.cli("submit", str(job), "-q", check=True)
        took.append(time.monotonic() - t0)
    whole = sorted(took)[1]  # an unkilled submit: kill instants are drawn across it
    rng = random.Random(7)
    kills = 36
    for i in range(kills):
        p = project.popen("submit", str(job), "-q")
        # a third across the whole path (start-up included), the rest across its second half,
        # where the run record, the run directory and the launcher are made
        time.sleep(rng.uniform(0, whole * 1.1) if i % 3 == 0 else rng.uniform(whole * 0.5, whole * 1.05))
        p.send_signal(signal.SIGKILL)
        p.communicate()
    runs = project.cli("list", "--json", "--limit", "0", check=True).json()
    ids = {r["id"] for r in runs}
    for r in runs:
        project.cli("wait", r["id"], "--timeout", "60")
    time.sleep(1.0)  # a launcher still on its way would have started the job by now
    ran = {p.name for p in marks.iterdir()}
    assert ran <= ids, f"jobs ran without a run record: {ran - ids}"
    final = {r["id"]: r for r in project.cli("list", "--json", "--limit", "0", check=True).json()}
    outcomes = {"ran": 0, "never": 0}
    for rid, r in final.items():
        if rid in ran:
            assert r["status"] == "Completed", r
            assert project.cli("metrics", rid, "--json", check=True).json() == {"alive": 1}
            assert "job ran" in project.cli("logs", rid, check=True).out
            outcomes["ran"] += 1
        else:
            assert r["status"] == "Failed" and "never ran" in r["error"], r
            outcomes["never"] += 1
    assert outcomes["ran"] > 3, outcomes  # the narrow never-started window is made on purpose below
    assert run_pids(str(Path(os.environ["RUNCTL_HOME"]))) == []
    # A second look changes nothing, and --unique does not start a second copy of an adopted run.
    assert {r["id"]: r["status"] for r in project.cli("list", "--json", "--limit", "0").json()} == \
        {rid: r["status"] for rid, r in final.items()}


def test_a_run_adopted_after_its_submitter_died_is_followed_cancelled_and_unique(project: Project, tmp_path: Path) -> None:
    """Killed after the launcher started but before the handle was recorded (reproduced by
    clearing the native id): the next look adopts the running job; cancel stops it;
    --unique does not start a second copy while it runs."""
    job = project.script_job("""
        import time
        from azureml.core import Run
        run = Run.get_context()
        for i in range(600):
            run.log("i", i)
            print("tick", i, flush=True)
            time.sleep(0.1)
        """)
    rid = project.cli("submit", str(job), "-q", "--unique", "k", check=True).out.strip()
    from runctl.store.sqlite import Store

    store = Store(Path(os.environ["RUNCTL_HOME"]))
    handle = store.get(rid).handle
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    spec = store.get(rid).spec
    spec["submitter"] = {"pid": int(dead.stdout), "start_ticks": 1, "host": spec["submitter"]["host"]}
    store.update(rid, handle={**handle, "native_id": ""}, status="Preparing", spec=spec)
    store.close()
    wait_for(lambda: project.cli("status", rid).out.strip() == "Running", what="the run to be adopted")
    again = project.cli("submit", str(job), "-q", "--unique", "k", check=True).out.strip()
    assert again == rid
    wait_for(lambda: "tick 3" in project.cli("logs", rid).out, what="logs of the adopted run")
    assert project.cli("cancel", rid).rc == 0
    assert project.cli("wait", rid, "--timeout", "60").rc == 130
    assert project.cli("metrics", rid, "--json").json()["i"][:3] == [0, 1, 2]
    assert run_pids(rid) == []


ESCAPER = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print("escaped", child.pid, flush=True)
time.sleep(600)
"""


def _launcher_pid(project: Project, rid: str) -> int:
    home = Path(os.environ["RUNCTL_HOME"])
    status = json.loads((home / "work" / rid / "status.json").read_text())
    return int(status["launcher_pid"])


def test_killed_launcher_leaves_no_process_behind(project: Project) -> None:
    job = project.script_job(ESCAPER)
    rid = project.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: "escaped" in project.cli("logs", rid).out, what="the job to start its escaper")
    assert len(run_pids(rid)) == 2
    os.kill(_launcher_pid(project, rid), signal.SIGKILL)
    assert project.cli("wait", rid, "--timeout", "60").rc != 0
    assert "launcher exited" in project.cli("status", rid, "--json").json()["error"]
    wait_for(lambda: run_pids(rid) == [], timeout_s=10, what="the job and its setsid() child to be stopped")


def test_cancel_stops_a_process_that_called_setsid(project: Project) -> None:
    job = project.script_job(ESCAPER)
    rid = project.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: "escaped" in project.cli("logs", rid).out, what="the job to start its escaper")
    assert project.cli("cancel", rid).rc == 0
    assert project.cli("wait", rid, "--timeout", "60").rc == 130
    wait_for(lambda: run_pids(rid) == [], timeout_s=10, what="every process of the run to be stopped")


def test_cancel_of_a_finished_run_stops_what_still_runs(project: Project) -> None:
    """The record says Failed (its launcher died and nobody has looked since), yet a process
    of the run lives on: cancel stops it whatever the recorded state."""
    job = project.script_job(ESCAPER)
    rid = project.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: "escaped" in project.cli("logs", rid).out, what="the job to start its escaper")
    os.kill(_launcher_pid(project, rid), signal.SIGKILL)
    from runctl.store.sqlite import Store

    store = Store(Path(os.environ["RUNCTL_HOME"]))
    store.update(rid, status="Failed", error="launcher died", synced=True)  # recorded, not released
    store.close()
    assert run_pids(rid)
    assert project.cli("cancel", rid).rc == 0
    wait_for(lambda: run_pids(rid) == [], timeout_s=10, what="the leftover process to be stopped")


@pytest.mark.parametrize("made", ["nothing", "run dir", "launcher on its way"])
def test_a_pending_run_whose_submitter_died_never_starts(tmp_path: Path, home: Path, made: str) -> None:
    """The instants between recording the plan and the launcher's first status, made on
    purpose (random kills hit them rarely): the run is recorded as never started, and a
    launcher that still comes up refuses to start the job."""
    from runctl.backends.base import LaunchSpec
    from runctl.backends.local import LocalBackend
    from runctl.store.snapshot import ObjectStore, list_source, take_snapshot
    from runctl.store.sqlite import Store

    src = tmp_path / "src"
    src.mkdir()
    (src / "t.py").write_text("print('job ran')\n")
    store = Store(home)
    sid = take_snapshot(list_source(src), ObjectStore(home), store.stat_cache_get, store.stat_cache_put)
    backend = LocalBackend("local", {}, services(home, "local"))
    spec = LaunchSpec(run_id=f"exp_1_{made.replace(' ', '')}", experiment="exp", argv=[sys.executable, "t.py"], env={},
                      timeout_s=60, grace_s=1, snapshot_id=sid)
    handle = backend.plan(spec)
    assert handle.pending
    run_dir = Path(handle.run_dir)
    if made != "nothing":
        stage_run_dir(backend, spec, home)
    late = None
    if made == "launcher on its way":  # it has the lock: the run is adopted, never abandoned
        late = subprocess.Popen([sys.executable, str(run_dir / ".runctl" / "launcher.py"), str(run_dir)])
        wait_for(lambda: (run_dir / "status.json").exists(), what="the late launcher to start")
        late.wait(timeout=60)
        assert backend.status(handle).status.value == "Completed"
        return
    state = backend.status(handle)
    assert state.status.value == "Failed" and "never ran" in (state.error or "")
    if made == "run dir":
        r = subprocess.run([sys.executable, str(run_dir / ".runctl" / "launcher.py"), str(run_dir)],
                           capture_output=True, text=True)
        assert r.returncode == 0 and "not starting the job again" in r.stderr
        assert not (run_dir / "logs" / "std_log.txt").exists()
    store.close()
