"""HyperDrive-style tuning (issue 24) end to end on the local backend: a real objective with
a known optimum (a quadratic, logged per epoch with a short sleep), random, grid and
Bayesian sampling, the bandit policy checked by its own arithmetic, max_concurrent_runs
polled, the controller SIGKILLed mid-sweep and adopted, cancel, bad sections, and the v1
notebook pattern through the azureml shim. Slurm's job arrays: tests/test_slurm_backend.py."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from runctl.status import RunStatus
from runctl.store.sqlite import Store

from .conftest import Project, poll_children, wait_for

# accuracy climbs towards 1 - (x - 0.3)^2 - (y - 0.7)^2 (best at x = 0.3, y = 0.7)
OBJECTIVE = """
import argparse, os, time
from azureml.core import Run
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--y", type=float)
p.add_argument("--epochs", type=int, default=5)
p.add_argument("--sleep", type=float, default=0.15)
a = p.parse_args()
run = Run.get_context()
with open(os.path.join(os.environ["MARKS"], "launches"), "a") as f:
    f.write(run.id + "\\n")
target = 1 - (a.x - 0.3) ** 2 - (a.y - 0.7) ** 2
for epoch in range(a.epochs):
    run.log("accuracy", target * (1 - 0.5 ** (epoch + 1)))
    time.sleep(a.sleep)
"""
FAST = {"RUNCTL_TUNING_POLL_S": "0.2"}


def final(x: float, y: float, epochs: int) -> float:
    return (1 - (x - 0.3) ** 2 - (y - 0.7) ** 2) * (1 - 0.5 ** epochs)


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    m = tmp_path / "marks"
    m.mkdir()
    return m


@pytest.fixture
def store(home: Path, project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The test's store; afterwards no controller of it is left running."""
    monkeypatch.setenv("RUNCTL_TUNING_POLL_S", "0.2")
    s = Store(home)
    yield s
    for r in s.runs():
        if r.kind == "hyperdrive" and not s.get(r.id).status.is_terminal:
            project.cli("cancel", r.id)
    s.close()


def tuning_job(project: Project, marks: Path, hyperdrive: dict[str, Any], epochs: int = 5, sleep: float = 0.15,
               name: str = "tune.yaml") -> Path:
    return project.script_job(OBJECTIVE, name=name, arguments=["--epochs", epochs, "--sleep", sleep],
                              environment={"environment_variables": {"MARKS": str(marks)}}, hyperdrive=hyperdrive)


def launches(marks: Path) -> list[str]:
    f = marks / "launches"
    return f.read_text().split() if f.exists() else []


