"""`runctl diff`: two real runs on the local backend that differ by a line of code, an
argument, a metric, a binary and a renamed file; an environment record; a snapshot whose
objects were garbage-collected."""

from __future__ import annotations

import shutil
from pathlib import Path

from .conftest import Project

TRAIN = """
import sys
from azureml.core import Run
run = Run.get_context()
lr = float(sys.argv[sys.argv.index("--lr") + 1])
for step in range(3):
    run.log("loss", 1.0 / (step + 1) * lr)
run.log("accuracy", {acc})
run.tag("variant", "{variant}")
"""


def two_runs(project: Project) -> tuple[str, str]:
    project.write("train.py", TRAIN.format(acc=0.5, variant="a"))
    project.write("notes/old_name.txt", "the same content\n")
    (project.src / "weights.bin").write_bytes(b"\x00\x01\x02" * 100)
    job = project.job(script="train.py", arguments=["--lr", "0.1", "--epochs", "3"])
    a = project.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    project.write("train.py", TRAIN.format(acc=0.75, variant="b"))
    (project.src / "notes" / "old_name.txt").rename(project.src / "notes" / "new_name.txt")
    (project.src / "weights.bin").write_bytes(b"\x00\x01\x03" * 120)
    job = project.job(script="train.py", arguments=["--lr", "0.01", "--epochs", "3"])
    b = project.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    return a, b


def test_diff_of_two_real_runs(project: Project) -> None:
    a, b = two_runs(project)
    d = project.cli("diff", a, b, "--json", check=True).json()
    assert set(d) >= {"code", "config", "environment", "metrics", "tags"}
    files = {f["path"]: f for f in d["code"]["files"]}
    assert set(files) == {"train.py", "notes/new_name.txt", "weights.bin"}
    assert files["notes/new_name.txt"]["change"] == "renamed" and files["notes/new_name.txt"]["from"] == "notes/old_name.txt"
    assert files["weights.bin"]["change"] == "changed" and files["weights.bin"]["binary"]
    assert files["weights.bin"]["a"]["size"] == 300 and files["weights.bin"]["b"]["size"] == 360
    text = files["train.py"]["diff"]
    assert '-run.log("accuracy", 0.5)' in text and '+run.log("accuracy", 0.75)' in text
    assert sum(line.startswith(("-", "+")) and not line.startswith(("---", "+++")) for line in text) == 4, text
    assert d["config"]["arguments"]["changed"] == [{"key": "--lr", "a": "0.1", "b": "0.01"}]
    metrics = {m["name"]: m for m in d["metrics"]}
    assert metrics["accuracy"]["a"]["last"] == 0.5 and metrics["accuracy"]["b"]["last"] == 0.75
    assert metrics["loss"]["a"] == {"last": 0.1 / 3, "min": 0.1 / 3, "max": 0.1, "count": 3}
    assert {"key": "variant", "a": "a", "b": "b"} in d["tags"]["tags"]
    plain = project.cli("diff", a, b, check=True).out
    assert "\x1b[" not in plain, "no colour when piped"
    assert "code: 2 changed, 0 added, 0 removed, 1 renamed" in plain and "--lr: 0.1 -> 0.01" in plain
    assert "+run.log(\"accuracy\", 0.75)" in plain and "weights.bin: changed, bytes 300 -> 360 (binary)" in plain
    stat = project.cli("diff", a, b, "--stat", check=True).out
    assert "train.py: changed" in stat and "@@" not in stat and "metrics: 2 of 2 differ" in stat
    # one run: compared with the previous run of its experiment, or the run it was rerun from
    assert project.cli("diff", b, "--json", check=True).json()["runs"][0]["id"] == a
    again = project.cli("rerun", a, "--wait", "-q", check=True).out.strip()
    back = project.cli("diff", again, "--json", check=True).json()
    assert back["runs"][0]["id"] == a and back["code"]["same"]


def test_environment_records_are_compared_package_by_package(project: Project, tmp_path: Path) -> None:
    """The second run can import one more distribution (on its PYTHONPATH): the records the
    launcher took say so, package by package."""
    extra = tmp_path / "extra" / "fakepkg-1.0.dist-info"
    extra.mkdir(parents=True)
    (extra / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
    code = "import importlib.metadata as m\nprint(m.version('fakepkg'))\n"
    a = project.cli("submit", str(project.script_job("print('plain')\n")), "--wait", "-q", check=True).out.strip()
    job = project.script_job(code, environment={"environment_variables": {"PYTHONPATH": str(extra.parent)}})
    b = project.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    assert project.cli("logs", b, check=True).out.strip() == "1.0", "the job imports it"
    env = project.cli("diff", a, b, "--json", check=True).json()["environment"]
    assert env["packages"] == [{"key": "fakepkg", "a": None, "b": "1.0"}]
    assert "package fakepkg: null -> 1.0" in project.cli("diff", a, b, check=True).out


def test_a_diff_whose_snapshot_objects_were_collected_says_so(project: Project, home: Path) -> None:
    a, b = two_runs(project)
    shutil.rmtree(home / "objects")
    d = project.cli("diff", a, b, "--json", check=True).json()
    assert "garbage-collected" in d["code"]["why"]
    assert {f["path"] for f in d["code"]["files"]} == {"train.py", "notes/new_name.txt", "weights.bin"}
    for snapshots in (home / "snapshots").glob("*.json"):
        snapshots.unlink()
    r = project.cli("diff", a, b, check=True)
    assert "garbage-collected" in r.out and "metrics: 2 of 2 differ" in r.out


def test_names_from_a_job_cannot_steer_the_terminal(project: Project) -> None:
    job = project.script_job("from azureml.core import Run\nRun.get_context().log('x\\x1b[2J', 1)\n")
    a = project.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    job = project.script_job("from azureml.core import Run\nRun.get_context().log('x\\x1b[2J', 2)\n")
    b = project.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    out = project.cli("diff", a, b, check=True).out
    assert "\x1b" not in out and "x\\x1b[2J" in out
