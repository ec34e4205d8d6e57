"""Shared fixtures: an isolated store (RUNCTL_HOME), projects with job files, the real CLI."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from runctl.testing import Project as KitProject
from runctl.testing import Result, run_cli, wait_for  # noqa: F401  (the tests import them from here)
from runctl.testing.project import isolated_home
from runctl.testing.rig import stage_run_dir  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
# This test session's own mark on the containers and images its Docker targets make: the
# suite removes only those (another program may use the same daemon at the same time).
SESSION_LABEL = "runctl.test-session"
SESSION_ID = f"{os.getpid()}-{int(time.time())}"
# The tests' own Slurm cluster (tests/infra/up-slurm.sh): its config file, for every Slurm
# command the tests and runctl run (SLURM_CONF), so a cluster of this machine's is never used.
SLURM_STATE = Path(os.environ.get("RUNCTL_TEST_SLURM_STATE", "/var/lib/runctl-test-slurm")) / "cluster"
SLURM_CONF = str(SLURM_STATE / "slurm.conf")
os.environ["SLURM_CONF"] = SLURM_CONF
# The tests' own PostgreSQL (tests/infra/up-postgres.sh): its port, roles and password file.
PG_STATE = Path(os.environ.get("RUNCTL_TEST_PG_STATE", "/var/lib/runctl-test-pg"))
PG_PORT = int(os.environ.get("RUNCTL_TEST_PG_PORT", "55433"))
PG_ADMIN = "runctl_test_admin"


def session_labelled(targets: dict[str, dict]) -> dict[str, dict]:
    """``targets`` with every Docker target carrying this session's label."""
    return {name: ({**t, "labels": {SESSION_LABEL: SESSION_ID, **(t.get("labels") or {})}}
                   if t.get("type") == "docker" else t) for name, t in targets.items()}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolated_home(tmp_path, monkeypatch)


class Project(KitProject):
    """runctl.testing's Project, whose Docker targets carry this test session's label."""

    def targets(self, targets: dict[str, dict]) -> dict[str, dict]:
        return session_labelled(targets)


@pytest.fixture
def project(tmp_path: Path, home: Path) -> Project:
    return Project(tmp_path / "proj")


def poll_children(store: Any, parent: str, at_most: int) -> list[list[Any]]:
    """A tuning (or sweep) run's unfinished children, polled until the parent ends, each
    time asserting there are at most ``at_most``; every poll's list, in order."""
    seen = []
    while not store.get(parent).status.is_terminal:
        live = [k for k in store.runs(parent_id=parent) if not k.status.is_terminal]
        assert len(live) <= at_most, [k.id for k in live]
        seen.append(live)
        time.sleep(0.05)
    return seen


def pg_ready() -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    if not (PG_STATE / "pgpass").is_file():
        return False
    try:
        psycopg.connect(f"postgresql://{PG_ADMIN}@127.0.0.1:{PG_PORT}/postgres", connect_timeout=5,
                        passfile=str(PG_STATE / "pgpass")).close()
    except psycopg.Error:
        return False
    return True


class TeamDb:
    """A fresh database of the tests' PostgreSQL, initialised by `runctl store init`'s code,
    with alice and bob in runctl_users; dropped afterwards."""

    def __init__(self, name: str) -> None:
        self.name = name

    def url(self, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{PG_PORT}/{self.name}"

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.url(PG_ADMIN), autocommit=True, passfile=str(PG_STATE / "pgpass"))

    def env(self, user: str, artifacts: Path, home: Path) -> dict[str, str]:
        """What a teammate's shell has: their role, the team store, their own machine's folder."""
        return {"PGPASSFILE": str(PG_STATE / "pgpass"), "PGUSER": user, "RUNCTL_STORE": self.url(user),
                "RUNCTL_ARTIFACTS": str(artifacts), "RUNCTL_HOME": str(home)}


