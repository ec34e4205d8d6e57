"""The team store (issue 21) end to end: two teammates (PostgreSQL roles alice and bob, each
with a machine folder of their own) on one database (the tests' own server,
tests/infra/up-postgres.sh) and one shared artifacts folder. The store-level behaviour
(ingest once, offsets, metric batches, hardening of sync) runs on both stores through the
``fake`` fixture (tests/conftest.py)."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import PG_PORT, PG_STATE, Project, TeamDb, wait_for

LONG = """
import time
from azureml.core import Run
run = Run.get_context()
for i in range(400):
    run.log("loss", 1 / (i + 1))
    time.sleep(0.05)
"""
MANY = """
from azureml.core import Run
run = Run.get_context()
for i in range(3000):
    run.log("x", i)
print("done", flush=True)
"""


class Teammate:
    def __init__(self, name: str, project: Project, db: TeamDb, artifacts: Path, tmp_path: Path) -> None:
        self.name, self.project = name, project
        self.env = db.env(name, artifacts, tmp_path / f"{name}-machine")

    def cli(self, *args: str, **kw: Any) -> Any:
        return self.project.cli(*args, env=self.env, **kw)


@pytest.fixture
def team(project: Project, team_db: TeamDb, tmp_path: Path) -> tuple[Teammate, Teammate]:
    artifacts = tmp_path / "shared"
    return (Teammate("alice", project, team_db, artifacts, tmp_path),
            Teammate("bob", project, team_db, artifacts, tmp_path))


def test_two_teammates_see_each_others_runs_and_only_the_submitter_cancels(project: Project, team: Any,
                                                                           team_db: TeamDb) -> None:
    alice, bob = team
    quick = project.script_job("from azureml.core import Run\nRun.get_context().log('acc', 0.5)\n", name="quick.yaml")
    long = project.script_job(LONG, name="long.yaml")
    mine = bob.cli("submit", str(quick), "-q", "--wait", check=True).out.strip()
    theirs = alice.cli("submit", str(long), "-q", check=True).out.strip()
    wait_for(lambda: bob.cli("status", theirs).out.strip() == "Running", 60, what="alice's run running")
    for who in (alice, bob):
        listed = {r["id"]: r for r in who.cli("list", "--json", check=True).json()}
        assert listed[mine]["user"] == "bob" and listed[theirs]["user"] == "alice", listed
        assert "USER" in who.cli("list", check=True).out
    assert [r["id"] for r in bob.cli("list", "--mine", "--json", check=True).json()] == [mine]
    assert [r["id"] for r in bob.cli("list", "--user", "alice", "--json", check=True).json()] == [theirs]
    assert bob.cli("metrics", mine, "--json", check=True).json() == {"acc": 0.5}
    assert alice.cli("metrics", mine, "--json", check=True).json() == {"acc": 0.5}, "a teammate's metrics"
    # bob may not cancel alice's run: the database refuses, nothing is half-done
    r = bob.cli("cancel", theirs)
    assert r.rc == 2 and "belongs to alice" in r.err, (r.rc, r.err)
    assert bob.cli("status", theirs).out.strip() == "Running"
    # ... nor can he with psql: the policies are the database's
    import psycopg

    with psycopg.connect(team_db.url("bob"), autocommit=True) as conn:
        for sql in (f"UPDATE runs SET status = 'CancelRequested' WHERE id = '{theirs}'",
                    f"UPDATE runs SET display_name = 'mine now' WHERE id = '{theirs}'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        assert conn.execute(f"DELETE FROM runs WHERE id = '{theirs}'").rowcount == 0
        assert conn.execute(f"DELETE FROM tags WHERE run_id = '{theirs}'").rowcount == 0
        assert conn.execute(f"UPDATE metrics SET value = '0' WHERE run = (SELECT rk FROM runs WHERE id = "
                            f"'{theirs}')").rowcount == 0
    follower = subprocess.Popen([sys.executable, "-m", "runctl", "logs", theirs, "--follow"], cwd=project.root,
                                env={**__import__("os").environ, **bob.env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    # alice may
    assert alice.cli("cancel", theirs).rc == 0
    follower.communicate(timeout=60)
    from runctl.errors import ExitCode

    assert follower.returncode == ExitCode.CANCELED, "a teammate follows the run's log until it ends (canceled)"
    done = alice.cli("wait", theirs, timeout=60)
    assert alice.cli("status", theirs).out.strip() == "Canceled", done.err
    assert bob.cli("show", theirs, "--json", check=True).json()["status"] == "Canceled"
    # a teammate reruns from the shared snapshot: the run is his
    again = bob.cli("rerun", mine, "-q", "--wait", check=True).out.strip()
    shown = alice.cli("show", again, "--json", check=True).json()
    assert shown["status"] == "Completed" and shown["snapshotId"] == alice.cli(
        "show", mine, "--json", check=True).json()["snapshotId"]
    assert [r["user"] for r in alice.cli("list", "--json", check=True).json() if r["id"] == again] == ["bob"]


def test_two_teammates_waiting_on_one_run_store_each_value_once(project: Project, team: Any) -> None:
    alice, bob = team
    job = project.script_job(MANY, name="many.yaml")
    rid = alice.cli("submit", str(job), "-q", check=True).out.strip()
    procs = [subprocess.Popen([sys.executable, "-m", "runctl", "wait", rid], cwd=project.root,
                              env={**__import__("os").environ, **who.env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for who in (alice, bob, alice, bob)]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    values = bob.cli("metrics", rid, "--json", check=True).json()["x"]
    assert values == list(range(3000)), "every value once, in order"
    assert alice.cli("logs", rid, check=True).out.count("done") == 1


def test_twenty_concurrent_submits_from_two_teammates_lose_nothing(project: Project, team: Any) -> None:
    alice, bob = team
    job = project.script_job("print('hi')\n", name="hi.yaml")
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: (alice, bob)[i % 2].cli("submit", str(job), "-q"), range(20)))
    assert all(r.rc == 0 for r in results), [r.err for r in results if r.rc]
    ids = {r.out.strip() for r in results}
    listed = alice.cli("list", "--json", "--limit", "0", check=True).json()
    assert {r["id"] for r in listed} == ids and sorted(r["number"] for r in listed) == list(range(1, 21))
    assert sorted(r["user"] for r in listed) == ["alice"] * 10 + ["bob"] * 10
    assert all("locked" not in r.err for r in results)


def test_a_password_in_the_url_is_refused_and_an_unreachable_store_is_exit_4(project: Project, team: Any,
                                                                              tmp_path: Path) -> None:
    alice, _ = team
    project.root.joinpath(".runctl").mkdir(exist_ok=True)
    cfg = project.root / ".runctl" / "config.yaml"
    cfg.write_text(f"store: postgresql://alice:secret@127.0.0.1:{PG_PORT}/x\nartifacts: {tmp_path / 'a'}\n")
    env = {k: v for k, v in alice.env.items() if k not in ("RUNCTL_STORE", "RUNCTL_ARTIFACTS")}
    r = project.cli("list", env=env)
    assert r.rc == 2 and f"{cfg}:1" in r.err and "password" in r.err and "pgpass" in r.err, r.err
    assert "secret" not in r.err and "secret" not in r.out
    cfg.write_text(f"store: postgresql://alice@127.0.0.1:1/x\nartifacts: {tmp_path / 'a'}\n")
    started = time.monotonic()
    r = project.cli("list", env=env)
    assert r.rc == 4 and "did not answer" in r.err, (r.rc, r.err)
    assert time.monotonic() - started < 60
    cfg.write_text(f"store: postgresql://alice@127.0.0.1:{PG_PORT}/no_such_db\nartifacts: {tmp_path / 'a'}\n")
    r = project.cli("list", env=env)
    assert r.rc == 2 and "refused the connection" in r.err and "no_such_db" in r.err, r.err
    cfg.write_text(f"store: postgresql://alice@127.0.0.1:{PG_PORT}/x\nartifacts: gs://bucket/prefix\n")
    r = project.cli("list", env=env)
    assert r.rc == 2 and "artifacts gs://bucket/prefix" in r.err and "s3://" in r.err, r.err


def test_a_database_with_a_newer_schema_is_not_written(project: Project, team: Any, team_db: TeamDb) -> None:
    alice, _ = team
    with team_db.admin() as conn:
        conn.execute("UPDATE runctl_meta SET value = '99' WHERE key = 'schema_version'")
        conn.execute("UPDATE runctl_meta SET value = '7.1.0' WHERE key = 'runctl_version'")
    job = project.script_job("print('hi')\n", name="hi.yaml")
    r = alice.cli("submit", str(job))
    assert r.rc == 2 and "schema version 99" in r.err and "install runctl 7.1.0 or newer" in r.err, r.err
    with team_db.admin() as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
        conn.execute("UPDATE runctl_meta SET value = '1' WHERE key = 'schema_version'")


def test_store_init_is_idempotent_and_needs_a_role_that_may(project: Project, team: Any, team_db: TeamDb) -> None:
    alice, _ = team
    admin_env = {**alice.env, "PGUSER": "runctl_test_admin", "RUNCTL_STORE": team_db.url("runctl_test_admin")}
    r = project.cli("store", "init", env=admin_env)
    assert r.rc == 0 and "up to date" in r.out, (r.out, r.err)
    r = alice.cli("store", "init")
    assert r.rc == 2 and "may create tables and roles" in r.err, r.err


def test_the_portal_serves_the_teams_runs(project: Project, team: Any) -> None:
    import httpx

    alice, bob = team
    job = project.script_job("from azureml.core import Run\nRun.get_context().log('acc', 0.5)\n", name="quick.yaml")
    a = alice.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    b = bob.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    p = subprocess.Popen([sys.executable, "-m", "runctl", "ui", "--port", "0"], cwd=project.root,
                         env={**__import__("os").environ, **bob.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        base = p.stdout.readline().strip().split("?")[0].rstrip("/")  # type: ignore[union-attr]
        runs = httpx.get(f"{base}/api/runs", timeout=30).json()
        ids = {r["id"] for r in (runs["runs"] if isinstance(runs, dict) else runs)}
        assert {a, b} <= ids
        assert httpx.get(f"{base}/api/runs/{a}", timeout=30).json()["status"] == "Completed"
    finally:
        p.terminate()
        p.communicate(timeout=20)


_ = PG_STATE


PUSHED = """
from azureml.core import Run
run = Run.get_context()
for i in range(500):
    run.log("loss", 1 / (i + 1))
