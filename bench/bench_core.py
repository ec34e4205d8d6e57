"""Core benchmarks: run.log() cost, CLI start-up, `runctl list` with 1,000 runs, a job on the
local backend, snapshot time, a million values' sync.

    python bench/bench_core.py [--quick]

Prints a Markdown table (medians; ratios against the raw tool or a naive peer measured
in the same run). Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from common import cli_env, first_line

ROWS: list[tuple[str, str, str, str]] = []


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(what: str, ours: str, peer: str, ratio: str) -> None:
    ROWS.append((what, ours, peer, ratio))
    print(f"  {what}: {ours} | {peer} | {ratio}", file=sys.stderr)


LOG_LOOP = textwrap.dedent("""
    import json, os, statistics, sys, time
    n, repeat, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    per_call = []
    if mode == "runctl":
        from runctl.job.context import Run
        run = Run.get_context()
        assert not run.id.startswith("OfflineRun")
        log = run.log
        for r in range(repeat):
            t0 = time.perf_counter_ns()
            for i in range(n):
                log("loss", 0.5, step=i)
            per_call.append((time.perf_counter_ns() - t0) / n / 1000)
        t0 = time.perf_counter_ns()
        run.flush()
        flush_ms = (time.perf_counter_ns() - t0) / 1e6
    else:
        f = open(os.path.join(os.environ["RUNCTL_RUN_DIR"], "naive.jsonl"), "a")
        for r in range(repeat):
            t0 = time.perf_counter_ns()
            for i in range(n):
                f.write(json.dumps({"k": "scalar", "n": "loss", "v": 0.5, "s": i, "t": time.time()}) + "\\n")
                f.flush()
            per_call.append((time.perf_counter_ns() - t0) / n / 1000)
        flush_ms = 0.0
    print(json.dumps({"median_us": statistics.median(per_call), "flush_ms": flush_ms}))
