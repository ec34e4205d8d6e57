"""Sync limits: no legal value stops ingestion, memory stays bounded, rewritten logs end up
as their final content, a full disk is a clean error, and the store is private."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runctl.job.context import LoggingError, OfflineRun
from runctl.job.context._values import MAX_EVENT_BYTES
from runctl.ops.sync import CHUNK_BYTES, MAX_EVENT_LINE_BYTES, sync_run
from runctl.status import RunStatus
from runctl.store.sqlite import Store
from runctl.testing import FakeBackend

from .conftest import Project


def test_a_million_floats_in_one_log_list_and_everything_after_it_arrive(project: Project) -> None:
    job = project.script_job("""
        from azureml.core import Run
        run = Run.get_context()
        run.log_list("big", [i * 0.5 for i in range(1_000_000)])
        run.log("after", 1)
        run.tag("done", "yes")
        """)
    rid = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    m = project.cli("metrics", rid, "--json", check=True).json()
    assert len(m["big"]) == 1_000_000 and m["big"][-1] == 999_999 * 0.5 and m["after"] == 1
    assert project.cli("show", rid, "--json", check=True).json()["tags"] == {"done": "yes"}


def test_the_run_api_refuses_a_value_too_big_for_one_event() -> None:
    run = OfflineRun()
    with pytest.raises(LoggingError, match="the limit is 67108864"):
        run.log_list("huge", ["x" * 4000] * 20_000)
    with pytest.raises(LoggingError, match="the limit is"):
        run.log_table("huge", {"c": ["y" * 4000] * 20_000})
    with pytest.raises(LoggingError, match="display_name"):
        run.display_name = "n" * 1000


def line(**ev: Any) -> bytes:
    return (json.dumps({"t": 0, **ev}) + "\n").encode()


def test_a_line_longer_than_a_chunk_is_gathered_and_an_oversized_one_skipped(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    long_value = list(range(CHUNK_BYTES // 7))  # a ~10 MB line: more than one chunk
    junk = b"x" * (MAX_EVENT_LINE_BYTES + 10) + b"\n"  # not the Run API's: skipped, counted
    with open(backend.run_dir / "events.jsonl", "wb") as f:
        f.write(line(k="list", n="long", v=long_value))
        f.write(junk)
        f.write(line(k="scalar", n="after", v=2) + line(k="tag", n="t", v="v") + b'{"k": 1, "n": "bad types", "v": 0}\n')
    backend.state = backend.state.__class__(RunStatus.COMPLETED, exit_code=0)
    sync_run(store, backend, store.get(rid))
    names = [n for _, n, _ in store.metric_events(rid)]
    assert names == ["long", "after"]
    assert list(store.metric_events(rid, "long"))[0][2] == long_value
    assert store.tags(rid) == {"t": "v"}
    warnings = {k: v for k, v in store.properties(rid).items() if k.startswith("runctl.sync_warning")}
    assert any("bytes was skipped (over 80 MiB" in v for v in warnings.values())
    assert any("1 malformed event(s) skipped" in v for v in warnings.values())
    assert store.get(rid).synced


def test_final_line_without_newline_is_kept(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    (backend.run_dir / "events.jsonl").write_bytes(line(k="scalar", n="a", v=1) + line(k="scalar", n="b", v=2)[:-1])
    sync_run(store, backend, store.get(rid))
    assert [n for _, n, _ in store.metric_events(rid)] == ["a"]
    backend.state = backend.state.__class__(RunStatus.COMPLETED, exit_code=0)
    sync_run(store, backend, store.get(rid))
    assert [n for _, n, _ in store.metric_events(rid)] == ["a", "b"]


def test_a_log_rewritten_in_place_ends_up_as_its_final_content(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    progress = backend.run_dir / "logs" / "progress.txt"
    progress.write_text("epoch 1 loss=0.50\n")
    sync_run(store, backend, store.get(rid))
    progress.write_text("epoch 2 loss=0.25 and more\n")  # rewritten, longer
    sync_run(store, backend, store.get(rid))
    assert (store.run_dir(rid) / "logs" / "progress.txt").read_text() == "epoch 2 loss=0.25 and more\n"
    progress.write_text("epoch 3 loss=0.12 and more\n")  # rewritten, same length
    backend.state = backend.state.__class__(RunStatus.COMPLETED, exit_code=0)
    sync_run(store, backend, store.get(rid))
    assert (store.run_dir(rid) / "logs" / "progress.txt").read_text() == "epoch 3 loss=0.12 and more\n"


def test_a_rewritten_log_of_a_real_job(project: Project) -> None:
    job = project.script_job("""
        import os, time
        p = os.path.join(os.environ["RUNCTL_RUN_DIR"], "logs", "progress.txt")
        for i in range(5):
            with open(p, "w") as f:
                f.write("step %d of 5\\n" % i)
            time.sleep(0.2)
        """)
    rid = project.cli("submit", str(job), "-q", "--follow", check=True).out.splitlines()[0]
    assert project.cli("logs", rid, "--json", check=True).json()["logs/progress.txt"] == "step 4 of 5\n"


def test_follow_memory_stays_bounded_whatever_the_job_prints(project: Project) -> None:
    job = project.script_job("""
        import sys
        block = b"x" * (1 << 20)
        for i in range(600):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.write(b"\\nend\\n")
        """)
    rid = project.cli("submit", str(job), "-q", check=True).out.strip()
    code = ("import resource, subprocess, sys\n"
            f"p = subprocess.run([sys.executable, '-m', 'runctl', 'logs', {rid!r}, '--follow'], stdout=subprocess.DEVNULL)\n"
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True, check=True).stdout
    rc, max_rss_kb = map(int, out.split())
    assert rc == 0
    assert max_rss_kb < 250 * 1024, f"the follower grew to {max_rss_kb // 1024} MB for a 600 MB burst"
    assert (Path(os.environ["RUNCTL_HOME"]) / "runs" / rid / "logs" / "std_log.txt").stat().st_size > 600 << 20


def test_the_store_is_private_whatever_the_umask(project: Project, home: Path) -> None:
    job = project.script_job("""
        import os
        from azureml.core import Run
        run = Run.get_context()
        run.log("x", 1)
        run.child_run().log("y", 2)
        os.makedirs("outputs/sub", exist_ok=True)
        open("outputs/sub/model.txt", "w").write("w")
        print("secret printed")
        """)
    old = os.umask(0o022)
    try:
        project.cli("submit", str(job), "--wait", check=True)
    finally:
        os.umask(old)
    loose = []
    for p in [home, *home.rglob("*")]:
        if p.relative_to(home).parts[:1] == ("work",):
            continue  # run directories belong to the job (a container of another uid writes them)
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode & 0o077:
            loose.append((str(p.relative_to(home)), oct(mode)))
    assert loose == []


@pytest.fixture
def full_disk(tmp_path: Path) -> Any:
    if os.getuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_reads_keep_working_and_submit_fails_cleanly(tmp_path: Path, full_disk: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNCTL_HOME", str(full_disk / "store"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    proj = Project(tmp_path / "proj")
    done = proj.cli("submit", str(proj.script_job("print('before the disk filled')\n")), "-q", "--wait", check=True)
    rid = done.out.strip()
    proj.write("big.bin", "")
    (proj.src / "big.bin").write_bytes(os.urandom(512 << 10))
    filler = full_disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (64 << 10))
                f.flush()
        except OSError:
            pass
    r = proj.cli("submit", str(proj.job("job2.yaml", script="job.py")))
    assert r.rc == 1 and "no space left on" in r.err and "Traceback" not in r.err, r.err
    assert list((full_disk / "store" / "objects").rglob(".incoming*")) == []
    assert sorted(p.name for p in (full_disk / "store" / "work").iterdir()) == []
    assert proj.cli("list", "--json", check=True).json()[0]["id"] in (rid, proj.cli("list", "--json").json()[0]["id"])
    assert proj.cli("status", rid, check=True).out.strip() == "Completed"
    assert "before the disk filled" in proj.cli("logs", rid, check=True).out
    assert proj.cli("wait", rid).rc == 0
    assert MAX_EVENT_BYTES < MAX_EVENT_LINE_BYTES


def test_gc_removes_leftovers_of_killed_submits_and_unreferenced_snapshots_only(project: Project, home: Path) -> None:
    job = project.script_job("print('kept')\n")
    rid = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    old = time.time() - 2 * 3600
    orphan = home / "work" / "exp_1_orphan"  # no run of this store names it (core records a run before its RUN_DIR)
    orphan.mkdir(parents=True)
    (orphan / "x").write_text("x")
    incoming = home / "objects" / ".incoming.999999.1.tmp"
    incoming.write_bytes(b"half")
    project.write("other.py", "print(2)\n")
    from runctl.ops.session import Session
    from runctl.ops.submit import make_snapshot

    with Session(start=project.root) as s:
        lonely = make_snapshot(s, project.src)  # a snapshot no run refers to
    for p in (orphan, incoming, home / "snapshots" / f"{lonely}.json", *(home / "objects").rglob("*")):
        os.utime(p, (old, old))
    dry = project.cli("gc", "--dry-run", check=True)
    planned = set(dry.out.splitlines())
    assert {str(incoming), str(home / "snapshots" / f"{lonely}.json")} <= planned and str(orphan) not in planned
    assert orphan.exists() and incoming.exists(), "--dry-run removes nothing"
    project.cli("gc", check=True)
    assert orphan.exists(), "a folder no run of this store named is never removed"
    assert not incoming.exists()
    assert not (home / "snapshots" / f"{lonely}.json").exists()
    assert project.cli("rerun", rid, "--wait", "-q").rc == 0, "what a run refers to is kept"