@pytest.fixture
def team_db(monkeypatch: pytest.MonkeyPatch) -> Any:
    import secrets

    import psycopg

    require_service("the test PostgreSQL", pg_ready(), "run tests/infra/up-postgres.sh")
    monkeypatch.setenv("PGPASSFILE", str(PG_STATE / "pgpass"))
    db = TeamDb(f"runctl_test_{secrets.token_hex(6)}")
    with psycopg.connect(f"postgresql://{PG_ADMIN}@127.0.0.1:{PG_PORT}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db.name}"')
    from runctl.store.pgschema import init

    with db.admin() as conn:
        init(conn)
        conn.execute("GRANT runctl_users TO alice, bob")
    yield db
    with psycopg.connect(f"postgresql://{PG_ADMIN}@127.0.0.1:{PG_PORT}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


S3_PORT = int(os.environ.get("RUNCTL_TEST_S3_PORT", "55434"))
S3_ENV = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}", "AWS_ACCESS_KEY_ID": "runctl-test",
          "AWS_SECRET_ACCESS_KEY": "runctl-test", "AWS_DEFAULT_REGION": "us-east-1"}


def s3_ready() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", S3_PORT), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A bucket of this test's own on the tests' S3 stand-in (tests/infra/up-s3.sh): its
    s3:// URL; the AWS variables point at the stand-in. Emptied and removed afterwards."""
    import secrets

    require_service("the test S3 server (moto)", s3_ready(), "run tests/infra/up-s3.sh")
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    import boto3

    client = boto3.client("s3")
    name = f"runctl-test-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name)
    yield f"s3://{name}/team"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The store API on each store: a SQLite folder, and the team store (as alice)."""
    from runctl.store.sqlite import Store

    if request.param == "sqlite":
        store = Store(tmp_path / "store")
    else:
        from runctl.store.postgres import PgStore

        db = request.getfixturevalue("team_db")
        store = PgStore(db.url("alice"), tmp_path / "artifacts", tmp_path / "local")
    yield store
    store.close()


@pytest.fixture
def fake(tmp_path: Path, any_store: Any) -> tuple[Any, Any, str]:
    """A store (each kind) with one Running run on a FakeBackend (tests/fakes.py)."""
    from runctl.backends.base import Handle
    from runctl.status import RunStatus
    from runctl.testing import FakeBackend

    store = any_store
    run_dir = tmp_path / "rundir"
    (run_dir / "logs").mkdir(parents=True)
    backend = FakeBackend(run_dir)
    record, _ = store.create_run("exp", handle=Handle("fake", "1", str(run_dir)).to_dict(), status=RunStatus.RUNNING)
    return store, backend, record.id


ALIVE_JOB = "from azureml.core import Run\nRun.get_context().log('alive', 1)\nprint('job ran')\n"


def kill_submits_at_random(proj: Project, job: Path, kills: int, seed: int, sig: int = 9) -> list[dict]:
    """SIGKILL (or ``sig``: SIGINT is a Ctrl-C) `runctl submit JOB` (a job made from
    ALIVE_JOB) at random instants of its path (a third across all of it, the rest across its
    second half, where the record, the run directory and the launcher are made); wait for
    every run; check that each ended true (ran, with its metric and log line, or recorded as
    never run). Returns the final runs."""
    import random

    t0 = time.monotonic()
    proj.cli("submit", str(job), "-q", check=True)
    whole = time.monotonic() - t0
    rng = random.Random(seed)
    for i in range(kills):
        p = proj.popen("submit", str(job), "-q")
        time.sleep(rng.uniform(0, whole * 1.1) if i % 3 == 0 else rng.uniform(whole * 0.5, whole * 1.05))
        p.send_signal(sig)
        p.communicate()
    for r in proj.cli("list", "--json", "--limit", "0", check=True).json():
        proj.cli("wait", r["id"], "--timeout", "90")
    time.sleep(1.0)  # a launcher still on its way would have started the job by now
    final: list[dict] = proj.cli("list", "--json", "--limit", "0", check=True).json()
    for r in final:
        if r["status"] == "Completed":
            assert proj.cli("metrics", r["id"], "--json", check=True).json() == {"alive": 1}
            assert "job ran" in proj.cli("logs", r["id"], check=True).out
        else:
            assert r["status"] == "Failed" and "never ran" in r["error"], r
            assert "job ran" not in proj.cli("logs", r["id"]).out
    return final


def require_service(name: str, available: bool, how: str) -> None:
    """Skip when a real service is missing on a developer's machine; in CI (CI=true) fail."""
    if available:
        return
    message = f"{name} is not available: {how}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI must bring it up: tests/infra/up.sh)")
    pytest.skip(message)
