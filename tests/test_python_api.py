"""The Python API that mirrors Azure ML v1: Workspace, Experiment, ScriptRunConfig, Run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runctl import Experiment, Run, RunFailed, ScriptRunConfig, Workspace
from runctl.errors import ConfigError, InputError

from .conftest import REPO, Project


@pytest.fixture
def ws(project: Project, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.chdir(project.root)
    return Workspace.from_config()


def test_submit_wait_and_read_back(project: Project, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    project.write("train.py", """
        import sys
        from azureml.core import Run
        run = Run.get_context()
        for i in range(3):
            run.log("loss", 1 / (i + 1))
            print("epoch", i)
        run.tag("kind", "api")
        """)
    exp = Experiment(ws, "api")
    run = exp.submit(ScriptRunConfig(source_directory="src", script="train.py", arguments=["--x", 1]),
                     tags={"from": "python"})
    details = run.wait_for_completion(show_output=True)
    out = capsys.readouterr().out
    assert f"RunId: {run.id}" in out and "epoch 2" in out and "Execution Summary" in out
    assert details["status"] == "Completed" and details["runId"] == run.id
    assert {"startTimeUtc", "endTimeUtc", "properties", "logFiles", "runDefinition", "target"} <= set(details)
    assert run.get_status() == "Completed"
    assert run.get_metrics() == {"loss": [1.0, 0.5, 1 / 3]}
    assert run.get_tags() == {"from": "python", "kind": "api"}
    assert run.get_portal_url() == f"http://127.0.0.1:8765/runs/{run.id}"
    again = Run.get(ws, run.id)
    assert again.id == run.id and again.number == 1 and again.experiment.name == "api"
    assert project.cli("metrics", run.id, "--json", check=True).json() == run.get_metrics()


def test_failure_raises_like_v1(project: Project, ws: Workspace) -> None:
    project.write("bad.py", "raise SystemExit(4)\n")
    run = Experiment(ws, "api").submit(ScriptRunConfig(source_directory="src", script="bad.py"))
    with pytest.raises(RunFailed) as e:
        run.wait_for_completion()
    assert e.value.error_details["status"] == "Failed" and e.value.error_details["exitCode"] == 4
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Failed"


def test_get_runs_newest_first_and_filters(project: Project, ws: Workspace) -> None:
    project.write("ok.py", "print(1)\n")
    exp = Experiment(ws, "listing")
    ids = []
    for i in range(3):
        r = exp.submit(ScriptRunConfig(source_directory="src", script="ok.py"), tags={"i": str(i)})
        r.wait_for_completion()
        ids.append(r.id)
    assert [r.id for r in exp.get_runs()] == ids[::-1]
    assert [r.id for r in exp.get_runs(tags={"i": "1"})] == [ids[1]]
    assert set(ws.experiments) == {"listing"}


def test_bad_config_is_a_clear_error(project: Project, ws: Workspace) -> None:
    with pytest.raises(ConfigError, match="ScriptRunConfig: neither script nor command is set"):
        Experiment(ws, "api").submit(ScriptRunConfig(source_directory="src"))
    project.write("x.py", "print(1)\n")
    with pytest.raises(ConfigError, match="ScriptRunConfig: compute_target: unknown compute target 'gpu'"):
        Experiment(ws, "api").submit(ScriptRunConfig(source_directory="src", script="x.py", compute_target="gpu"))
    with pytest.raises(InputError, match="experiment name"):
        Experiment(ws, "bad name")


def test_interactive_run_with_children_files_and_context_manager(project: Project, ws: Workspace,
                                                                 tmp_path: Path) -> None:
    exp = Experiment(ws, "notebook")
    (project.root / "outputs").mkdir()
    with exp.start_logging(snapshot_directory="src", display_name="nb") as run:
        run.log("a", 1)
        run.log("a", 2)
        run.log_table("t", {"x": [1, 2, 3], "y": [4, 5, 6]})
        child = run.child_run("c1")
        child.log("c", 3)
        child.complete()
        kids = run.create_children(count=2)
        for k in kids:
            k.log("k", 1)
        (project.root / "outputs" / "model.txt").write_text("w")
        note = tmp_path / "note.txt"
        note.write_text("n")
        run.upload_file("docs/note.txt", str(note))
    assert run.get_status() == "Completed"
    assert run.get_metrics() == {"a": [1, 2], "t": {"x": [1, 2, 3], "y": [4, 5, 6]}}
    rec = run.get_metrics(recursive=True)
    assert rec[run.id] == run.get_metrics() and rec[child.id] == {"c": 3} and len(rec) == 4
    children = list(run.get_children())
    assert [c.id for c in children] == [child.id] + [k.id for k in kids]
    assert children[0].display_name == "c1" and children[0].parent.id == run.id
    assert [c.get_status() for c in children] == ["Completed"] * 3, "open children end with their parent"
    assert [c.get_tags()["azureml.batch_child_number"] for c in children[1:]] == ["0", "1"]
    assert sorted(run.get_file_names()) == ["docs/note.txt", "outputs/model.txt"]
    run.download_file("outputs/model.txt", str(tmp_path / "m.txt"))
    assert (tmp_path / "m.txt").read_text() == "w"
    assert "ContentSnapshotId" in run.get_properties()
    listed = project.cli("list", "--json", check=True).json()
    assert [r["id"] for r in listed] == [run.id], "children are not listed at the top level"


def test_interactive_run_that_raises_is_failed(project: Project, ws: Workspace) -> None:
    with pytest.raises(ValueError):
        with Experiment(ws, "nb").start_logging(snapshot_directory=None) as run:
            raise ValueError("bad cell")
    assert run.get_status() == "Failed"
    assert "bad cell" in run.get_details()["error"]["message"]


def test_interactive_run_of_a_dead_process_is_failed(project: Project) -> None:
    code = ("import os\nfrom runctl import Workspace, Experiment\n"
            "run = Experiment(Workspace.from_config(), 'nb').start_logging(snapshot_directory=None)\n"
            "run.log('a', 1)\nrun.flush()\nprint(run.id)\nos._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True, check=True)
    run_id = out.stdout.strip()
    listed = {r["id"]: r for r in project.cli("list", "--json", check=True).json()}
    assert listed[run_id]["status"] == "Failed", "`runctl list` reconciles it, as `status` and `show` do"
    st = project.cli("status", run_id, "--json", check=True).json()
    assert st["status"] == "Failed" and "exited without run.complete()" in st["error"]
    assert project.cli("metrics", run_id, "--json", check=True).json() == {"a": 1}


def test_notebook_example_runs_as_a_script(project: Project) -> None:
    p = subprocess.run([sys.executable, str(REPO / "examples" / "notebook" / "sine_notebook.py")], cwd=project.root,
                       capture_output=True, text=True, check=True)
    lines = p.stdout.strip().splitlines()
    run_id, status = lines[-1].split()
    assert lines[0] == f"http://127.0.0.1:8765/runs/{run_id}" and status == "Completed"
    sine = project.cli("metrics", run_id, "--json", check=True).json()["sine"]
    assert len(sine["x"]) == 50 and sine["y"][0] == 0.0


def test_show_output_works_without_a_binary_stdout(project: Project, ws: Workspace,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    project.write("hi.py", "print('héllo from the job')\n")
    text_only = io.StringIO()  # like Jupyter's stdout: text, no .buffer
    monkeypatch.setattr(sys, "stdout", text_only)
    run = Experiment(ws, "api").submit(ScriptRunConfig(source_directory="src", script="hi.py"))
    run.wait_for_completion(show_output=True)
    assert "héllo from the job" in text_only.getvalue()


def test_fail_and_complete_from_the_submitting_side_record_that_and_stop_the_job(project: Project, ws: Workspace) -> None:
    """v1: `r = exp.submit(config); r.fail()` marks the run Failed (it was left Starting,
    then Completed); the job is stopped, its output up to then kept."""
    import os
    import time

    project.write("long.py", """
        import time
        from azureml.core import Run
        run = Run.get_context()
        for i in range(600):
            run.log("i", i)
            print("tick", i, flush=True)
            time.sleep(0.1)
        """)
    exp = Experiment(ws, "api")
    failing = exp.submit(ScriptRunConfig(source_directory="src", script="long.py"))
    done = exp.submit(ScriptRunConfig(source_directory="src", script="long.py"))
    deadline = time.monotonic() + 30
    while "tick 3" not in project.cli("logs", failing.id).out and time.monotonic() < deadline:
        time.sleep(0.2)
    failing.fail("stopped by the notebook")
    assert failing.get_status() == "Failed"
    assert failing.get_details()["error"]["message"] == "stopped by the notebook"
    assert failing.get_metrics()["i"][:3] == [0, 1, 2], "what it logged before is kept"
    done.complete()
    assert done.get_status() == "Completed"
    time.sleep(1)
    left = [p for p in os.listdir("/proc") if p.isdigit() and _runs_long_py(p)]
    assert left == [], "no job left running under a finished record"
    failing.complete()
    assert failing.get_status() == "Failed", "a finished run keeps the state it ended in"


def _runs_long_py(pid: str) -> bool:
    try:
        return b"long.py" in Path(f"/proc/{pid}/cmdline").read_bytes() and Path(f"/proc/{pid}/cwd").resolve().name == "code"
    except OSError:
        return False


def test_details_with_logs_restore_snapshot_and_the_workspace_of_a_run(project: Project, ws: Workspace,
                                                                      tmp_path: Path) -> None:
    import zipfile

    project.write("hello.py", "print('hello from the job')\n")
    run = Experiment(ws, "api").submit(ScriptRunConfig(source_directory="src", script="hello.py"))
    run.wait_for_completion()
    d = run.get_details_with_logs()
    assert "hello from the job" in d["logFiles"]["logs/std_log.txt"]
    z = run.restore_snapshot(path=str(tmp_path / "restored"))
    with zipfile.ZipFile(z) as f:
        assert f.read("hello.py") == b"print('hello from the job')\n"
    assert run.experiment.workspace is ws and run.experiment.name == "api"


def test_an_azureml_environment_feeds_the_job(capsys: pytest.CaptureFixture[str]) -> None:
    """An object shaped like azureml.core.Environment (the real SDK's, or the shim's) becomes
    the job's environment: its image, with its pip packages installed on it, its variables."""
    from types import SimpleNamespace as NS

    from runctl.api import _environment_dict

    env = NS(environment_variables={"SEED": "1"}, docker=NS(base_image="python:3.11"),
             python=NS(interpreter_path="python", conda_dependencies=NS(pip_packages=["azureml-defaults", "torch"])))
    assert _environment_dict(env) == {"environment_variables": {"SEED": "1"}, "docker": {"image": "python:3.11"},
                                      "python": {"pip_packages": ["torch"]}}
    no_image = NS(environment_variables={}, docker=NS(base_image=None),
                  python=NS(interpreter_path="/opt/py/bin/python", conda_dependencies=NS(pip_packages=["torch"])))
    assert _environment_dict(no_image) == {"python": {"interpreter_path": "/opt/py/bin/python", "pip_packages": ["torch"]}}
    assert capsys.readouterr().err == "", "packages without an image are built on the host now (issue 22)"