run.tag("kind", "local")
child = run.child_run("fold-1")
child.log("acc", 0.75)
child.complete()
import os
os.makedirs("outputs", exist_ok=True)
open("outputs/model.txt", "w").write("weights")
print("trained", flush=True)
"""


def test_store_push_copies_local_runs_whole_once_even_when_killed(project: Project, team: Any,
                                                                  tmp_path: Path) -> None:
    import random
    import signal

    alice, bob = team
    job = project.script_job(PUSHED, name="local.yaml")
    local_env = {**alice.env}
    del local_env["RUNCTL_STORE"]  # alice's machine before the team store: her own SQLite folder
    ids = [project.cli("submit", str(job), "-q", "--wait", env=local_env, check=True).out.strip() for _ in range(4)]
    assert alice.cli("list", "--json", check=True).json() == []
    rng = random.Random(5)
    for _ in range(4):  # pushes killed at random instants
        p = subprocess.Popen([sys.executable, "-m", "runctl", "store", "push"], cwd=project.root,
                             env={**__import__("os").environ, **alice.env}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 1.2))
        p.send_signal(signal.SIGKILL)
        p.communicate()
    done = alice.cli("store", "push", "--json", check=True).json()
    again = alice.cli("store", "push", "--json", check=True).json()
    assert again["copied"] == [] and len(again["already_there"]) == 8, "a second push copies nothing"
    assert len(done["copied"]) + len(done["already_there"]) == 8  # 4 runs and their children
    listed = bob.cli("list", "--json", check=True).json()
    assert sorted(r["id"] for r in listed) == sorted(ids) and all(r["user"] == "alice" for r in listed)
    for rid in ids:
        m = bob.cli("metrics", rid, "--json", "--recursive", check=True).json()
        assert m[rid]["loss"] == [1 / (i + 1) for i in range(500)], "every value, once"
        assert [v["acc"] for k, v in m.items() if k != rid] == [0.75]
        assert "trained" in bob.cli("logs", rid, check=True).out
        shown = bob.cli("show", rid, "--json", check=True).json()
        assert shown["tags"]["kind"] == "local"
        out = tmp_path / f"out-{rid}"
        assert [p.name for p in (Path(x) for x in bob.cli("outputs", rid, str(out), check=True).out.split())] == \
            ["model.txt"]
    rerun = bob.cli("rerun", ids[0], "-q", "--wait")
    assert rerun.rc == 0, "the snapshot came along: a teammate reruns it"
    assert project.cli("list", "--json", env=local_env, check=True).json(), "the local store still works"


API = """
import sys
from runctl import Experiment, Run, ScriptRunConfig, Workspace

