"""The CLI as users and cron scripts drive it: exit codes, run references, --unique, rerun, output formats."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Project, run_cli


def test_cron_style_submit_then_wait(project: Project) -> None:
    job = project.script_job("import sys\nprint('working')\nsys.exit(5)\n")
    run_id = project.cli("submit", str(job), "-q", check=True).out.strip()
    assert "\n" not in run_id and run_id.startswith("test_")
    assert project.cli("wait", run_id).rc == 5
    assert project.cli("wait", "@last").rc == 5


def test_run_references(project: Project) -> None:
    job = project.script_job("print('x')\n")
    first = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    second = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    assert project.cli("status", "@last", "--json").json()["id"] == second
    prefix = second[: len(second) - 4]
    assert not first.startswith(prefix)
    assert project.cli("status", prefix, "--json").json()["id"] == second
    r = project.cli("status", "test_")
    assert r.rc == 2 and "matches several runs" in r.err
    r = project.cli("status", "nope")
    assert r.rc == 2 and r.err.startswith("error: no run matches 'nope'")


def test_unique_key_never_stacks_runs(project: Project) -> None:
    job = project.script_job("import time\ntime.sleep(600)\n")
    a = project.cli("submit", str(job), "-q", "--unique", "nightly", check=True).out.strip()
    b = project.cli("submit", str(job), "-q", "--unique", "nightly", check=True).out.strip()
    assert a == b
    assert len(project.cli("list", "--json").json()) == 1
    project.cli("cancel", a, check=True)
    assert project.cli("wait", a).rc == 130
    c = project.cli("submit", str(job), "-q", "--unique", "nightly", check=True).out.strip()
    assert c != a
    project.cli("cancel", c, check=True)
    project.cli("wait", c)


def test_rerun_uses_the_same_snapshot(project: Project) -> None:
    job = project.script_job("print(open('data.txt').read())\n")
    project.write("data.txt", "version one")
    first = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    project.write("data.txt", "version two")
    again = project.cli("rerun", first, "-q", "--wait", check=True).out.strip()
    assert again != first
    assert "version one" in project.cli("logs", again).out
    a, b = (project.cli("show", r, "--json").json() for r in (first, again))
    assert a["snapshotId"] == b["snapshotId"]
    assert b["properties"]["runctl.rerun_of"] == first


def test_submit_follow_json_and_plain_list(project: Project) -> None:
    job = project.script_job("print('followed output')\nfrom azureml.core import Run\nRun.get_context().log('m', 2)\n")
    r = project.cli("submit", str(job), "--follow")
    assert r.rc == 0 and "followed output" in r.out and "Completed" in r.err
    d = project.cli("submit", str(job), "--json", "--wait").json()
    assert d["created"] is True and d["experiment"] == "test"
    table = project.cli("list").out.splitlines()
    assert table[0].split() == ["RUN", "EXPERIMENT", "#", "STATUS", "TARGET", "USER", "CREATED", "EXIT"]
    assert len(table) == 3
    import getpass

    assert table[1].split()[5] == getpass.getuser(), "who submitted it (the OS user on this machine's store)"
    assert project.cli("list", "--json").json()[0]["user"] == getpass.getuser()
    assert len(project.cli("list", "--mine", "--json").json()) == 2
    assert project.cli("list", "--user", "nobody-else", "--json").json() == []
    assert len(project.cli("list", "--limit", "1", "--json").json()) == 1
    assert project.cli("list", "--status", "completed", "--json").json()[0]["status"] == "Completed"
    assert project.cli("list", "--experiment", "other", "--json").json() == []
    bad = project.cli("list", "--status", "Done")
    assert bad.rc == 2 and "not a run status" in bad.err


def test_metrics_csv(project: Project) -> None:
    job = project.script_job("""
        from azureml.core import Run
        run = Run.get_context()
        run.log("loss", 0.5, step=1)
        run.log("loss", 0.25, step=2)
        run.log_row("pts", x=1, y=2)
        """)
    run_id = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    rows = list(csv.reader(io.StringIO(project.cli("metrics", run_id, "--csv", check=True).out)))
    assert rows[0] == ["name", "step", "value", "time"]
    assert [r[:3] for r in rows[1:]] == [["loss", "1", "0.5"], ["loss", "2", "0.25"], ["pts.x", "", "1"], ["pts.y", "", "2"]]


@pytest.mark.parametrize("under", ["", "sub/dir"])
def test_work_dir_that_is_a_file_is_bad_input(project: Project, tmp_path, under: str) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    (project.root / ".runctl").mkdir()
    (project.root / ".runctl" / "config.yaml").write_text(
        f"compute_targets:\n  broken: {{type: local, work_dir: '{blocker / under}'}}\n")
    job = project.script_job("print(1)\n", compute_target="broken")
    for cmd in ("submit", "validate"):
        r = project.cli(cmd, str(job))
        assert r.rc == 2 and "config.yaml:2:" in r.err and "work_dir" in r.err and "not a directory" in r.err, r.err
    assert project.cli("list", "--json").json() == []


def test_missing_interpreter_is_bad_input(project: Project) -> None:
    job = project.script_job("print(1)\n", environment={"python": {"interpreter_path": "/nonexistent/python"}})
    r = project.cli("submit", str(job))
    assert r.rc == 2 and "/nonexistent/python" in r.err
    assert project.cli("list", "--json").json() == []


def test_arguments_are_passed_verbatim_never_through_a_shell(project: Project) -> None:
    job = project.script_job("import sys\nprint(sys.argv[1:])\n",
                             arguments=["; rm -rf /", "$(whoami)", "a b", "it's", 3, True])
    run_id = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    assert "['; rm -rf /', '$(whoami)', 'a b', \"it's\", '3', 'true']" in project.cli("logs", run_id).out


def test_command_jobs(project: Project) -> None:
    project.write("data.txt", "x")
    job = project.job(command="echo shell says $((6*7)) && ls data.txt")
    run_id = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    assert "shell says 42\ndata.txt" in project.cli("logs", run_id).out
    job = project.job("list.yaml", command=["printf", "%s|", "a b", "$HOME"])
    run_id = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    assert project.cli("logs", run_id).out == "a b|$HOME|"


def test_environment_variables_reach_the_job(project: Project) -> None:
    job = project.script_job("import os\nprint(os.environ['BATCH'], os.environ['RUNCTL_EXPERIMENT'])\n",
                             environment={"environment_variables": {"BATCH": 64}})
    run_id = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    assert "64 test" in project.cli("logs", run_id).out


def test_help_does_not_import_heavy_libraries() -> None:
    code = ("import sys\nfrom runctl.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('docker', 'paramiko', 'jsonschema', 'yaml', 'sqlite3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_compute_list_and_check(project: Project) -> None:
    (project.root / ".runctl").mkdir()
    (project.root / ".runctl" / "config.yaml").write_text("compute_targets:\n  cpu: {type: local, cancel_grace_s: 5}\n")
    items = project.cli("compute", "list", "--json", check=True).json()
    assert {i["name"]: i["type"] for i in items} == {"local": "local", "cpu": "local"}
    r = project.cli("compute", "check", "cpu", check=True)
    assert r.out.startswith("cpu: ok")
    assert project.cli("compute", "check", "gpu").rc == 2


def test_secret_environment_variables_are_never_stored(project: Project, home) -> None:  # type: ignore[no-untyped-def]
    secret = "s3cr3t-value-4711"
    job = project.script_job("import os\nprint('token length', len(os.environ['TOKEN']))\n",
                             environment={"environment_variables": {"TOKEN": "${env:RUNCTL_TEST_TOKEN}", "PLAIN": "x"}})
    r = project.cli("submit", str(job), "-q", "--wait")
    assert r.rc == 2 and "RUNCTL_TEST_TOKEN is not set" in r.err
    run_id = project.cli("submit", str(job), "-q", "--wait", env={"RUNCTL_TEST_TOKEN": secret}, check=True).out.strip()
    assert f"token length {len(secret)}" in project.cli("logs", run_id).out
    show = project.cli("show", run_id, "--json", check=True).json()
    assert show["runDefinition"]["environment"]["environment_variables"]["TOKEN"] == "${env:RUNCTL_TEST_TOKEN}"
    for path in home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"secret written to {path}"


def test_list_works_where_a_runs_target_is_not_configured(project: Project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (project.root / ".runctl").mkdir()
    (project.root / ".runctl" / "config.yaml").write_text("compute_targets:\n  cpu: {type: local}\n")
    job = project.script_job("import time\ntime.sleep(600)\n", compute_target="cpu")
    run_id = project.cli("submit", str(job), "-q", check=True).out.strip()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()


    r = run_cli("list", "--json", cwd=elsewhere)
    assert r.rc == 0 and r.json()[0]["id"] == run_id
    assert r.err.count("status not refreshed") == 1 and "'cpu'" in r.err
    project.cli("cancel", run_id, check=True)
    project.cli("wait", run_id)


def test_version_and_help_list_exit_codes(project: Project) -> None:
    from runctl import __version__

    assert project.cli("--version", check=True).out.strip() == f"runctl {__version__}"
    out = project.cli("--help", check=True).out
    assert "Exit codes:" in out and "4 backend" in out


def test_multi_node_and_distributed_jobs_are_refused_where_they_cannot_run(project: Project) -> None:
    job = project.script_job("print(1)\n", node_count=2)
    r = project.cli("submit", str(job))
    assert r.rc == 2 and "node_count: 2" in r.err and "runs at most 1 node" in r.err
    job = project.script_job("print(1)\n", name="d.yaml", distributed_job_config={"type": "pytorch", "process_count": 2})
    r = project.cli("submit", str(job))
    assert r.rc == 2 and "distributed_job_config" in r.err
    assert project.cli("list", "--json").json() == []


def test_the_workspace_is_found_from_the_job_file_and_rerun_keeps_it(project: Project, tmp_path: Path) -> None:
    """`runctl submit /path/to/project/job.yaml` from elsewhere uses that project's config;
    rerun uses the config its run was submitted with, and says so when it has gone."""
    import shutil

    other = tmp_path / "elsewhere"
    other.mkdir()
    proj = tmp_path / "theproject"
    (proj / ".runctl").mkdir(parents=True)
    (proj / ".runctl" / "config.yaml").write_text("compute_targets:\n  mine:\n    type: local\n")
    (proj / "t.py").write_text("print('ran')\n")
    (proj / "job.yaml").write_text("script: t.py\ncompute_target: mine\n")
    r = run_cli("submit", str(proj / "job.yaml"), "-q", "--wait", cwd=other)
    assert r.rc == 0, r.err
    rid = r.out.strip()
    assert run_cli("validate", str(proj / "job.yaml"), cwd=other).rc == 0
    again = run_cli("rerun", rid, "--json", "--wait", cwd=other)
    assert again.rc == 0 and again.json()["rerun_of"] == rid and again.json()["compute_target"] == "mine", again.err
    shutil.rmtree(proj / ".runctl")
    gone = run_cli("rerun", rid, cwd=other)
    assert gone.rc == 2 and "is gone" in gone.err and "unknown compute target 'mine'" in gone.err, gone.err


def test_metrics_of_a_name_the_run_lacks_is_an_error_naming_what_it_has(project: Project) -> None:
    job = project.script_job("from azureml.core import Run\nr = Run.get_context()\nr.log('loss', 1)\nr.log('acc', 2)\n")
    rid = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    r = project.cli("metrics", rid, "--name", "nosuch")
    assert r.rc == 2 and "no metric 'nosuch'" in r.err and "acc, loss" in r.err, r.err
    assert project.cli("metrics", rid, "--name", "loss", "--json", check=True).json() == {"loss": 1}


def test_ctrl_c_while_following_detaches_and_the_run_goes_on(project: Project) -> None:
    import signal
    import time

    job = project.script_job("import time\nprint('started', flush=True)\ntime.sleep(3)\nprint('finished', flush=True)\n")
    p = project.popen("submit", str(job), "--follow")
    out = ""
    while "started" not in out:
        line = p.stdout.readline()  # type: ignore[union-attr]
        assert line, p.stderr.read()  # type: ignore[union-attr]
        out += line
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 5, err
    rid = next(w for w in out.split() if w.startswith("test_"))
    assert f"stopped following run {rid}; it keeps running" in err, err
    assert project.cli("wait", rid, "--timeout", "30").rc == 0
    assert "finished" in project.cli("logs", rid, check=True).out


def test_help_shows_plain_metavars_and_describes_every_argument() -> None:
    for cmd in (["submit"], ["logs"], ["rerun"], ["validate"], ["wait"], ["outputs"], ["ui"], ["list"], ["metrics"],
                ["compute", "check"], ["compute", "trust"]):
        out = subprocess.run([sys.executable, "-m", "runctl", *cmd, "--help"], capture_output=True, text=True,
                             check=True).stdout
        usage = out.splitlines()[0]
        assert "{" not in usage and "<str>" not in out and "<int" not in out, (cmd, out)
        args = out.split("Arguments:")[1].split("Options:")[0] if "Arguments:" in out else ""
        for line in (ln for ln in args.splitlines() if ln.strip()):
            assert len(line.split(None, 1)) == 2 or line.startswith("   "), (cmd, line)  # a name and its text


def test_a_failing_script_is_reported_once_with_its_traceback(project: Project) -> None:
    job = project.script_job("def train():\n    raise ValueError('bad batch size')\n\ntrain()\n")
    r = project.cli("submit", str(job), "--wait")
    assert r.rc == 1
    rid = project.cli("list", "--json", check=True).json()[0]["id"]
    assert f"Run {rid} Failed (exit code 1)" in r.err and "exit code 1: exit code 1" not in r.err, r.err
    assert "ValueError: bad batch size" in r.err and "Traceback" in r.err, "the job's last lines"
    assert f"(the whole log: runctl logs {rid})" in r.err
    waited = project.cli("wait", rid)
    assert waited.rc == 1 and "ValueError: bad batch size" in waited.err


def test_errors_a_user_can_act_on(project: Project) -> None:
    """Bad input is 2 and names what the user typed; an empty list says how to start; the
    top-level help shows whole summaries."""
    empty = project.cli("list")
    assert empty.rc == 0 and empty.out == "" and "no runs yet" in empty.err and "runctl submit" in empty.err
    assert project.cli("list", "--json", check=True).json() == []
    job = project.script_job("from azureml.core import Run\nRun.get_context().log('a', 1)\n")
    rid = project.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    r = project.cli("metrics", rid, "--name", "unknown")
    assert r.rc == 2 and "has no metric 'unknown'" in r.err
    r = project.cli("submit", str(job), "--compute", "no such target!")
    assert r.rc == 2 and "--compute no such target!" in r.err and "--set" not in r.err, r.err
    top = project.cli("--help", check=True).out
    commands = top.split("Commands:")[1].split("\n\n")[0]
    assert "..." not in commands, commands
