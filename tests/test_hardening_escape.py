"""A job stays inside its run: it cannot change another run, and what it names cannot take
over the terminal. (Links planted in RUN_DIR are covered per backend by the contract suite,
runctl/testing/contract.py::test_a_job_cannot_make_runctl_read_or_move_host_files.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .conftest import Project


def test_a_job_cannot_change_another_run(project: Project) -> None:
    victim_job = project.script_job("""
        import os
        from azureml.core import Run
        run = Run.get_context()
        run.log("acc", 0.9)
        run.tag("owner", "me")
        os.makedirs("outputs", exist_ok=True)
        open("outputs/model.txt", "w").write("mine")
        """, name="victim.yaml", experiment="other")
    victim = project.cli("submit", str(victim_job), "-q", "--wait", check=True).out.strip()
    attacker_job = project.script_job(f"""
        import json, os
        from azureml.core import Run
        run = Run.get_context()
        child = run.child_run(run_id={victim!r})
        child.log("acc", -1)
        child.tag("owner", "attacker")
        child.display_name = "pwned"
        child.upload_file("outputs/model.txt", __file__)
        rd = os.environ["RUNCTL_RUN_DIR"]
        os.makedirs(os.path.join(rd, "runs", {victim!r}, "outputs"), exist_ok=True)
        open(os.path.join(rd, "runs", {victim!r}, "outputs", "model.txt"), "w").write("overwritten")
        with open(os.path.join(rd, "events.jsonl"), "a") as f:   # forged, bypassing the Run API
            f.write(json.dumps({{"k": "scalar", "n": "acc", "v": -2, "r": {victim!r}}}) + "\\n")
            f.write(json.dumps({{"k": "run", "n": "x", "v": {{"parent": {victim!r}}}, "r": "orphan"}}) + "\\n")
        """, name="attacker.yaml")
    attacker = project.cli("submit", str(attacker_job), "-q", "--wait", check=True).out.strip()
    assert project.cli("metrics", victim, "--json", check=True).json() == {"acc": 0.9}
    shown = project.cli("show", victim, "--json", check=True).json()
    assert shown["tags"] == {"owner": "me"} and shown.get("displayName") is None and "children" not in shown
    out = Path(os.environ["RUNCTL_HOME"]) / "runs" / victim / "outputs" / "model.txt"
    assert out.read_text() == "mine"
    kids = project.cli("show", attacker, "--json", check=True).json()["children"]
    assert all(k.startswith(attacker + "_") for k in kids), kids  # scoped to the attacker's own run


def test_two_runs_using_the_same_child_id_do_not_collide(project: Project) -> None:
    job = project.script_job("""
        from azureml.core import Run
        run = Run.get_context()
        c = run.child_run(run_id="fold-1")
        c.log("score", 1)
        print(c.id)
        """)
    a = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    b = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    for rid in (a, b):
        child = f"{rid}_fold-1"
        assert project.cli("show", rid, "--json", check=True).json()["children"] == [child]
        assert project.cli("metrics", child, "--json", check=True).json() == {"score": 1}
        assert child in project.cli("logs", rid, check=True).out


ESC = "\x1b]0;pwned\x07\x1b[2J"


def test_job_data_is_printed_with_control_characters_escaped(project: Project) -> None:
    job = project.script_job(f"""
        import sys
        from azureml.core import Run
        run = Run.get_context()
        run.log({ESC!r} + "name", 1)
        run.tag("t" + {ESC!r}, "v" + {ESC!r})
        run.display_name = "d" + {ESC!r}
        run.child_run(name="c" + {ESC!r})
        print("raw " + {ESC!r})
        sys.exit(3)
        """)
    rid = project.cli("submit", str(job), "-q", "--wait").out.strip()
    for args in (("show", rid), ("metrics", rid), ("list",), ("list", "--json"), ("show", rid, "--json"),
                 ("metrics", rid, "--json"), ("logs", rid, "--json"), ("status", rid, "--json"), ("wait", rid)):
        r = project.cli(*args)
        assert "\x1b" not in r.out and "\x07" not in r.out and "\x1b" not in r.err, (args, r.out, r.err)
    assert "\\x1b]0;pwned" in project.cli("show", rid).out
    assert json.loads(project.cli("logs", rid, "--json").out)["logs/std_log.txt"].startswith("raw \x1b]0;pwned")
    assert ESC in project.cli("logs", rid).out, "logs without --json is the job's own output, as it wrote it"
