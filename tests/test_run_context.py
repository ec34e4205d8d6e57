"""The run context as scripts use it: values, limits, crash safety, files, offline runs, the shim."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runctl.job.context import LoggingError, OfflineRun, Run

from .conftest import Project


def submit_wait(project: Project, code: str, **fields: object) -> str:
    job = project.script_job(code, **fields)
    r = project.cli("submit", str(job), "-q", "--wait")
    assert r.rc == 0, project.cli("logs", r.out.strip()).out + r.err
    return r.out.strip()


def test_numpy_values_nan_inf_and_strings(project: Project) -> None:
    run_id = submit_wait(project, """
        import numpy as np
        from azureml.core import Run
        run = Run.get_context()
        run.log("i64", np.int64(7))
        run.log("f32", np.float32(0.5))
        run.log("b", np.bool_(True))
        run.log("nan", float("nan"))
        run.log("ninf", -float("inf"))
        run.log("s", "text")
        run.log_list("arr", np.arange(3))
        run.log("step_np", 1.0, step=np.int64(4))
        """)
    m = project.cli("metrics", run_id, "--json", check=True).json()
    assert m["i64"] == 7 and isinstance(m["i64"], int)
    assert m["f32"] == 0.5 and m["b"] is True and m["s"] == "text"
    assert math.isnan(m["nan"]) and m["ninf"] == -math.inf
    assert m["arr"] == [0, 1, 2]
    csv_rows = project.cli("metrics", run_id, "--csv", "--name", "step_np", check=True).out.splitlines()
    assert csv_rows[1].startswith("step_np,4,1.0,")


def test_bad_values_fail_at_the_call_with_a_clear_message() -> None:
    run = OfflineRun()
    with pytest.raises(LoggingError, match="Use run.log_list instead"):
        run.log("x", [1, 2])
    with pytest.raises(LoggingError, match="values must be numbers, booleans or strings, got object"):
        run.log("x", object())
    with pytest.raises(LoggingError, match="limit is 255"):
        run.log("n" * 256, 1)
    with pytest.raises(LoggingError, match="16 columns, the limit is 15"):
        run.log_row("wide", **{f"c{i}": i for i in range(16)})
    with pytest.raises(LoggingError, match="different lengths"):
        run.log_table("t", {"a": [1, 2], "b": [1]})
    with pytest.raises(LoggingError, match="limit is 4096"):
        run.log("long", "x" * 5000)
    with pytest.raises(LoggingError, match="exactly one of path= or plot="):
        run.log_image("img")
    with pytest.raises(LoggingError, match="step must be an integer"):
        run.log("x", 1, step=1.5)
    run.log("ok", 1)
    assert run.get_metrics() == {"ok": 1}


def test_sigkill_keeps_what_was_flushed_and_duplicates_nothing(project: Project) -> None:
    job = project.script_job("""
        import os, signal, time
        from azureml.core import Run
        run = Run.get_context()
        for i in range(1000):
            run.log("kept", i)
        time.sleep(1.5)          # three flush intervals
        for i in range(5):
            run.log("maybe", i)
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    run_id = project.cli("submit", str(job), "-q", check=True).out.strip()
    assert project.cli("wait", run_id).rc == 137
    m = project.cli("metrics", run_id, "--json", check=True).json()
    assert m["kept"] == list(range(1000))
    maybe = m.get("maybe", [])
    maybe = maybe if isinstance(maybe, list) else [maybe]
    assert maybe == list(range(len(maybe))), "at most the last interval is lost; nothing is duplicated"


def test_sigterm_flushes_pending_values(project: Project) -> None:
    job = project.script_job("""
        import os, signal
        from azureml.core import Run
        run = Run.get_context()
        for i in range(10):
            run.log("v", i)
        os.kill(os.getpid(), signal.SIGTERM)
        """, environment={"environment_variables": {"RUNCTL_FLUSH_INTERVAL_S": "60"}})
    run_id = project.cli("submit", str(job), "-q", check=True).out.strip()
    assert project.cli("wait", run_id).rc == 143
    assert project.cli("metrics", run_id, "--json", check=True).json() == {"v": list(range(10))}


