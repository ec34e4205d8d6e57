"""Sweeps on a backend without job arrays (local): a run per combination, one by one,
--max-parallel at a time, under a parent run whose state is its children's."""

from __future__ import annotations

from pathlib import Path

from .conftest import Project

SCRIPT = """
import argparse, os, time
from azureml.core import Run
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--bs", type=int)
a = p.parse_args()
Run.get_context().log("score", a.lr * a.bs)
marker = os.path.join(os.environ["MARKS"], "running-%s-%s" % (a.lr, a.bs))
open(marker, "w").close()
live = len(os.listdir(os.environ["MARKS"]))
time.sleep(0.8)
os.unlink(marker)
print("lr", a.lr, "bs", a.bs, "live", live, flush=True)
if a.lr == 0.5:
    raise SystemExit(3)
"""


def test_a_local_sweep_runs_one_by_one_within_max_parallel(project: Project, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    job = project.script_job(SCRIPT, environment={"environment_variables": {"MARKS": str(marks)}})
    r = project.cli("submit", str(job), "-q", "--sweep", "lr=0.1,0.01", "--sweep", "bs=32,64", "--max-parallel", "2",
                    "--wait")
    assert r.rc == 0, r.err
    parent = r.out.strip()
    shown = project.cli("show", parent, "--json", check=True).json()
    assert shown["status"] == "Completed"
    from runctl.store.sqlite import Store

    store = Store(Path(project.root).parent / "store")
    kids = store.runs(parent_id=parent)
    assert sorted(k.id for k in kids) == [f"{parent}_{i}" for i in range(4)]
    for k in kids:
        log = project.cli("logs", k.id, check=True).out
        assert int(log.split("live")[1]) <= 2, "never more than --max-parallel at once"
        tags = store.tags(k.id)
        assert project.cli("metrics", k.id, "--json", check=True).json()["score"] == float(tags["lr"]) * int(tags["bs"])
    store.close()


def test_a_sweep_with_a_failing_run_fails_and_bad_flags_are_bad_input(project: Project, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    job = project.script_job(SCRIPT, environment={"environment_variables": {"MARKS": str(marks)}})
    r = project.cli("submit", str(job), "-q", "--sweep", "lr=0.5,0.1", "--sweep", "bs=1", "--wait")
    assert r.rc != 0
    shown = project.cli("show", r.out.strip(), "--json", check=True).json()
    assert shown["status"] == "Failed" and "1 of 2 runs" in shown["error"]["message"], shown
    for bad in (["--sweep", "lr"], ["--sweep", "lr=1,,2"], ["--sweep", "lr=1", "--sweep", "lr=2"],
                ["--max-parallel", "2"]):
        r = project.cli("submit", str(job), *bad)
        assert r.rc == 2 and ("--sweep" in r.err or "--max-parallel" in r.err), (bad, r.err)


def test_a_huge_sweep_is_refused_at_once_without_building_it(project: Project) -> None:
    """4 x 100 values is 10^8 combinations: counted first, refused at once (no MemoryError)."""
    import resource

    job = project.script_job("print(1)\n")
    values = ",".join(str(i) for i in range(100))
    r = project.cli("submit", str(job), *[a for n in "abcd" for a in ("--sweep", f"{n}={values}")])
    assert r.rc == 2 and "100000000 combinations (100 x 100 x 100 x 100)" in r.err, r.err
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 1 << 20, "well under 1 GiB (KiB)"
    assert project.cli("list", "--json").json() == []