def test_random_sampling_finds_the_optimum_and_the_bandit_cancels_by_its_own_arithmetic(
        project: Project, store: Store, marks: Path) -> None:
    job = tuning_job(project, marks, {
        "sampling": "random", "parameter_space": {"x": {"uniform": [0, 1]}, "--y": {"uniform": [0, 1]}},
        "primary_metric_name": "accuracy", "primary_metric_goal": "maximize", "max_total_runs": 12,
        "max_concurrent_runs": 3, "policy": {"bandit": {"slack_factor": 0.2, "delay_evaluation": 2}}, "seed": 7})
    started = time.monotonic()
    r = project.cli("submit", str(job), "-q")
    assert r.rc == 0, r.err
    parent = r.out.strip()
    assert time.monotonic() - started < 30, "submit returns the parent at once"
    # max_concurrent_runs, polled while it runs: never more unfinished children than 3
    most = max(map(len, poll_children(store, parent, at_most=3)), default=0)
    assert most >= 2, "it ran children side by side"
    shown = project.cli("show", parent, "--json", check=True).json()
    assert shown["status"] == "Completed" and "controller" not in shown, shown
    kids = store.runs(parent_id=parent)
    assert sorted(k.id for k in kids) == sorted(f"{parent}_{i}" for i in range(12))
    assert sorted(launches(marks)) == sorted(k.id for k in kids), "each child launched exactly once"
    best = shown["best_run"]
    x, y = best["hyperparameters"]["--x"], best["hyperparameters"]["--y"]
    assert best["primary_metric"] == {"name": "accuracy", "goal": "maximize", "value": pytest.approx(final(x, y, 5))}
    assert best["primary_metric"]["value"] > 0.9, "random sampling found a run near the optimum (1 - 1/32)"
    # the samples are v1's: uniform in [0, 1], passed as --x and --y, reproducible from the seed
    from runctl.config import hyperdrive as hd
    from runctl.ops.hyperdrive import space

    stored = store.get(parent).spec["hyperdrive"]  # (the job file's order: yaml.safe_dump sorted it)
    assert stored["parameter_space"] == {"--x": {"uniform": [0, 1]}, "--y": {"uniform": [0, 1]}} or \
        stored["parameter_space"] == {"--y": {"uniform": [0, 1]}, "--x": {"uniform": [0, 1]}}
    expected = [space.nth(hd.parse_space(stored["parameter_space"]), "random", 7, i) for i in range(12)]
    for k in kids:
        hp = json.loads(store.properties(k.id)["hyperparameters"])
        assert hp == expected[int(k.id.rsplit("_", 1)[1])]
        args = project.cli("show", k.id, "--json", check=True).json()["runDefinition"]["arguments"]
        assert args[-4:] == space.arguments(hp)
        assert args[-4:] in (["--x", format(hp["--x"], ".10g"), "--y", format(hp["--y"], ".10g")],
                             ["--y", format(hp["--y"], ".10g"), "--x", format(hp["--x"], ".10g")])
    # every cancel, checked against the policy's arithmetic on the stored reports
    canceled = [k for k in kids if k.status == RunStatus.CANCELED]
    assert canceled, "the bandit policy cut at least one run that fell behind"
    reports = {k.id: [v for _, _, v in store.metric_events(k.id, "accuracy")] for k in kids}
    for k in canceled:
        assert k.error and "bandit policy (slack_factor 0.2) at report" in k.error, k.error
        n = int(k.error.split("at report ")[1].split(":")[0])
        assert n >= 2, "not before delay_evaluation"
        peers = [max(vs[:n]) for vs in reports.values() if len(vs) >= n]
        assert max(reports[k.id][:n]) < max(peers) / 1.2, (k.id, n)
    for k in kids:
        if k.status == RunStatus.COMPLETED:
            assert len(reports[k.id]) == 5
    table = project.cli("metrics", parent, "--children", "--json", check=True).json()
    assert [t["id"] for t in table][0] == best["id"] and len(table) == 12
    bests = [t["best"] for t in table]
    assert bests == sorted(bests, reverse=True)
    assert f"best run {best['id']}" in project.cli("logs", parent, check=True).out
    listed = project.cli("list", "--experiment", "test", "--json", check=True).json()
    assert listed[0]["best_run"]["id"] == best["id"]
    assert best["id"] in project.cli("list", "--experiment", "test", check=True).out


def test_grid_covers_the_grid(project: Project, store: Store, marks: Path) -> None:
    job = tuning_job(project, marks, {
        "sampling": "grid", "parameter_space": {"--x": {"choice": [0.1, 0.3, 0.5]}, "--y": {"choice": [0.5, 0.7]}},
        "primary_metric_name": "accuracy", "primary_metric_goal": "maximize", "max_concurrent_runs": 6},
        epochs=2, sleep=0.05)
    r = project.cli("submit", str(job), "-q", "--wait")
    assert r.rc == 0, r.err
    parent = r.out.strip()
    kids = store.runs(parent_id=parent)
    points = {tuple(json.loads(store.properties(k.id)["hyperparameters"]).values()) for k in kids}
    assert points == {(x, y) for x in (0.1, 0.3, 0.5) for y in (0.5, 0.7)} and len(kids) == 6
    best = project.cli("show", parent, "--json", check=True).json()["best_run"]
    assert best["hyperparameters"] == {"--x": 0.3, "--y": 0.7}
    assert not list((Path(store.dir) / "state" / "hyperdrive").glob("*.lock")), "no lock left once it ended"
    again = project.cli("rerun", parent, "-q", "--wait")
    assert again.rc == 0, again.err
    rerun = again.out.strip()
    assert rerun != parent and store.get(rerun).kind == "hyperdrive"
    assert [json.loads(store.properties(f"{rerun}_{i}")["hyperparameters"]) for i in range(6)] == \
        [json.loads(store.properties(f"{parent}_{i}")["hyperparameters"]) for i in range(6)], "the same samples"


