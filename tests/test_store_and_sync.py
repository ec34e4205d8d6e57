"""Run store under concurrency, and sync's idempotence (with a fake backend for fault injection)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runctl.backends.base import JobState
from runctl.ops.sync import sync_run
from runctl.status import RunStatus
from runctl.store.sqlite import Store
from runctl.testing import FakeBackend

from .conftest import Project


def test_twenty_concurrent_submits_get_distinct_runs(project: Project) -> None:
    project.write("t.py", "print('hi')\n")
    job = project.job(script="t.py")
    procs = [subprocess.Popen([sys.executable, "-m", "runctl", "submit", str(job), "-q"], cwd=project.root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(20)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), [err for _, err, rc in results if rc]
    ids = [out.strip() for out, _, _ in results]
    assert len(set(ids)) == 20
    runs = project.cli("list", "--json", "--limit", "0", check=True).json()
    assert sorted(r["id"] for r in runs) == sorted(ids)
    assert sorted(r["number"] for r in runs) == list(range(1, 21))
    for rid in ids:
        assert project.cli("wait", rid).rc == 0


def ev(name: str, value: Any) -> bytes:
    return (json.dumps({"k": "scalar", "n": name, "v": value, "t": 0}) + "\n").encode()


def test_torn_line_waits_and_sync_is_idempotent(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    events = backend.run_dir / "events.jsonl"
    line = ev("loss", 0.5)
    events.write_bytes(ev("loss", 1.0) + line[:10])  # the second line is half-written
    (backend.run_dir / "logs" / "std_log.txt").write_bytes(b"partial line without newline")
    for _ in range(2):
        sync_run(store, backend, store.get(rid))
    assert list(store.metric_events(rid)) == [("scalar", "loss", 1.0)]
    assert (store.run_dir(rid) / "logs" / "std_log.txt").read_bytes() == b"partial line without newline"
    with open(events, "ab") as f:
        f.write(line[10:])
    with open(backend.run_dir / "logs" / "std_log.txt", "ab") as f:
        f.write(b"\n")
    sync_run(store, backend, store.get(rid))
    sync_run(store, backend, store.get(rid))
    assert list(store.metric_events(rid)) == [("scalar", "loss", 1.0), ("scalar", "loss", 0.5)]
    assert (store.run_dir(rid) / "logs" / "std_log.txt").read_bytes() == b"partial line without newline\n"


def test_nan_inf_and_strings_survive(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    (backend.run_dir / "events.jsonl").write_bytes(ev("x", float("nan")) + ev("x", float("inf")) + ev("s", "text"))
    sync_run(store, backend, store.get(rid))
    vals = [v for _, n, v in store.metric_events(rid) if n == "x"]
    assert vals[0] != vals[0] and vals[1] == float("inf")
    assert [v for _, n, v in store.metric_events(rid) if n == "s"] == ["text"]


def test_concurrent_ingest_of_the_same_range_stores_it_once(fake: tuple[Store, FakeBackend, str]) -> None:
    store, _, rid = fake
    e = [{"k": "scalar", "n": "a", "v": 1}]
    assert store.ingest_events(rid, 0, 10, e)
    assert not store.ingest_events(rid, 0, 10, e), "a second writer with a stale offset is refused"
    assert list(store.metric_events(rid)) == [("scalar", "a", 1)]


def test_final_sync_fetches_outputs_and_marks_synced(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    (backend.run_dir / "outputs").mkdir()
    (backend.run_dir / "outputs" / "m.bin").write_bytes(b"w" * 100)
    backend.state = JobState(RunStatus.COMPLETED, exit_code=0, ended_at=5.0)
    r = sync_run(store, backend, store.get(rid))
    assert r.status == RunStatus.COMPLETED and r.synced and r.exit_code == 0
    assert (store.run_dir(rid) / "outputs" / "m.bin").read_bytes() == b"w" * 100
    backend.state = JobState(RunStatus.FAILED)
    assert sync_run(store, backend, store.get(rid)).status == RunStatus.COMPLETED, "a synced run is final"


V1_SCHEMA = """
CREATE TABLE experiments (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE runs (id TEXT PRIMARY KEY, experiment_id INTEGER NOT NULL, number INTEGER NOT NULL,
    display_name TEXT, description TEXT, kind TEXT NOT NULL DEFAULT 'submitted', status TEXT NOT NULL,
    compute_target TEXT, backend TEXT, handle TEXT, snapshot_id TEXT, spec TEXT, exit_code INTEGER, error TEXT,
    created_at REAL NOT NULL, started_at REAL, ended_at REAL, host TEXT, parent_id TEXT, unique_key TEXT,
    events_offset INTEGER NOT NULL DEFAULT 0, synced INTEGER NOT NULL DEFAULT 0, UNIQUE (experiment_id, number));
CREATE TABLE metrics (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, kind TEXT NOT NULL,
    name TEXT NOT NULL, value TEXT NOT NULL, step INTEGER, ts REAL, description TEXT);
CREATE INDEX metrics_run ON metrics(run_id, seq);
CREATE TABLE tags (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, key));
CREATE TABLE properties (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, key));
CREATE TABLE stat_cache (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER, digest TEXT);
INSERT INTO experiments VALUES (1, 'e', 0);
INSERT INTO runs (id, experiment_id, number, status, created_at) VALUES ('e_1_a', 1, 1, 'Completed', 1), ('e_2_b', 1, 2, 'Failed', 2);
INSERT INTO metrics (run_id, kind, name, value) VALUES ('e_2_b', 'scalar', 'x', '1'), ('e_1_a', 'scalar', 'y', '2.5'),
    ('e_2_b', 'scalar', 'x', '3');