ws = Workspace.from_config()
exp = Experiment(ws, "api")
run = exp.start_logging(snapshot_directory=None)
for i in range(5):
    run.log("x", i)
run.tag("where", "notebook")
run.complete()
submitted = exp.submit(ScriptRunConfig(source_directory=sys.argv[1], script="reg.py"))
submitted.wait_for_completion()
print("IDS", run.id, submitted.id, sorted(Run.get(ws, run.id).get_metrics()["x"]))
"""
REGISTER = """
import os
from azureml.core import Run
run = Run.get_context()
os.makedirs("outputs", exist_ok=True)
open("outputs/m.pkl", "w").write("m")
run.register_model("clf", model_path="outputs/m.pkl")
"""


def test_the_python_api_interactive_runs_sweeps_models_and_gc_on_the_team_store(project: Project, team: Any) -> None:
    import os

    alice, bob = team
    project.write("reg.py", REGISTER)
    script = project.root / "api.py"
    script.write_text(API)
    p = subprocess.run([sys.executable, str(script), str(project.src)], cwd=project.root, capture_output=True,
                       text=True, env={**os.environ, **alice.env}, timeout=120)
    assert p.returncode == 0, p.stderr
    interactive, submitted, values = p.stdout.split("IDS ")[1].split(" ", 2)
    assert values.strip() == "[0, 1, 2, 3, 4]"
    assert bob.cli("metrics", interactive, "--json", check=True).json() == {"x": [0, 1, 2, 3, 4]}
    assert bob.cli("show", interactive, "--json", check=True).json()["tags"]["where"] == "notebook"
    models = bob.cli("models", "--json", check=True).json()
    assert [(m["name"], m["version"], m["run_id"]) for m in models] == [("clf", 1, submitted)]
    sweep_job = project.script_job("import sys\nfrom azureml.core import Run\n"
                                   "Run.get_context().log('lr', float(sys.argv[2]))\n", name="sweep.yaml")
    parent = bob.cli("submit", str(sweep_job), "-q", "--sweep", "lr=0.1,0.2", "--wait", check=True).out.strip()
    kids = alice.cli("metrics", parent, "--recursive", "--json", check=True).json()
    assert sorted(v["lr"] for v in kids.values()) == [0.1, 0.2]
    r = alice.cli("gc", "--dry-run")
    assert r.rc == 0, r.err


STEADY = """
import time
from azureml.core import Run
run = Run.get_context()
for i in range(60):
    run.log("x", i)
    time.sleep(0.1)