def test_bayesian_sampling_beats_randoms_median_on_the_same_budget(project: Project, store: Store,
                                                                    marks: Path) -> None:
    pytest.importorskip("optuna", reason="runctl[tuning] (optuna) is part of the test extras")
    space = {"--x": {"uniform": [0, 1]}, "--y": {"uniform": [0, 1]}}
    common = {"parameter_space": space, "primary_metric_name": "accuracy", "primary_metric_goal": "maximize",
              "max_total_runs": 16, "seed": 3}
    bayes = tuning_job(project, marks, {**common, "sampling": "bayesian", "max_concurrent_runs": 1}, epochs=1,
                       sleep=0, name="bayes.yaml")
    rand = tuning_job(project, marks, {**common, "sampling": "random", "max_concurrent_runs": 4}, epochs=1, sleep=0,
                      name="random.yaml")
    finals = {}
    for name, job in (("bayesian", bayes), ("random", rand)):
        r = project.cli("submit", str(job), "-q", "--wait", timeout=300)
        assert r.rc == 0, r.err
        finals[name] = [t["best"] for t in project.cli("metrics", r.out.strip(), "--children", "--json",
                                                       check=True).json()]
        assert len(finals[name]) == 16
    assert statistics.median(finals["bayesian"]) > statistics.median(finals["random"]), finals
    assert max(finals["bayesian"]) > 0.45, "within reach of the optimum (0.5 after one epoch)"


def test_a_killed_controller_is_adopted_with_no_child_launched_twice_or_forgotten(
        project: Project, store: Store, marks: Path) -> None:
    job = tuning_job(project, marks, {
        "parameter_space": {"--x": {"uniform": [0, 1]}, "--y": {"uniform": [0, 1]}}, "primary_metric_name": "accuracy",
        "primary_metric_goal": "maximize", "max_total_runs": 8, "max_concurrent_runs": 2, "seed": 1},
        epochs=3, sleep=0.3)
    parent = project.cli("submit", str(job), "-q", check=True).out.strip()
    pids = []
    for at_least in (1, 3, 5):  # kill it three times, at different points of the sweep
        wait_for(lambda n=at_least: len(store.runs(parent_id=parent)) >= n, 60, what=f"{at_least} children")
        shown = project.cli("show", parent, "--json", check=True).json()  # (this adopts one if none runs)
        pid = shown["controller"]["pid"]
        assert shown["controller"]["host"] and pid not in pids
        pids.append(pid)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda p=pid: not Path(f"/proc/{p}").exists() or "Z" in _state(p), 10, what="the controller gone")
        project.cli("status", parent, check=True)  # the next command that looks at it starts another
    r = project.cli("wait", parent, timeout=300)  # the next command restarts it; it finishes the sweep
    assert r.rc == 0, r.err
    kids = store.runs(parent_id=parent)
    assert sorted(k.id for k in kids) == sorted(f"{parent}_{i}" for i in range(8)), "none forgotten, none extra"
    assert sorted(launches(marks)) == sorted(k.id for k in kids), "each launched exactly once"
    assert all(k.status == RunStatus.COMPLETED for k in kids), [(k.id, k.status, k.error) for k in kids]
    assert store.get(parent).status == RunStatus.COMPLETED


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return "Z"


def test_cancel_stops_the_controller_and_every_child(project: Project, store: Store, marks: Path) -> None:
    job = tuning_job(project, marks, {
        "parameter_space": {"--x": {"uniform": [0, 1]}, "--y": {"uniform": [0, 1]}}, "primary_metric_name": "accuracy",
        "primary_metric_goal": "maximize", "max_total_runs": 10, "max_concurrent_runs": 2},
        epochs=100, sleep=0.2)
    parent = project.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: len(launches(marks)) >= 2, 60, what="two children running")
    pid = project.cli("show", parent, "--json", check=True).json()["controller"]["pid"]
    r = project.cli("cancel", parent)
    assert r.rc == 0 and "Canceled" in r.out, (r.out, r.err)
    assert _state(pid) == "Z" or not Path(f"/proc/{pid}").exists(), "the controller is stopped"
    kids = store.runs(parent_id=parent)
    time.sleep(1.0)
    assert len(store.runs(parent_id=parent)) == len(kids) == 2, "no child started after the cancel"
    for k in kids:
        k = project.cli("wait", k.id, timeout=60)
    for k in store.runs(parent_id=parent):
        assert k.status == RunStatus.CANCELED and k.error == "the tuning run was canceled", (k.status, k.error)
    shown = project.cli("show", parent, "--json", check=True).json()
    assert shown["status"] == "Canceled" and "controller" not in shown
    from runctl.errors import ExitCode

    assert project.cli("wait", parent).rc == ExitCode.CANCELED, "runctl wait exits as for any canceled run"


