"""System metrics sampled by the launcher (runctl/job/sysmetrics.py): real jobs on the local
backend, a stand-in nvidia-smi (tests/fake_nvidia_smi.py) reporting two GPUs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import Project

HERE = Path(__file__).resolve().parent

# Idle and small; then burning CPU with 300 MB resident; then idle again with it freed.
SCHEDULE = """
import time
from azureml.core import Run
run = Run.get_context()
run.log("accuracy", 0.5)
time.sleep(2.0)
block = bytearray(300 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
end = time.time() + 2.5
while time.time() < end:
    sum(range(10000))
del block
time.sleep(2.0)
run.log("accuracy", 0.9)
print("done", flush=True)
"""


@pytest.fixture
def smi(tmp_path: Path) -> Path:
    d = tmp_path / "smi"
    d.mkdir()
    shutil.copy(HERE / "fake_nvidia_smi.py", d / "nvidia-smi")
    (d / "nvidia-smi").chmod(0o755)
    (d / "gpus.json").write_text(json.dumps({"gpus": [
        {"index": 0, "uuid": "GPU-aaaa", "name": "Stand-in", "used": 1000, "util": 37},
        {"index": 1, "uuid": "GPU-bbbb", "name": "Stand-in", "used": 2000, "util": 81}]}))
    return d / "nvidia-smi"


def submit(project: Project, code: str, **fields: Any) -> str:
    job = project.script_job(code, **fields)
    return project.cli("submit", str(job), "--wait", "-q", check=True, timeout=180).out.strip()


def system(project: Project, run_id: str) -> dict[str, Any]:
    return project.cli("metrics", run_id, "--system", "--json", check=True).json()  # type: ignore[no-any-return]


def test_samples_follow_the_job_and_stay_out_of_its_metrics(project: Project, smi: Path) -> None:
    rid = submit(project, SCHEDULE, system_metrics_interval_s=0.25,
                 environment={"environment_variables": {"RUNCTL_NVIDIA_SMI": str(smi)}})
    m = system(project, rid)
    cpu, rss = m["system/cpu_percent"], m["system/memory_rss_mb"]
    assert len(cpu) >= 15 and len(rss) == len(cpu), m
    idle = next(i for i, v in enumerate(cpu) if v < 30)  # (the first samples may catch Python starting)
    busy = [i for i in range(idle, len(cpu)) if cpu[i] > 50]
    assert busy and min(cpu[busy[-1] + 1:]) < 30, cpu
    big = [i for i, v in enumerate(rss) if v > 250]
    assert big and rss[0] < 150 and rss[-1] < 150, rss
    assert big[0] <= busy[0] + 2 and big[-1] >= busy[-1] - 2, (cpu, rss)
    assert set(m["system/gpu0/utilization_percent"]) == {37} and set(m["system/gpu1/utilization_percent"]) == {81}
    assert set(m["system/gpu0/memory_used_mb"]) == {1000} and set(m["system/gpu1/memory_used_mb"]) == {2000}
    assert project.cli("metrics", rid, "--json", check=True).json() == {"accuracy": [0.5, 0.9]}
    csv_names = {line.split(",")[0] for line in project.cli("metrics", rid, "--csv", check=True).out.splitlines()[1:]}
    assert csv_names == {"accuracy"}
    one = project.cli("metrics", rid, "--name", "system/cpu_percent", "--json", check=True).json()
    assert one == {"system/cpu_percent": cpu}, "a system metric asked for by name is given"
    # sampling stopped with the job: no stand-in left running, no sample after the end
    assert subprocess.run(["pgrep", "-f", str(smi)], capture_output=True).returncode == 1
    from datetime import datetime

    ended = datetime.fromisoformat(project.cli("status", rid, "--json", check=True).json()["ended_at"]
                                   .replace("Z", "+00:00")).timestamp()
    rows = [r.split(",") for r in project.cli("metrics", rid, "--csv", "--system", check=True).out.splitlines()[1:]]
    assert rows and max(float(r[3]) for r in rows) <= ended


def test_the_job_sees_its_metrics_without_the_samples(project: Project) -> None:
    rid = submit(project, "import time, json\nfrom azureml.core import Run\nrun = Run.get_context()\n"
                          "run.log('loss', 1.0)\ntime.sleep(1.0)\nprint(json.dumps(run.get_metrics()), flush=True)\n",
                 system_metrics_interval_s=0.2)
    assert '{"loss": 1.0}' in project.cli("logs", rid, check=True).out
    assert system(project, rid)["system/cpu_percent"], "sampled all the same"


def test_only_the_gpus_the_job_sees_numbered_as_it_sees_them(project: Project, smi: Path) -> None:
    rid = submit(project, "import time\ntime.sleep(1.2)\n", system_metrics_interval_s=0.2,
                 environment={"environment_variables": {"RUNCTL_NVIDIA_SMI": str(smi), "CUDA_VISIBLE_DEVICES": "GPU-bbbb"}})
    m = system(project, rid)
    assert set(m["system/gpu0/utilization_percent"]) == {81} and "system/gpu1/utilization_percent" not in m


def test_zero_turns_it_off_and_no_nvidia_smi_means_no_gpu_metrics(project: Project, tmp_path: Path) -> None:
    off = submit(project, "import time\ntime.sleep(0.8)\n", system_metrics_interval_s=0)
    assert system(project, off) == {}
    rid = submit(project, "import time\ntime.sleep(0.8)\n", system_metrics_interval_s=0.2,
                 environment={"environment_variables": {"RUNCTL_NVIDIA_SMI": str(tmp_path / "no-such-nvidia-smi")}})
    assert sorted(system(project, rid)) == ["system/cpu_percent", "system/memory_rss_mb"]
    assert os.path.exists(tmp_path) and project.cli("status", rid, "--json", check=True).json()["status"] == "Completed"


PACKAGES = """
import json, sys
import importlib.metadata as m
print("PACKAGES " + json.dumps({d.metadata["Name"]: d.version for d in m.distributions()}), flush=True)
print("PYTHON " + sys.version.split()[0], flush=True)
"""


def test_every_run_records_its_environment(project: Project, smi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = submit(project, PACKAGES, environment={"environment_variables": {"RUNCTL_NVIDIA_SMI": str(smi)}})
    log = project.cli("logs", rid, check=True).out
    imported = json.loads(log.split("PACKAGES ", 1)[1].splitlines()[0])
    record = project.cli("show", rid, "--json", check=True).json()["environment_record"]
    assert record["packages"] == imported, "what the job can import, name -> version"
    assert record["python"]["version"] == log.split("PYTHON ", 1)[1].split()[0]
    assert record["os"] and record["host"] and record["gpus"] == ["Stand-in", "Stand-in"]
    assert record["driver"] == "550.54.15" and record["cuda"] == "12.4"
    shown = project.cli("show", rid, "--json", check=True).json()
    assert "runctl.environment" not in shown["properties"]

    from runctl import Workspace

    monkeypatch.chdir(project.root)
    assert Workspace.from_config().get_run(rid).get_environment() == record