print("job done", flush=True)
"""


@pytest.fixture
def own_postgres(tmp_path: Path) -> Any:
    """A PostgreSQL cluster of this test's own (its data folder, port and socket), which the
    test may stop and start: the shared test server is never stopped."""
    import secrets
    import shutil
    import socket

    from .conftest import pg_ready, require_service

    require_service("the test PostgreSQL", pg_ready(), "run tests/infra/up-postgres.sh")
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    data = PG_STATE / f"outage-{secrets.token_hex(4)}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def as_pg(*cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120)

    as_pg(str(bindir / "initdb"), "-D", str(data / "data"), "-U", "postgres", "--auth-host=trust",
          "--auth-local=trust")
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"

    def start() -> None:
        as_pg(str(bindir / "pg_ctl"), "-D", str(data / "data"), "-l", str(data / "log"), "-w", "-o", opts, "start")

    def stop() -> None:
        as_pg(str(bindir / "pg_ctl"), "-D", str(data / "data"), "-w", "-m", "fast", "stop")

    start()
    import psycopg

    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        from runctl.store.pgschema import init

        init(conn)
        conn.execute("CREATE ROLE alice LOGIN")
        conn.execute("GRANT runctl_users TO alice")
    try:
        yield f"postgresql://alice@127.0.0.1:{port}/postgres", start, stop
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D", str(data / "data"), "-w",
                        "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_the_database_down_mid_run_costs_the_job_nothing_and_commands_catch_up(project: Project, own_postgres: Any,
                                                                                tmp_path: Path) -> None:
    import os

    url, start, stop = own_postgres
    env = {"RUNCTL_STORE": url, "RUNCTL_ARTIFACTS": str(tmp_path / "shared"), "RUNCTL_HOME": str(tmp_path / "me"),
           "RUNCTL_UNREACHABLE_PATIENCE_S": "90"}
    job = project.script_job(STEADY, name="steady.yaml")
    rid = project.cli("submit", str(job), "-q", env=env, check=True).out.strip()
    waiter = subprocess.Popen([sys.executable, "-m", "runctl", "wait", rid], cwd=project.root,
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    stop()
    r = project.cli("status", rid, env={**env, "RUNCTL_UNREACHABLE_PATIENCE_S": "0"})
    assert r.rc == 4 and "did not answer" in r.err, (r.rc, r.err)
    status = tmp_path / "me" / "work" / rid / "status.json"
    wait_for(lambda: '"finished"' in (status.read_text() if status.exists() else ""), 60,
             what="the job to finish with its database down")
    start()
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    assert "retrying" in err, "the waiting command said what it waits for"
    assert project.cli("metrics", rid, "--json", env=env, check=True).json()["x"] == list(range(60)), \
        "every value logged while the database was down, once"
    assert "job done" in project.cli("logs", rid, env=env, check=True).out


OUTPUT = """
import os
from azureml.core import Run
run = Run.get_context()
for i in range(20):
    run.log("loss", 1 / (i + 1))