def test_max_duration_ends_the_sweep_and_cancels_what_runs(project: Project, store: Store, marks: Path) -> None:
    job = tuning_job(project, marks, {
        "parameter_space": {"--x": {"uniform": [0, 1]}, "--y": {"uniform": [0, 1]}}, "primary_metric_name": "accuracy",
        "primary_metric_goal": "maximize", "max_total_runs": 10, "max_concurrent_runs": 2,
        "max_duration_minutes": 0.05}, epochs=100, sleep=0.1)
    r = project.cli("submit", str(job), "-q", "--wait", timeout=120)
    parent = r.out.strip()
    shown = project.cli("show", parent, "--json", check=True).json()
    assert shown["status"] == "Completed", shown
    kids = store.runs(parent_id=parent)
    assert len(kids) == 2 and all(k.status == RunStatus.CANCELED and "max_duration_minutes (0.05)" in (k.error or "")
                                  for k in kids), [(k.status, k.error) for k in kids]


@pytest.mark.parametrize("section, field, says", [
    ({"sampling": "bayesian", "policy": {"bandit": {"slack_factor": 0.1}}}, "hyperdrive.policy",
     "Bayesian sampling takes no early-termination policy"),
    ({"sampling": "grid", "parameter_space": {"--x": {"uniform": [0, 1]}}}, "hyperdrive.parameter_space",
     "grid sampling does not take uniform"),
    ({"parameter_space": {"--x": {"uniform": [1, 0]}}}, "hyperdrive.parameter_space.--x", "needs low < high"),
    ({"parameter_space": {"--x": {"gamma": [1, 0]}}}, "hyperdrive.parameter_space.--x", "gamma"),
    ({"primary_metric_goal": "biggest"}, "hyperdrive.primary_metric_goal", "maximize"),
    ({"policy": {"bandit": {"evaluation_interval": 1}}}, "hyperdrive.policy.bandit", "slack_factor or slack_amount"),
    ({"max_concurrent_runs": 0}, "hyperdrive.max_concurrent_runs", ""),
])
def test_a_bad_section_is_one_error_at_its_line_and_nothing_is_made(project: Project, store: Store, marks: Path,
                                                                     section: dict, field: str, says: str) -> None:
    good = {"parameter_space": {"--x": {"uniform": [0, 1]}}, "primary_metric_name": "accuracy",
            "primary_metric_goal": "maximize", "max_total_runs": 2}
    job = tuning_job(project, marks, {**good, **section})
    r = project.cli("submit", str(job))
    assert r.rc == 2, (r.out, r.err)
    assert f"{job}:" in r.err and field in r.err and says in r.err, r.err
    assert len(r.err.strip().splitlines()) <= 2, r.err
    assert store.runs() == []
    assert project.cli("validate", str(job)).rc == 2


def test_a_command_job_or_a_sweep_flag_cannot_tune(project: Project, store: Store, marks: Path) -> None:
    section = {"parameter_space": {"--x": {"uniform": [0, 1]}}, "primary_metric_name": "a",
               "primary_metric_goal": "maximize", "max_total_runs": 2}
    cmd = project.job("cmd.yaml", command="echo hi", hyperdrive=section)
    r = project.cli("submit", str(cmd))
    assert r.rc == 2 and "script" in r.err, r.err
    job = tuning_job(project, marks, section)
    r = project.cli("submit", str(job), "--sweep", "lr=1,2")
    assert r.rc == 2 and "--sweep: not with a hyperdrive section" in r.err
    assert store.runs() == []