""")


def bench_log(tmp: Path, n: int, repeat: int) -> None:
    run_dir = tmp / "logrun"
    run_dir.mkdir()
    env = dict(os.environ, RUNCTL_RUN_ID="bench", RUNCTL_RUN_DIR=str(run_dir), RUNCTL_EXPERIMENT="bench")
    res = {}
    for mode in ("runctl", "naive"):
        out = subprocess.run([sys.executable, "-c", LOG_LOOP, str(n), str(repeat), mode], env=env,
                             capture_output=True, text=True, check=True).stdout
        res[mode] = json.loads(out)
    with open(run_dir / "events.jsonl") as f:  # values, not lines: a batch of one metric's values is one line
        logged = sum(e["c"] if e["k"] == "scalars" else 1 for e in map(json.loads, f))
    assert logged == n * repeat, (logged, n * repeat)
    ours, naive = res["runctl"]["median_us"], res["naive"]["median_us"]
    row(f"run.log() per call, {n:,} calls (median of {repeat})", f"{ours:.2f} µs",
        f"naive JSON line + flush per call: {naive:.2f} µs", f"{naive / ours:.1f}x faster")


def _runctl_cmd() -> str:
    """The console script next to this Python (not a pyenv shim, which adds its own start-up)."""
    exe = Path(sys.executable).parent / "runctl"
    return str(exe) if exe.exists() else f"{sys.executable} -m runctl"


def bench_help(tmp: Path, repeat: int) -> None:
    minimal = tmp / "minimal_typer.py"
    minimal.write_text("import typer\napp = typer.Typer()\n\n@app.command()\ndef hello(name: str = 'x') -> None:\n"
                       "    print(name)\n\n@app.command()\ndef bye() -> None:\n    pass\n\napp()\n")
    runctl = _runctl_cmd()
    ours = median_time(lambda: subprocess.run([*runctl.split(), "--help"], capture_output=True, check=True), repeat)
    peer = median_time(lambda: subprocess.run([sys.executable, str(minimal), "--help"], capture_output=True, check=True),
                       repeat)
    row(f"`runctl --help` (median of {repeat})", f"{ours * 1000:.0f} ms", f"minimal Typer app: {peer * 1000:.0f} ms",
        f"{ours / peer:.2f}x")


def bench_list(tmp: Path, repeat: int) -> None:
    from runctl.status import RunStatus
    from runctl.store.sqlite import Store

    home = tmp / "listhome"
    store = Store(home)
    for i in range(1000):
        rec, _ = store.create_run(f"exp{i % 7}", status=RunStatus.COMPLETED, compute_target="local", exit_code=0)
        store.update(rec.id, synced=True)
    store.close()
    env = cli_env(RUNCTL_HOME=str(home))
    runctl = _runctl_cmd()
    for args in (["list", "--limit", "0"], ["list", "--limit", "0", "--json"]):
        ours = median_time(lambda a=args: subprocess.run([*runctl.split(), *a], env=env, capture_output=True, check=True),
                           repeat)
        peer = median_time(lambda: subprocess.run(["sqlite3", str(home / "runctl.db"), "SELECT * FROM runs"],
                                                  capture_output=True, check=True), repeat) if shutil.which("sqlite3") else None
        row(f"`runctl {' '.join(args)}`, 1,000 runs (median of {repeat})", f"{ours * 1000:.0f} ms",
            f"sqlite3 CLI SELECT *: {peer * 1000:.0f} ms" if peer else "-", f"{ours / peer:.1f}x" if peer else "-")


def bench_snapshot(tmp: Path, repeat: int) -> None:
    from runctl.store.snapshot import list_source, take_snapshot
    from runctl.store.sqlite import Store

    def make_tree(root: Path, salt: str) -> Path:
        for i in range(2000):
            p = root / f"pkg{i % 40}" / f"mod{i}.py"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"# module {i} {salt}\n" + "x = 1\n" * (i % 50))
        with open(root / "weights.bin", "wb") as f:
            f.write(os.urandom(50 << 20))
        old = time.time() - 60
        for p in root.rglob("*"):
            os.utime(p, (old, old))
        return root

    src = make_tree(tmp / "tree", "")

    def snap(home: Path, tree: Path = src) -> None:
        store = Store(home)
        take_snapshot(list_source(tree), store.objects, store.stat_cache_get, store.stat_cache_put)
        store.close()

    def cp(tree: Path = src) -> None:
        dest = tmp / "cpdest"
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run(["cp", "-r", str(tree), str(dest)], check=True)

    colds, cps = [], []
    for i in range(repeat):  # interleaved: this machine's file creation speed drifts by 5x within minutes
        home = tmp / f"snaphome{i}"
        colds.append(median_time(lambda h=home: snap(h), 1))
        cps.append(median_time(cp, 1))
    cold, cp_time = statistics.median(colds), statistics.median(cps)
    cold_ratio = statistics.median(a / b for a, b in zip(colds, cps))
    warm = median_time(lambda: snap(tmp / "snaphome0"), repeat)
    # New code into a store that already has some (the usual cold case after the first
    # submit on a machine: no database or fan-out directories to create).
    news, new_cps = [], []
    for i in range(repeat):
        tree = make_tree(tmp / f"newtree{i}", f"salt {i}")
        news.append(median_time(lambda t=tree: snap(tmp / "snaphome0", t), 1))
        new_cps.append(median_time(lambda t=tree: cp(t), 1))
        shutil.rmtree(tree)
    new_ratio = statistics.median(a / b for a, b in zip(news, new_cps))
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    subprocess.run(["git", "-C", str(src), "add", "-A"], check=True)
    git_status = median_time(lambda: subprocess.run(["git", "-C", str(src), "status", "--porcelain"], capture_output=True,
                                                    check=True), repeat)
    row(f"snapshot cold, 2,000 files + 50 MB (median of {repeat}, each beside a `cp -r`)", f"{cold * 1000:.0f} ms",
        f"`cp -r` of the tree: {cp_time * 1000:.0f} ms", f"{cold_ratio:.1f}x (median of the pairs' ratios)")
    row(f"snapshot cold, 2,000 new files + 50 MB into a store that has others (median of {repeat}, each beside a "
        f"`cp -r`)", f"{statistics.median(news) * 1000:.0f} ms",
        f"`cp -r` of the tree: {statistics.median(new_cps) * 1000:.0f} ms", f"{new_ratio:.1f}x (median of the pairs' ratios)")
    row(f"snapshot warm, unchanged (median of {repeat})", f"{warm * 1000:.0f} ms",
        f"`git status` on the same tree: {git_status * 1000:.0f} ms", f"{warm / git_status:.1f}x")


def bench_sync(tmp: Path, n: int = 1_000_000) -> None:
    """Ingest ``n`` (1,000,000: a 67 MB events.jsonl) logged values in one sync, as `runctl wait` does."""
    proj = tmp / "syncproj"
    proj.mkdir()
    (proj / "t.py").write_text(f"from azureml.core import Run\nr = Run.get_context()\n"
                               f"for i in range({n}):\n    r.log('loss', 0.5, step=i)\n")
    (proj / "job.yaml").write_text("script: t.py\nexperiment: syncbench\n")
    env = cli_env(RUNCTL_HOME=str(tmp / "synchome"))
    cmd = _runctl_cmd().split()
    run_id = subprocess.run([*cmd, "submit", "job.yaml", "-q"], cwd=proj, env=env, capture_output=True, text=True,
                            check=True).stdout.strip()
    status = tmp / "synchome" / "work" / run_id / "status.json"
    while '"finished"' not in (status.read_text() if status.exists() else ""):
        time.sleep(0.2)
    size = (tmp / "synchome" / "work" / run_id / "events.jsonl").stat().st_size  # gone once synced
    t0 = time.perf_counter()
    subprocess.run([*cmd, "wait", run_id], cwd=proj, env=env, capture_output=True, check=True)
    took = time.perf_counter() - t0
    # Peers: the same million values as plain files, handled by the plainest tools.
    values = [0.5] * n
    csv_file, json_file = tmp / "values.csv", tmp / "values.json"
    csv_file.write_text("step,value,time\n" + "".join(f"{i},0.5,{1.8e9 + i * 1e-6!r}\n" for i in range(n)))
    json_file.write_text(json.dumps({"loss": values}))
    peer_ingest = None
    if shutil.which("sqlite3"):
        db = tmp / "peer.db"
        t0 = time.perf_counter()
        subprocess.run(["sqlite3", str(db), ".mode csv", f".import {csv_file} m"], check=True, capture_output=True)
        peer_ingest = time.perf_counter() - t0
    row(f"sync: ingest {n:,} logged values (one `runctl wait`)", f"{took:.2f} s ({n / took / 1000:.0f}k values/s)",
        f"`sqlite3 .import` of them as CSV: {peer_ingest:.2f} s" if peer_ingest else f"events.jsonl: {size / 1e6:.0f} MB",
        f"{took / peer_ingest:.1f}x" if peer_ingest else "-")
    t0 = time.perf_counter()
    out = subprocess.run([*cmd, "metrics", run_id, "--json"], cwd=proj, env=env, capture_output=True, check=True).stdout
    took = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import json, sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1]))))",
                    str(json_file)], capture_output=True, check=True)  # dumps, not dump: dump skips the C encoder
    peer = time.perf_counter() - t0
    row(f"`runctl metrics RUN --json` of those {n:,} values (get_metrics' dict, printed)", f"{took:.2f} s",
        f"`python -c print(json.dumps(json.load(f)))` of them: {peer:.2f} s; output {len(out) / 1e6:.0f} MB", f"{took / peer:.1f}x")
    os.environ["RUNCTL_HOME"] = env["RUNCTL_HOME"]
    from runctl.api import Experiment, Workspace

    ws = Workspace.from_config(str(proj))
    run = next(iter(Experiment(ws, "syncbench").get_runs()))
    t0 = time.perf_counter()
    got = run.get_metrics()
    took = time.perf_counter() - t0
    assert len(got["loss"]) == n
    t0 = time.perf_counter()
    json.loads(json_file.read_bytes())
    peer = time.perf_counter() - t0
    row(f"`run.get_metrics()` of those {n:,} values (Python API, in process)", f"{took:.2f} s",
        f"`json.loads` of them from one file: {peer:.2f} s", f"{took / peer:.1f}x")


def bench_local(tmp: Path, repeat: int) -> None:
    """A job on the default local backend: `submit --follow` to its first line, and a
    one-line job until `submit --wait` returns, against running the script directly."""
    proj = tmp / "localproj"
    proj.mkdir()
    (proj / "stream.py").write_text("import time; print(1, flush=True); time.sleep(0.5)\n")
    (proj / "one.py").write_text("print(1)\n")
    (proj / "stream.yaml").write_text("script: stream.py\nexperiment: localbench\n")
    (proj / "one.yaml").write_text("script: one.py\nexperiment: localbench\n")
    env = cli_env(RUNCTL_HOME=str(tmp / "localhome"))
    cmd = _runctl_cmd().split()
    subprocess.run([*cmd, "submit", "one.yaml", "--wait", "-q"], cwd=proj, env=env, capture_output=True, check=True)
    ours_first, raw_first, ours_total, raw_total = [], [], [], []
    for _ in range(repeat):  # interleaved, as this machine drifts
        ours_first.append(first_line([*cmd, "submit", "stream.yaml", "--follow"], proj, env))
        raw_first.append(first_line(["python3", "stream.py"], proj, env))
        ours_total.append(median_time(lambda: subprocess.run([*cmd, "submit", "one.yaml", "--wait", "-q"], cwd=proj,
                                                             env=env, capture_output=True, check=True), 1))
        raw_total.append(median_time(lambda: subprocess.run(["python3", "one.py"], cwd=proj, env=env,
                                                            capture_output=True, check=True), 1))
    med = statistics.median
    row(f"local backend: first output line, `submit --follow` (median of {repeat})", f"{med(ours_first) * 1000:.0f} ms",
        f"`python3 stream.py`: {med(raw_first) * 1000:.0f} ms", f"+{(med(ours_first) - med(raw_first)) * 1000:.0f} ms")
    row(f"local backend: one-line job, `submit --wait` (median of {repeat})", f"{med(ours_total) * 1000:.0f} ms",
        f"`python3 one.py`: {med(raw_total) * 1000:.0f} ms", f"+{(med(ours_total) - med(raw_total)) * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--only", choices=["log", "help", "list", "local", "snapshot", "sync"], help="one part only")
    args = ap.parse_args()
    repeat = 3 if args.quick else 10
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        parts = {"log": lambda: bench_log(tmp, 100_000, 5 if not args.quick else 3), "help": lambda: bench_help(tmp, repeat),
                 "list": lambda: bench_list(tmp, repeat), "local": lambda: bench_local(tmp, repeat),
                 "snapshot": lambda: bench_snapshot(tmp, 5 if not args.quick else 3),
                 "sync": lambda: bench_sync(tmp, 100_000 if args.quick else 1_000_000)}
        for name, part in parts.items():
            if args.only in (None, name):
                part()
    print("| what | runctl | peer, same machine, same run | ratio |")
    print("|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