def test_forked_child_does_not_duplicate_buffered_values(project: Project) -> None:
    run_id = submit_wait(project, """
        import os
        from azureml.core import Run
        run = Run.get_context()
        run.log("before_fork", 1)
        pid = os.fork()
        if pid == 0:
            run.log("from_child", 2)
            run.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        """, environment={"environment_variables": {"RUNCTL_FLUSH_INTERVAL_S": "60"}})
    assert project.cli("metrics", run_id, "--json", check=True).json() == {"before_fork": 1, "from_child": 2}


def test_logs_folder_is_synced_while_the_run_is_live(project: Project) -> None:
    from .conftest import wait_for

    job = project.script_job("""
        import time
        with open("logs/progress.txt", "w") as f:
            f.write("halfway\\n")
        print("wrote", flush=True)
        time.sleep(600)
        """)
    run_id = project.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: "logs/progress.txt" in project.cli("show", run_id, "--json").json().get("logFiles", {}),
             what="logs/progress.txt to be synced")
    path = project.cli("show", run_id, "--json").json()["logFiles"]["logs/progress.txt"]
    assert Path(path).read_text() == "halfway\n"
    project.cli("cancel", run_id, check=True)
    project.cli("wait", run_id)


def test_shim_never_shadows_a_real_azureml(project: Project, tmp_path: Path) -> None:
    real = tmp_path / "site" / "azureml" / "core"
    real.mkdir(parents=True)
    (real.parent / "__init__.py").write_text("")
    (real / "__init__.py").write_text("Run = 'the real azureml-core'\n")
    run_id = submit_wait(project, "from azureml.core import Run\nprint('Run is', Run)\n",
                         environment={"environment_variables": {"PYTHONPATH": str(tmp_path / "site")}})
    assert "Run is the real azureml-core" in project.cli("logs", run_id).out