NOTEBOOK = """
import json, sys
from azureml.core import Experiment, ScriptRunConfig, Workspace
from azureml.train.hyperdrive import (BanditPolicy, HyperDriveConfig, PrimaryMetricGoal, RandomParameterSampling,
                                      choice)
from azureml.train.hyperdrive.parameter_expressions import uniform

ws = Workspace.from_config()
src = ScriptRunConfig(source_directory=sys.argv[-1], script="tune.py", arguments=["--epochs", 3, "--sleep", 0.05])
sampling = RandomParameterSampling({"--x": uniform(0.0, 1.0), "y": choice(0.5, 0.7)}, properties={"seed": 5})
config = HyperDriveConfig(run_config=src, hyperparameter_sampling=sampling,
                          policy=BanditPolicy(evaluation_interval=1, slack_factor=0.5, delay_evaluation=2),
                          primary_metric_name="accuracy", primary_metric_goal=PrimaryMetricGoal.MAXIMIZE,
                          max_total_runs=6, max_concurrent_runs=3)
run = Experiment(ws, "notebook-hd").submit(config)
run.wait_for_completion(show_output=True)
best = run.get_best_run_by_primary_metric()
ranked = run.get_children_sorted_by_primary_metric(top=3)
print("RESULT " + json.dumps({"parent": run.id, "status": run.get_status(), "best": best.id,
                              "best_metrics": best.get_metrics(), "ranked": ranked,
                              "hyperparameters": run.get_hyperparameters(), "children": len(run.get_metrics())}))
"""


def test_the_v1_notebook_pattern_through_the_shim(project: Project, store: Store, marks: Path,
                                                  tmp_path: Path) -> None:
    tuning_job(project, marks, {"parameter_space": {"--x": {"uniform": [0, 1]}}, "primary_metric_name": "accuracy",
                                "primary_metric_goal": "maximize", "max_total_runs": 1})  # writes src/tune.py
    notebook = tmp_path / "notebook.py"
    notebook.write_text(NOTEBOOK)
    code = "import runctl.ops.shimpath as s; s.activate(); import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
    p = subprocess.run([sys.executable, "-c", code, str(notebook), str(project.src)], cwd=project.root,
                       capture_output=True, text=True, timeout=300, env={**os.environ, "MARKS": str(marks)})
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.split("RESULT ", 1)[1])
    assert out["status"] == "Completed" and out["children"] == 6
    assert "best run" in p.stdout, "show_output streams the controller's log"
    assert out["ranked"][0]["run_id"] == out["best"] and len(out["ranked"]) == 3
    values = [r["best_primary_metric"] for r in out["ranked"]]
    assert values == sorted(values, reverse=True)
    hp = {k: json.loads(v) for k, v in out["hyperparameters"].items()}
    assert set(hp) == {f"{out['parent']}_{i}" for i in range(6)}
    assert all(set(v) == {"--x", "--y"} and v["--y"] in (0.5, 0.7) for v in hp.values())
    b = hp[out["best"]]
    assert out["best_metrics"]["accuracy"][-1] == pytest.approx(final(b["--x"], b["--y"], 3))
    assert store.get(out["parent"]).experiment == "notebook-hd"


def test_a_python_without_optuna_is_told_how_to_get_bayesian_sampling(project: Project, store: Store,
                                                                       marks: Path, tmp_path: Path) -> None:
    hide = tmp_path / "no-optuna"
    hide.mkdir()
    (hide / "optuna.py").write_text("raise ImportError('hidden for this test')\n")
    job = tuning_job(project, marks, {"sampling": "bayesian", "parameter_space": {"--x": {"uniform": [0, 1]}},
                                      "primary_metric_name": "accuracy", "primary_metric_goal": "maximize",
                                      "max_total_runs": 2})
    r = project.cli("submit", str(job), env={"PYTHONPATH": str(hide)})
    assert r.rc == 2 and "pip install 'runctl[tuning]'" in r.err, r.err
    assert store.runs() == []


def test_a_sweep_whose_runs_all_fail_fails_and_says_why(project: Project, store: Store, marks: Path) -> None:
    job = project.script_job("raise SystemExit('bad script')\n", name="fails.yaml", hyperdrive={
        "parameter_space": {"--x": {"choice": [1, 2, 3]}}, "sampling": "grid", "primary_metric_name": "accuracy",
        "primary_metric_goal": "maximize", "max_concurrent_runs": 3})
    r = project.cli("submit", str(job), "-q", "--wait")
    assert r.rc == 1, (r.rc, r.err)
    shown = project.cli("show", r.out.strip(), "--json", check=True).json()
    assert shown["status"] == "Failed" and "none of the 3 runs completed or reported accuracy" in \
        shown["error"]["message"], shown
    assert "best_run" not in shown
    assert all(k.status == RunStatus.FAILED for k in store.runs(parent_id=shown["runId"]))
