"""The team store (PostgreSQL + a shared artifacts folder) against this machine's SQLite
store, measured in one run on the same machine (issue 21):

- ingest: one `runctl wait` syncing a run that logged N values (1,000,000);
- `runctl list --limit 0` of 1,000 runs (median of R), beside the database's own CLI;
- a teammate's submit of code already in the shared store: what it adds to the artifacts.

    python bench/bench_team.py [--quick] [--url postgresql://ROLE@HOST:PORT/postgres]

It makes a database of its own on that server (the role must be allowed to), runs `runctl
store init` there, and drops it afterwards. Default: the tests' server
(tests/infra/up-postgres.sh) as its admin role. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cli_env  # noqa: E402

PG_STATE = Path(os.environ.get("RUNCTL_TEST_PG_STATE", "/var/lib/runctl-test-pg"))
DEFAULT_URL = f"postgresql://runctl_test_admin@127.0.0.1:{os.environ.get('RUNCTL_TEST_PG_PORT', '55433')}/postgres"


def runctl(*args: str, cwd: Path, env: dict[str, str], check: bool = True) -> str:
    p = subprocess.run([sys.executable, "-m", "runctl", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"runctl {' '.join(args)}: {p.stderr}")
    return p.stdout


def median_time(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ingest(proj: Path, env: dict[str, str], n: int) -> float:
    (proj / "t.py").write_text(f"from azureml.core import Run\nr = Run.get_context()\n"
                               f"for i in range({n}):\n    r.log('loss', 0.5, step=i)\n")
    (proj / "job.yaml").write_text("script: t.py\nexperiment: ingest\n")
    run_id = runctl("submit", "job.yaml", "-q", cwd=proj, env=env).strip()
    status = Path(env["RUNCTL_HOME"]) / "work" / run_id / "status.json"
    while '"finished"' not in (status.read_text() if status.exists() else ""):
        time.sleep(0.2)
    t0 = time.perf_counter()
    runctl("wait", run_id, cwd=proj, env=env)
    took = time.perf_counter() - t0
    got = runctl("metrics", run_id, "--name", "loss", "--json", cwd=proj, env=env)
    assert got.count("0.5") == n, "every value stored once"
    return took


def fill(store: object, n: int) -> None:
    from runctl.status import RunStatus

    for i in range(n):
        rec, _ = store.create_run(f"exp{i % 7}", status=RunStatus.COMPLETED, compute_target="local",  # type: ignore[attr-defined]
                                  exit_code=0)
        store.update(rec.id, synced=True)  # type: ignore[attr-defined]


def main() -> None:
    import psycopg

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="10,000 values, 3 repetitions")
    ap.add_argument("--url", default=DEFAULT_URL, help="a server and a role that may create databases")
    args = ap.parse_args()
    n, repeat = (10_000, 3) if args.quick else (1_000_000, 9)
    os.environ.setdefault("PGPASSFILE", str(PG_STATE / "pgpass"))
    name = f"runctl_bench_{secrets.token_hex(4)}"
    base_url = args.url.rsplit("/", 1)[0]
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{base_url}/{name}"
    tmp = Path(tempfile.mkdtemp(prefix="runctl-bench-team-"))
    try:
        from runctl.store.pgschema import init

        with psycopg.connect(url, autocommit=True) as conn:
            init(conn)
        local = cli_env(RUNCTL_HOME=str(tmp / "local-home"))
        local.pop("RUNCTL_STORE", None)
        team = cli_env(RUNCTL_HOME=str(tmp / "team-home"), RUNCTL_STORE=url, RUNCTL_ARTIFACTS=str(tmp / "shared"))
        rows = []
        for label, env in (("SQLite (this machine)", local), ("PostgreSQL (team store)", team)):
            proj = tmp / f"proj-{label[:3]}"
            proj.mkdir()
            rows.append((label, ingest(proj, env, n)))
        print(f"Team store against SQLite, this machine, one run ({n:,} values; medians of {repeat})\n")
        print("| what | SQLite | PostgreSQL | ratio |\n|---|---|---|---|")
        (_, s), (_, p) = rows
        print(f"| ingest {n:,} logged values (one `runctl wait`) | {s:.2f} s | {p:.2f} s | {p / s:.2f}x |")
        from runctl.store.postgres import PgStore
        from runctl.store.sqlite import Store

        sq = Store(tmp / "list-local")
        fill(sq, 1000)
        sq.close()
        pg = PgStore(url, tmp / "list-shared", tmp / "list-team")
        fill(pg, 1000)
        pg.close()
        lenv = cli_env(RUNCTL_HOME=str(tmp / "list-local"))
        tenv = cli_env(RUNCTL_HOME=str(tmp / "list-team"), RUNCTL_STORE=url, RUNCTL_ARTIFACTS=str(tmp / "list-shared"))
        cmd = [sys.executable, "-m", "runctl", "list", "--limit", "0", "--json"]
        ls = median_time(lambda: subprocess.run(cmd, env=lenv, capture_output=True, check=True), repeat)
        lp = median_time(lambda: subprocess.run(cmd, env=tenv, capture_output=True, check=True), repeat)
        print(f"| `runctl list --limit 0 --json`, 1,000 runs | {ls * 1000:.0f} ms | {lp * 1000:.0f} ms | "
              f"{lp / ls:.2f}x |")
        if shutil.which("psql") and shutil.which("sqlite3"):
            ps = median_time(lambda: subprocess.run(["sqlite3", str(tmp / "list-local" / "runctl.db"),
                                                     "SELECT * FROM runs"], capture_output=True, check=True), repeat)
            pp = median_time(lambda: subprocess.run(["psql", url, "-qAtc", "SELECT * FROM runs"], capture_output=True,
                                                    check=True), repeat)
            print(f"| the database's own CLI, `SELECT * FROM runs` (sqlite3, psql) | {ps * 1000:.0f} ms | "
                  f"{pp * 1000:.0f} ms | {pp / ps:.2f}x |")
        # a teammate submits the same code: nothing new in the shared objects
        proj = tmp / "dedup"
        proj.mkdir()
        for i in range(200):
            (proj / f"m{i}.py").write_text(f"X = {i}\n" * 2000)
        (proj / "job.yaml").write_text("script: m0.py\nexperiment: dedup\n")
        objects = tmp / "shared" / "objects"

        def stored() -> tuple[int, int]:
            files = [f for f in objects.rglob("*") if f.is_file()]
            return len(files), sum(f.stat().st_size for f in files)

        runctl("submit", "job.yaml", "-q", "--wait", cwd=proj, env=team)
        before = stored()
        mate = {**team, "RUNCTL_HOME": str(tmp / "mate-home")}
        t0 = time.perf_counter()
        runctl("submit", "job.yaml", "-q", cwd=proj, env=mate)
        took = time.perf_counter() - t0
        after = stored()
        print(f"| a teammate's submit of the same 200 files (another machine folder) | | {took * 1000:.0f} ms, "
              f"{after[0] - before[0]} objects ({after[1] - before[1]} bytes) added | |\n")
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
