"""GPU-aware placement on SSH hosts, against a stand-in nvidia-smi on the test host that
reports a configurable set of GPUs and processes (tests/fake_nvidia_smi.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Project, poll_children
from .test_ssh_backend import _sshd, target  # noqa: F401  (_sshd: the same service check)

HERE = Path(__file__).parent


@pytest.fixture
def gpus(tmp_path: Path) -> Any:
    d = tmp_path / "fake-gpu"
    d.mkdir()
    shutil.copy(HERE / "fake_nvidia_smi.py", d / "nvidia-smi")
    os.chmod(d / "nvidia-smi", 0o755)

    def set_state(n: int, apps: list[int] = (), used: dict[int, int] | None = None) -> Path:
        state = {"gpus": [{"index": i, "uuid": f"GPU-{i:04d}", "name": "Fake H100", "used": (used or {}).get(i, 0)}
                          for i in range(n)],
                 "apps": [{"uuid": f"GPU-{i:04d}", "pid": 4242} for i in apps]}
        (d / "gpus.json").write_text(json.dumps(state))
        return d / "nvidia-smi"

    return set_state


def gpu_proj(tmp_path: Path, smi: Path, **more: Any) -> Project:
    return Project(tmp_path / "proj", {"lab": target(nvidia_smi=str(smi), gpus_per_run=1, work_dir=str(tmp_path / "w"),
                                                     **more)})


JOB = "import os, time\nprint('cvd', os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True)\ntime.sleep(float(os.environ.get('HOLD', '0')))\n"


def devices(proj: Project, rid: str) -> str:
    return next(ln.split()[1] for ln in proj.cli("logs", rid, check=True).out.splitlines() if ln.startswith("cvd"))


def test_concurrent_submits_get_disjoint_gpus_and_a_full_host_fails_at_once(tmp_path: Path, home: Path, gpus: Any) -> None:
    proj = gpu_proj(tmp_path, gpus(2))
    job = proj.script_job(JOB, compute_target="lab", environment={"environment_variables": {"HOLD": "4"}})
    procs = [subprocess.Popen([sys.executable, "-m", "runctl", "submit", str(job), "-q"], cwd=proj.root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    ids = [out.strip() for out, _ in outs]
    assert all(p.returncode == 0 for p in procs) and len(set(ids)) == 2, [err for _, err in outs]
    r = proj.cli("submit", str(job))
    assert r.rc == 3 and "no host has 1 free GPU(s)" in r.err and "0 of 2 free" in r.err, r.err
    for rid in ids:
        assert proj.cli("wait", rid, "--timeout", "120").rc == 0
    assert sorted(devices(proj, rid) for rid in ids) == ["0", "1"]
    again = proj.cli("submit", str(job), "-q", "--wait", "--set", "environment.environment_variables.HOLD=0")
    assert again.rc == 0, "the GPUs are free again once the runs ended"


def test_a_gpu_used_by_a_foreign_process_or_its_memory_is_skipped(tmp_path: Path, home: Path, gpus: Any) -> None:
    proj = gpu_proj(tmp_path, gpus(3, apps=[0], used={1: 30000}))
    job = proj.script_job(JOB, compute_target="lab")
    rid = proj.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    assert devices(proj, rid) == "2"
    r = proj.cli("compute", "check", "lab", check=True)
    assert "0: Fake H100, 0/81559 MiB, busy" in r.out and "1: Fake H100, 30000/81559 MiB, busy" in r.out
    assert "2: Fake H100, 0/81559 MiB, free" in r.out


def test_all_busy_waits_queued_then_runs_when_one_frees(tmp_path: Path, home: Path, gpus: Any) -> None:
    smi = gpus(1, apps=[0])
    proj = gpu_proj(tmp_path, smi, queue_timeout_s=60)
    job = proj.script_job(JOB, compute_target="lab")
    p = subprocess.Popen([sys.executable, "-m", "runctl", "submit", str(job), "-q", "--wait"], cwd=proj.root,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not proj.cli("list", "--json", check=True).json() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    assert p.poll() is None, "waiting for a free GPU"
    [queued] = proj.cli("list", "--json", check=True).json()
    assert queued["status"] == "Queued", queued
    gpus(1)  # the foreign process ends
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert f"run {queued['id']} is queued: no host has 1 free GPU(s) (10.231.0.2: 0 of 1 free)" in err, err
    assert out.strip() == queued["id"] and devices(proj, queued["id"]) == "0"
    assert proj.cli("show", queued["id"], "--json", check=True).json()["status"] == "Completed"


def test_more_gpus_than_any_host_has_is_bad_input(tmp_path: Path, home: Path, gpus: Any) -> None:
    proj = gpu_proj(tmp_path, gpus(2))
    job = proj.script_job(JOB, compute_target="lab", resources={"gpus": 3})
    r = proj.cli("submit", str(job))
    assert r.rc == 2 and "no host of target 'lab' has that many GPUs (the most is 2)" in r.err, r.err
    assert proj.cli("list", "--json").json() == []


TUNE = """import argparse, os, time
from azureml.core import Run
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
a = p.parse_args()
print('cvd', os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True)
run = Run.get_context()
for i in range(3):
    run.log("loss", (a.x - 0.5) ** 2 + 1 / (i + 1))
    time.sleep(0.7)
"""


def test_a_tuning_runs_children_take_disjoint_gpus_within_max_concurrent_runs(tmp_path: Path, home: Path,
                                                                                gpus: Any) -> None:
    """Tuning on an SSH target: children are placed like any run (here one GPU each, two GPUs:
    the two running at once hold different GPUs) and never more than max_concurrent_runs run."""
    from runctl.store.sqlite import Store

    proj = gpu_proj(tmp_path, gpus(2))
    job = proj.script_job(TUNE, compute_target="lab", hyperdrive={
        "sampling": "grid", "parameter_space": {"--x": {"choice": [0.1, 0.5, 0.9, 0.3]}},
        "primary_metric_name": "loss", "primary_metric_goal": "minimize", "max_concurrent_runs": 2})
    parent = proj.cli("submit", str(job), "-q", check=True, env={"RUNCTL_TUNING_POLL_S": "0.2"}).out.strip()
    store = Store(home)
    try:
        together = {frozenset(k.id for k in live) for live in poll_children(store, parent, at_most=2)
                    if len(live) == 2 and all(k.status.value == "Running" for k in live)}
        kids = store.runs(parent_id=parent)
        assert len(kids) == 4 and all(k.status.value == "Completed" for k in kids), [(k.id, k.status, k.error)
                                                                                       for k in kids]
        assert together, "two children ran at once"
        for pair in together:
            assert sorted(devices(proj, rid) for rid in pair) == ["0", "1"], "disjoint GPUs"
        best = proj.cli("show", parent, "--json", check=True).json()["best_run"]
        assert best["hyperparameters"] == {"--x": 0.5}
    finally:
        if not store.get(parent).status.is_terminal:
            proj.cli("cancel", parent)
        store.close()
