"""run.log() cost on the training thread and end-to-end throughput, against peers in the same run.

    python bench/bench_logging.py [--mlflow-python PATH]

- runctl: the job-side client inside a run environment (RUNCTL_RUN_ID/RUNCTL_RUN_DIR set);
  per-call cost of the loop, then the time until everything is on disk (flush).
- naive: append one JSON line per call and flush it (what a hand-written logger does).
- MLflow: ``mlflow.log_metric`` to a local file store, when a Python with mlflow is given
  (e.g. a throwaway venv: python -m venv /tmp/mlvenv && /tmp/mlvenv/bin/pip install mlflow-skinny).
Medians of several runs; a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

LOOP = textwrap.dedent("""
    import json, os, sys, time
    n, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "runctl":
        from runctl.job.context import Run
        run = Run.get_context()
        assert not run.id.startswith("OfflineRun")
        log = run.log
        t0 = time.perf_counter_ns()
        for i in range(n):
            log("loss", 0.5, step=i)
        t1 = time.perf_counter_ns()
        run.flush()
    elif mode == "naive":
        f = open(os.path.join(os.environ["RUNCTL_RUN_DIR"], "naive.jsonl"), "a")
        t0 = time.perf_counter_ns()
        for i in range(n):
            f.write(json.dumps({"k": "scalar", "n": "loss", "v": 0.5, "s": i, "t": time.time()}) + "\\n")
            f.flush()
        t1 = time.perf_counter_ns()
    else:
        import mlflow
        mlflow.set_tracking_uri("file://" + os.path.join(os.environ["RUNCTL_RUN_DIR"], "mlruns"))
        with mlflow.start_run():
            t0 = time.perf_counter_ns()
            for i in range(n):
                mlflow.log_metric("loss", 0.5, step=i)
            t1 = time.perf_counter_ns()
    t2 = time.perf_counter_ns()
    print(json.dumps({"loop_us": (t1 - t0) / n / 1000, "throughput": n / ((t2 - t0) / 1e9)}))
""")


def measure(python: str, mode: str, n: int, repeat: int, tmp: Path) -> dict[str, float]:
    loops, rates = [], []
    for r in range(repeat):
        run_dir = tmp / f"{mode}-{n}-{r}"
        run_dir.mkdir()
        env = dict(os.environ, RUNCTL_RUN_ID=f"bench-{r}", RUNCTL_RUN_DIR=str(run_dir), RUNCTL_EXPERIMENT="bench",
                   MLFLOW_ALLOW_FILE_STORE="true")  # MLflow 3 keeps the local file store behind this switch
        out = subprocess.run([python, "-c", LOOP, str(n), mode], env=env, capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        loops.append(res["loop_us"])
        rates.append(res["throughput"])
        if mode == "runctl":
            logged = sum(e["c"] if e["k"] == "scalars" else 1 for e in map(
                json.loads, (run_dir / "events.jsonl").read_text().splitlines()))
            assert logged == n, f"{logged} values on disk for {n} calls"
    return {"loop_us": statistics.median(loops), "throughput": statistics.median(rates)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlflow-python", help="a Python that has mlflow installed")
    ap.add_argument("--mlflow-calls", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="10,000 calls, once (a check that it runs)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n, repeat in ((10_000, 1),) if args.quick else ((100_000, 5), (1_000_000, 3)):
            ours = measure(sys.executable, "runctl", n, repeat, tmp)
            naive = measure(sys.executable, "naive", n, repeat, tmp)
            rows.append((f"{n:,} calls, median of {repeat}", ours, naive))
            print(f"{n}: runctl {ours} naive {naive}", file=sys.stderr)
        ml = None
        if args.mlflow_python:
            ml = measure(args.mlflow_python, "mlflow", args.mlflow_calls, 3, tmp)
            print(f"mlflow: {ml}", file=sys.stderr)
    print("| calls | runctl `run.log()` per call | runctl throughput (incl. flush to disk) "
          "| naive JSON line + flush per call | ratio (per call) |")
    print("|---|---|---|---|---|")
    for what, ours, naive in rows:
        print(f"| {what} | {ours['loop_us']:.2f} µs | {ours['throughput'] / 1e6:.2f} M values/s "
              f"| {naive['loop_us']:.2f} µs | {naive['loop_us'] / ours['loop_us']:.1f}x |")
    if ml:
        ratio = ml["loop_us"] / rows[0][1]["loop_us"]
        print(f"\nMLflow `log_metric` to a local file store ({args.mlflow_calls:,} calls, median of 3): "
              f"{ml['loop_us']:.0f} µs per call, {ml['throughput']:.0f} values/s; runctl's `run.log()` is "
              f"{ratio:,.0f}x cheaper per call.")


if __name__ == "__main__":
    main()