PRAGMA user_version = 1;
"""


def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "runctl.db")
    db.executescript(V1_SCHEMA)
    db.close()
    store = Store(tmp_path)
    assert list(store.metric_events("e_2_b")) == [("scalar", "x", 1), ("scalar", "x", 3)]
    assert list(store.metric_events("e_1_a")) == [("scalar", "y", 2.5)]
    assert store.resolve("@last").id == "e_2_b" and store.get("e_1_a").status == RunStatus.COMPLETED
    new, _ = store.create_run("e")
    assert new.number == 3


def test_a_submit_killed_before_the_backend_had_the_run_is_reconciled(project: Project) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = Store(project.root.parent / "store")
    record, _ = store.create_run("test", compute_target="local",
                                 spec={"job": {}, "submitter": {"pid": dead.pid, "start_ticks": None, "host": None}})
    alive, _ = store.create_run("test", compute_target="local",
                                spec={"job": {}, "submitter": {"pid": os.getpid(), "start_ticks": None, "host": None}})
    store.close()
    st = project.cli("status", record.id, "--json", check=True).json()
    assert st["status"] == "Failed" and "was interrupted before the run was handed to its backend" in st["error"]
    assert project.cli("status", alive.id, "--json", check=True).json()["status"] == "NotStarted"


def test_child_ids_that_would_leave_the_store_are_refused(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    (backend.run_dir / "events.jsonl").write_bytes(
        (json.dumps({"k": "scalar", "n": "x", "v": 1, "r": "../../escape"}) + "\n").encode())
    sync_run(store, backend, store.get(rid))
    [child] = store.runs(parent_id=rid)
    assert child.id.startswith(rid + "_x") and "/" not in child.id, "kept, under a safe id scoped to the run"
    assert list(store.metric_events(child.id)) == [("scalar", "x", 1)]
    from runctl.job.context import LoggingError, OfflineRun

    with pytest.raises(LoggingError, match="child run id"):
        OfflineRun().child_run(run_id="../x")


def test_concurrent_syncs_of_a_busy_run_lose_and_duplicate_nothing(project: Project) -> None:
    job = project.script_job("""
        import time
        from azureml.core import Run
        run = Run.get_context()
        for i in range(200000):
            run.log("v", i)
            if i % 20000 == 0:
                time.sleep(0.2)
        """, environment={"environment_variables": {"RUNCTL_FLUSH_INTERVAL_S": "0.05"}})
    run_id = project.cli("submit", str(job), "-q", check=True).out.strip()
    pollers = [subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys\n"
        "while subprocess.run([sys.executable, '-m', 'runctl', 'status', sys.argv[1]], capture_output=True,"
        " text=True).stdout.strip() not in ('Completed', 'Failed', 'Canceled'):\n    pass\n"), run_id],
        cwd=project.root) for _ in range(3)]
    assert project.cli("wait", run_id, timeout=300).rc == 0
    for p in pollers:
        p.wait(timeout=120)
    assert project.cli("metrics", run_id, "--json", check=True).json()["v"] == list(range(200000))