os.makedirs("outputs", exist_ok=True)
open("outputs/weights.bin", "wb").write(os.urandom(200_000))
print("trained here", flush=True)
"""


def test_artifacts_in_an_s3_bucket_reach_a_teammate_with_no_shared_folder(project: Project, team_db: TeamDb,
                                                                           s3_bucket: str, tmp_path: Path) -> None:
    import boto3

    from .conftest import S3_ENV

    alice = {**team_db.env("alice", tmp_path / "unused", tmp_path / "alice-machine"), **S3_ENV,
             "RUNCTL_ARTIFACTS": s3_bucket}
    bob = {**team_db.env("bob", tmp_path / "unused", tmp_path / "bob-machine"), **S3_ENV, "RUNCTL_ARTIFACTS": s3_bucket}
    for i in range(30):
        project.write(f"lib/m{i}.py", f"X = {i}\n" * 100)
    job = project.script_job(OUTPUT, name="out.yaml")
    rid = project.cli("submit", str(job), "-q", "--wait", env=alice, check=True).out.strip()
    bucket, prefix = s3_bucket[5:].split("/", 1)
    client = boto3.client("s3")

    def keys() -> set[str]:
        return {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", [])}

    have = keys()
    assert any(k.startswith(f"{prefix}/runs/{rid}/outputs/weights.bin") for k in have), have
    assert sum(k.startswith(f"{prefix}/objects/") for k in have) >= 31 and \
        sum(k.startswith(f"{prefix}/snapshots/") for k in have) == 1
    # bob's machine has nothing of it: logs, outputs and the code come from the bucket
    assert "trained here" in project.cli("logs", rid, env=bob, check=True).out
    out = tmp_path / "bob-outputs"
    project.cli("outputs", rid, str(out), env=bob, check=True)
    assert (out / "weights.bin").stat().st_size == 200_000
    assert (out / "weights.bin").read_bytes() == (tmp_path / "alice-machine" / "artifacts-cache" / "runs" / rid /
                                                  "outputs" / "weights.bin").read_bytes()
    again = project.cli("rerun", rid, "-q", "--wait", env=bob, check=True).out.strip()
    assert project.cli("metrics", again, "--json", env=alice, check=True).json()["loss"][-1] == 1 / 20
    # bob's submit of the same code uploads no object
    before = {k for k in keys() if k.startswith(f"{prefix}/objects/")}
    project.cli("submit", str(job), "-q", "--wait", env=bob, check=True)
    assert {k for k in keys() if k.startswith(f"{prefix}/objects/")} == before
    # a bucket that does not exist is one clear error
    r = project.cli("submit", str(job), env={**alice, "RUNCTL_ARTIFACTS": "s3://no-such-bucket-runctl/x"})
    assert r.rc == 2 and "does not exist" in r.err, (r.rc, r.err)


@pytest.mark.parametrize("kind", ["ssh", "slurm"])
def test_jobs_on_ssh_and_slurm_targets_are_recorded_in_the_team_store(kind: str, tmp_path: Path, home: Path,
                                                                       team_db: TeamDb) -> None:
    from .conftest import require_service
    from .test_slurm_backend import local_target, slurm_ready
    from .test_ssh_backend import ssh_ready
    from .test_ssh_backend import target as ssh_target

    if kind == "ssh":
        require_service("the test sshd", ssh_ready(), "run tests/infra/up-ssh.sh")
        targets = {"far": ssh_target(work_dir=str(tmp_path / "far work"))}
    else:
        require_service("the test Slurm cluster", slurm_ready(), "run tests/infra/up-slurm.sh")
        targets = {"far": local_target(tmp_path)}
    proj = Project(tmp_path / "proj", targets)
    job = proj.script_job("from azureml.core import Run\nrun = Run.get_context()\nrun.log('where', 1)\n"
                          "print('ran far', flush=True)\n", compute_target="far")
    shared = tmp_path / "shared"
    alice = team_db.env("alice", shared, tmp_path / "alice-machine")
    bob = team_db.env("bob", shared, tmp_path / "bob-machine")
    rid = proj.cli("submit", str(job), "-q", "--wait", env=alice, check=True).out.strip()
    assert proj.cli("metrics", rid, "--json", env=bob, check=True).json() == {"where": 1}
    assert "ran far" in proj.cli("logs", rid, env=bob, check=True).out
    assert [r["user"] for r in proj.cli("list", "--json", env=bob, check=True).json()] == ["alice"]


def test_both_stores_have_one_schema(team_db: TeamDb, tmp_path: Path) -> None:
    """One migration path: the team store's tables and columns are the SQLite store's, at
    the same version (runctl.store.sqlite.BASE_DDL + UPGRADES, in each dialect's types)."""
    from runctl.store.sqlite import SCHEMA_VERSION, Store

    sq = Store(tmp_path / "sq")
    tables = ("experiments", "runs", "metrics", "tags", "properties", "models")
    lite = {t: [r[1] for r in sq.db.execute(f"PRAGMA table_info({t})")] for t in tables}
    assert sq.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    sq.close()
    with team_db.admin() as conn:
        pg = {t: [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                              "ORDER BY ordinal_position", (t,))] for t in tables}
        version = conn.execute("SELECT value FROM runctl_meta WHERE key = 'schema_version'").fetchone()[0]
    assert pg == lite and int(version) == SCHEMA_VERSION