def test_a_shadowed_sitecustomize_still_runs(project: Project, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import builtins\nbuiltins.CUSTOMIZED = True\n")
    run_id = submit_wait(project, "import builtins\nfrom azureml.core import Run\nprint('customized', builtins.CUSTOMIZED)\n",
                         environment={"environment_variables": {"PYTHONPATH": str(site)}})
    assert "customized True" in project.cli("logs", run_id).out


def test_offline_run_prints_and_is_recorded(project: Project) -> None:
    script = project.write("offline.py", """
        from runctl import Run
        run = Run.get_context()
        print("id", run.id)
        run.log("loss", 0.5)
        run.log("loss", 0.25)
        run.log_row("pts", x=1, y=2)
        run.tag("where", "laptop")
        """)
    p = subprocess.run([sys.executable, str(script)], cwd=project.src, capture_output=True, text=True, check=True)
    assert "Attempted to log scalar metric loss:\n0.5" in p.stdout
    run_id = p.stdout.split("id ", 1)[1].split()[0]
    assert run_id.startswith("OfflineRun_")
    st = project.cli("status", run_id, "--json", check=True).json()
    assert st["status"] == "Completed" and st["experiment"] == "offline"
    assert project.cli("metrics", run_id, "--json", check=True).json() == {"loss": [0.5, 0.25], "pts": {"x": 1, "y": 2}}
    assert project.cli("show", run_id, "--json", check=True).json()["tags"] == {"where": "laptop"}


def test_offline_run_that_crashes_is_failed_and_memory_mode_keeps_nothing(project: Project) -> None:
    script = project.write("crash.py", "from runctl import Run\nrun = Run.get_context()\nrun.log('a', 1)\nraise ValueError('boom')\n")
    p = subprocess.run([sys.executable, str(script)], cwd=project.src, capture_output=True, text=True)
    assert p.returncode == 1 and "ValueError: boom" in p.stderr
    runs = project.cli("list", "--json", check=True).json()
    assert runs[0]["status"] == "Failed" and "ValueError: boom" in runs[0]["error"]
    env = dict(os.environ, RUNCTL_OFFLINE="memory")
    p = subprocess.run([sys.executable, "-c", "from runctl import Run\nr = Run.get_context()\nr.log('a', 1)\n"
                        "print(r.get_metrics())"], cwd=project.src, capture_output=True, text=True, env=env, check=True)
    assert p.stdout.strip().endswith("{'a': 1}")
    assert len(project.cli("list", "--json", check=True).json()) == 1


def test_get_context_outside_a_run_without_offline_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNCTL_RUN_ID", raising=False)
    monkeypatch.setattr(Run, "_context", None)
    with pytest.raises(RuntimeError, match="submit the script with `runctl submit`"):
        Run.get_context(allow_offline=False)


def test_in_memory_offline_run_surface(capsys: pytest.CaptureFixture[str]) -> None:
    run = OfflineRun()
    assert run.id.startswith("OfflineRun_")
    run.log("a", 1)
    run.log_list("l", [1, 2])
    child = run.child_run("c")
    child.log("x", 3)
    with run.child_run() as c2:
        c2.log("y", 4)
    run.set_tags({"k": "v"})
    assert run.get_metrics() == {"a": 1, "l": [1, 2]}
    assert run.get_metrics(recursive=True) == {run.id: {"a": 1, "l": [1, 2]}, child.id: {"x": 3}, c2.id: {"y": 4}}
    assert c2.status == "Completed" and child.parent is run
    out = capsys.readouterr().out
    assert "Attempted to log scalar metric a:\n1" in out and "Attempted to log list metric l:" in out
    assert "Attempted to set tags {'k': 'v'}" in out


def test_metric_events_carry_step_and_time(project: Project) -> None:
    run_id = submit_wait(project, "from azureml.core import Run\nr = Run.get_context()\nr.log('a', 1, step=10)\nr.log('a', 2)\n")
    rows = project.cli("metrics", run_id, "--csv", check=True).out.splitlines()[1:]
    assert [r.split(",")[:3] for r in rows] == [["a", "10", "1"], ["a", "", "2"]]
    assert all(float(r.split(",")[3]) > 1.7e9 for r in rows)


def test_events_file_is_plain_jsonl(project: Project, home: Path) -> None:
    job = project.script_job("from azureml.core import Run\nRun.get_context().log('a', 1)\nraise SystemExit(1)\n")
    run_id = project.cli("submit", str(job), "-q", "--wait").out.strip()  # a failed run keeps its directory
    lines = (home / "work" / run_id / "events.jsonl").read_text().splitlines()
    names = [json.loads(ln)["n"] for ln in lines]  # what the job logged, and the launcher's environment record
    assert [n for n in names if n != "runctl.environment"] == ["a"] and names.count("runctl.environment") == 1


def test_log_image_with_a_real_matplotlib_figure(project: Project) -> None:
    run_id = submit_wait(project, """
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from azureml.core import Run
        run = Run.get_context()
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [0, 1, 4])
        run.log_image("curve", plot=fig)
        """)
    name = project.cli("metrics", run_id, "--json", check=True).json()["curve"]
    assert name.startswith("curve_") and name.endswith(".png")
    dest = project.root / "got.png"
    from runctl import Run, Workspace

    Run.get(Workspace.from_config(project.root), run_id).download_file(name, str(dest))
    assert dest.read_bytes().startswith(b"\x89PNG")


def test_the_rest_of_the_v1_import_surface(project: Project) -> None:
    """A v1 script imports more than it uses: every name is there; what only Azure can do
    raises one clear error naming the call and the runctl way."""
    (project.root / "src").mkdir(exist_ok=True)
    (project.root / "src" / "requirements.txt").write_text("torch==2.4\n# a comment\nnumpy\n")
    job = project.script_job("""
        import azureml.core
        from azureml.core import (VERSION, ComputeTarget, Dataset, Datastore, Environment, Experiment, Model, Run,
                                  RunConfiguration, ScriptRunConfig, Workspace)
        from azureml.core.run import Run as Run2
        from azureml.core.environment import Environment as Env2
        from azureml.core.conda_dependencies import CondaDependencies
        from azureml.core.dataset import Dataset as D2
        from azureml.core.datastore import Datastore as DS2
        from azureml.core.model import Model as M2
        from azureml.core.compute import AmlCompute, ComputeTarget as CT2
        from azureml.core.runconfig import RunConfiguration as RC2
        print("version", azureml.core.VERSION)
        env = Environment.from_pip_requirements("train", "requirements.txt")
        env.docker.base_image = "python:3.11"
        print("env", env.to_runctl(), env.python.conda_dependencies.pip_packages)
        deps = CondaDependencies.create(pip_packages=["scipy"])
        print("deps", deps.pip_packages)
        for call in (lambda: Dataset.get_by_name(None, "mnist"), lambda: Datastore.get(None, "blob"),
                     lambda: Model.register(None, "m.pkl", "m"), lambda: AmlCompute(None, "gpu"),
                     lambda: Dataset.Tabular.from_delimited_files("x")):
            try:
                call()
            except azureml.core.AzureOnlyError as e:
                print("refused", str(e))
        run = Run.get_context()
        run.log("ok", 1)
        """)
    rid = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    out = project.cli("logs", rid, check=True).out
    assert "version 1.61.0" in out
    assert "env {'docker': {'base_image': 'python:3.11', 'pip_packages': ['torch==2.4', 'numpy']}}" in out
    assert "deps ['scipy']" in out
    refused = [ln for ln in out.splitlines() if ln.startswith("refused")]
    assert len(refused) == 5, out
    assert "azureml.core.Dataset.Tabular.from_delimited_files" in refused[4]
    assert "azureml.core.Dataset.get_by_name" in refused[0] and "--data" in refused[0]
    assert "azureml.core.Datastore.get" in refused[1] and "azureml.core.Model.register" in refused[2]
    assert "outputs" in refused[2] and ".runctl/config.yaml" in refused[3]
    assert project.cli("metrics", rid, "--json", check=True).json() == {"ok": 1}


def test_shim_install_lets_a_v1_script_run_with_plain_python(tmp_path: Path, home: Path) -> None:
    """`runctl shim install --python VENV/bin/python`: `python train.py` there imports
    azureml.core, its run is recorded offline in the store; uninstall undoes it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    repo = Path(__file__).resolve().parent.parent
    (Path(site) / "runctl-dev.pth").write_text(str(repo) + "\n")  # runctl importable there, as `pip install` would
    script = tmp_path / "train.py"
    script.write_text("from azureml.core import Run\nrun = Run.get_context()\nrun.log('loss', 0.5)\nrun.complete()\n"
                      "print('id', run.id)\n")
    without = subprocess.run([py, str(script)], capture_output=True, text=True)
    assert without.returncode != 0 and "No module named 'azureml'" in without.stderr
    r = subprocess.run([sys.executable, "-m", "runctl", "shim", "install", "--python", py], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "runctl-azureml-shim.pth" in r.stdout, r.stderr
    ran = subprocess.run([py, str(script)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    rid = ran.stdout.split()[-1]
    shown = subprocess.run([sys.executable, "-m", "runctl", "metrics", rid, "--json"], capture_output=True, text=True)
    assert json.loads(shown.stdout) == {"loss": 0.5}, shown.stderr
    r = subprocess.run([sys.executable, "-m", "runctl", "shim", "uninstall", "--python", py], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "removed" in r.stdout
    assert subprocess.run([py, str(script)], capture_output=True, text=True).returncode != 0
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", str(bare)], check=True)
    r = subprocess.run([sys.executable, "-m", "runctl", "shim", "install", "--python", str(bare / "bin" / "python")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "cannot import runctl" in r.stderr


def test_a_job_whose_python_has_the_real_azureml_core_logs_to_runctl(project: Project) -> None:
    """With azureml-core installed (a stand-in with its layout and offline Run here),
    Run.get_context() still returns runctl's run; the SDK's other classes keep working;
    the log says which was used."""
    fixture = Path(__file__).parent / "fixtures" / "stand-in-azureml-core"
    job = project.script_job("""
        from azureml.core import Run, Workspace
        run = Run.get_context()
        run.log("loss", 0.25)
        child = run.child_run("fold-1")
        child.log("acc", 0.9)
        child.complete()
        print("workspace:", Workspace.describe())
        """, environment={"environment_variables": {"PYTHONPATH": str(fixture)}})
    rid = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    out = project.cli("logs", rid, check=True).out
    assert "runctl: azureml-core 1.61.0.stand-in is installed; Run.get_context() returns runctl's run" in out
    assert "workspace: stand-in workspace" in out and "Attempted to log" not in out
    assert project.cli("metrics", rid, "--json", check=True).json() == {"loss": 0.25}
    assert out.count("runctl: azureml-core") == 1


def test_register_model_records_numbered_versions(project: Project) -> None:
    job = project.script_job("""
        import os
        from azureml.core import Run
        run = Run.get_context()
        os.makedirs("outputs", exist_ok=True)
        open("outputs/model.pkl", "w").write("weights")
        m = run.register_model("classifier", model_path="outputs/model.pkl", tags={"acc": 0.9}, description="first")
        print("registered", m.name, m.path)
        run.register_model("classifier", model_path="outputs/model.pkl")
        """)
    rid = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    assert "registered classifier outputs/model.pkl" in project.cli("logs", rid, check=True).out
    models = project.cli("models", "--json", check=True).json()
    assert [(m["name"], m["version"], m["run_id"], m["path"]) for m in models] == [
        ("classifier", 2, rid, "outputs/model.pkl"), ("classifier", 1, rid, "outputs/model.pkl")]
    assert models[1]["tags"] == {"acc": "0.9"} and models[1]["description"] == "first"
    assert project.cli("models", "classifier", check=True).out.startswith(f"classifier:2  run {rid}  outputs/model.pkl")
    assert project.cli("models", "nosuch").err.startswith("no models registered as 'nosuch'")


@pytest.mark.slow  # installs azureml-core from PyPI into a fresh venv (about 25 s)
def test_a_job_with_the_real_azureml_core_from_pypi_logs_to_runctl(project: Project, tmp_path: Path) -> None:
    venv = tmp_path / "azureml-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "azureml-core"],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    job = project.script_job("""
        import azureml.core
        from azureml.core import Run, Workspace
        run = Run.get_context()
        for i in range(3):
            run.log("loss", 1.0 / (i + 1))
        child = run.child_run("fold-1")
        child.log("acc", 0.5)
        child.complete()
        print("workspace class from", Workspace.__module__, azureml.core.__file__)
        """, environment={"python": {"interpreter_path": str(venv / "bin" / "python")}})
    rid = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    out = project.cli("logs", rid, check=True).out
    assert "runctl: azureml-core 1." in out and "is installed; Run.get_context() returns runctl's run" in out, out
    assert "workspace class from azureml.core.workspace" in out and str(venv) in out, "the SDK's own classes"
    assert project.cli("metrics", rid, "--json", check=True).json() == {"loss": [1.0, 0.5, 1 / 3]}
    assert "Attempted to log" not in out


V1_IMPORTS = """
from azureml.core.run import Run
from azureml.core import Run as CoreRun
from azureml.core.experiment import Experiment
from azureml.core.workspace import Workspace
from azureml.core.script_run_config import ScriptRunConfig
from azureml.core.environment import Environment
from azureml.core.runconfig import RunConfiguration
from azureml.core.conda_dependencies import CondaDependencies
from azureml.core.model import Model
from azureml.core.dataset import Dataset
from azureml.core.datastore import Datastore
from azureml.core.compute import ComputeTarget
assert Run is CoreRun
run = Run.get_context()
run.log("loss", 0.5)
print("id", run.id, flush=True)
"""


def test_every_v1_import_path_works_with_the_shim_in_and_out_of_jobs(tmp_path: Path, home: Path,
                                                                     project: Project) -> None:
    """`from azureml.core.run import Run` and the other submodules (what public v1 scripts
    write): under plain python with the shim installed, an offline run in the store, and the
    class-level v1 calls (Run.get(ws, id)); inside a job, the job's run."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (Path(site) / "runctl-dev.pth").write_text(str(Path(__file__).resolve().parent.parent) + "\n")
    subprocess.run([sys.executable, "-m", "runctl", "shim", "install", "--python", py], check=True, capture_output=True)
    script = tmp_path / "train.py"
    script.write_text(V1_IMPORTS + "run.complete()\n")
    ran = subprocess.run([py, str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    rid = ran.stdout.split()[-1]
    shown = subprocess.run([sys.executable, "-m", "runctl", "metrics", rid, "--json"], capture_output=True, text=True)
    assert json.loads(shown.stdout) == {"loss": 0.5}, shown.stderr
    again = tmp_path / "get.py"
    again.write_text(f"from azureml.core import Run, Workspace\nr = Run.get(Workspace.from_config(), {rid!r})\n"
                     f"print(r.id, r.get_status(), r.get_metrics())\n")
    got = subprocess.run([py, str(again)], capture_output=True, text=True, cwd=tmp_path)
    assert got.returncode == 0 and f"{rid} Completed {{'loss': 0.5}}" in got.stdout, got.stderr
    job = project.script_job(V1_IMPORTS)
    r = project.cli("submit", str(job), "--wait", "-q")
    assert r.rc == 0, (r.err, project.cli("logs", r.out.strip()).out)
    assert project.cli("metrics", r.out.strip(), "--json", check=True).json() == {"loss": 0.5}
