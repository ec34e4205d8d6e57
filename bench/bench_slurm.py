"""The Slurm backend against raw sbatch, same cluster, same run; and what polling costs.

    python bench/bench_slurm.py [--repeat 5] [--inflight 200]

Needs the test cluster (tests/infra/up-slurm.sh). Measures (medians):
- submit to the job's first output line: `runctl submit --follow` of a job that prints a
  line vs `sbatch --parsable --wrap` of the same line, polling its output file every 10 ms;
- a one-line job, whole: `runctl submit --wait` vs `sbatch --wait --wrap`;
- polling: N runs in flight (they hold the cluster's CPUs or wait in the queue), then
  `runctl list` (which refreshes every unfinished run): how many Slurm commands it issued
  (counted by wrappers in slurm_bin) and how long it took, for N and for N/10.
Markdown on stdout.
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
import time
from pathlib import Path

from common import cli_env, first_line

EXE = [sys.executable, "-m", "runctl"]
# The tests' own cluster (tests/infra/up-slurm.sh) unless SLURM_CONF names another.
os.environ.setdefault("SLURM_CONF", "/var/lib/runctl-test-slurm/cluster/slurm.conf")


def raw_first_line(tmp: Path) -> float:
    out = tmp / f"raw-{time.time_ns()}.txt"
    t0 = time.perf_counter()
    subprocess.run(["sbatch", "--parsable", f"--output={out}", "--wrap", "python3 -c 'print(1, flush=True)'"],
                   check=True, capture_output=True)
    while not (out.exists() and out.read_text().strip()):
        time.sleep(0.01)
    return time.perf_counter() - t0


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def counting_bin(tmp: Path) -> tuple[Path, Path]:
    """slurm_bin wrappers that log each call, then run the real command."""
    d, log = tmp / "bin", tmp / "calls.log"
    d.mkdir()
    for name in ("sbatch", "squeue", "sacct", "scancel", "sinfo", "scontrol"):
        real = shutil.which(name)
        (d / name).write_text(f"#!/bin/sh\necho {name} >> {log}\nexec {real} \"$@\"\n")
        (d / name).chmod(0o755)
    return d, log


def polling(tmp: Path, proj: Path, env: dict, n: int) -> tuple[int, float]:
    """N runs in flight, then `runctl list`: (Slurm commands it ran, seconds)."""
    code = f"""
import sys
from pathlib import Path
from runctl.ops.session import Session
from runctl.config.jobconfig import load_job
from runctl.ops.submit import submit
s = Session(start=Path({str(proj)!r}))
job = load_job(Path({str(proj / "hold.yaml")!r}), s.ws)
for _ in range({n}):
    submit(s, job)
s.close()
"""
    subprocess.run([sys.executable, "-c", code], cwd=proj, env=env, check=True)
    log = tmp / "calls.log"
    log.write_text("")
    took = timed([*EXE, "list", "--limit", str(n + 10)], proj, env)
    calls = len(log.read_text().split())
    cancel_all(proj, env)
    return calls, took


def cancel_all(proj: Path, env: dict) -> None:
    """Cancel every job of this bench's runs (found by job name: its run ids), and only those."""
    runs = json.loads(subprocess.run([*EXE, "list", "--json", "--limit", "0"], cwd=proj, env=env, check=True,
                                     capture_output=True, text=True).stdout)
    mine = {r["id"] for r in runs}
    queue = subprocess.run(["squeue", "--noheader", "--format=%i %j"], capture_output=True, text=True).stdout
    ids = [line.split()[0] for line in queue.splitlines() if len(line.split()) == 2 and line.split()[1] in mine]
    if ids:
        subprocess.run(["scancel", *ids], check=False, capture_output=True)
    subprocess.run([*EXE, "list", "--limit", "0"], cwd=proj, env=env, check=False, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--inflight", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="one repetition, 20 runs in flight (a check that it runs)")
    args = ap.parse_args()
    if args.quick:
        args.repeat, args.inflight = 1, 20
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proj = tmp / "proj"
        (proj / ".runctl").mkdir(parents=True)
        bin_dir, _ = counting_bin(tmp)
        (proj / ".runctl" / "config.yaml").write_text(json.dumps({"compute_targets": {
            "cluster": {"type": "slurm", "work_dir": str(tmp / "work"), "python": "/usr/bin/python3",
                        "slurm_bin": str(bin_dir)}}}))
        (proj / "one.py").write_text("print(1, flush=True)\n")
        (proj / "one.yaml").write_text("script: one.py\ncompute_target: cluster\n")
        (proj / "hold.py").write_text("import time; time.sleep(300)\n")
        (proj / "hold.yaml").write_text("script: hold.py\ncompute_target: cluster\nresources: {cpus: 1}\n")
        env = cli_env(RUNCTL_HOME=str(tmp / "store"))
        subprocess.run([*EXE, "submit", "one.yaml", "--wait", "-q"], cwd=proj, env=env, check=True, capture_output=True)
        ours, raw, ours_total, raw_total = [], [], [], []
        for _ in range(args.repeat):
            raw.append(raw_first_line(tmp))
            ours.append(first_line([*EXE, "submit", "one.yaml", "--follow"], proj, env))
            raw_total.append(timed(["sbatch", "--wait", f"--output={tmp}/w.txt", "--wrap", "python3 -c 'print(1)'"],
                                   proj))
            ours_total.append(timed([*EXE, "submit", "one.yaml", "--wait", "-q"], proj, env))
        med = statistics.median
        rows = [("submit to the first output line, vs `sbatch --wrap` + polling its output", med(ours), med(raw)),
                ("a one-line job, whole: `submit --wait` vs `sbatch --wait --wrap`", med(ours_total), med(raw_total))]
        print(f"| {args.repeat} runs, medians | runctl | raw Slurm | ratio |")
        print("|---|---|---|---|")
        for what, a, b in rows:
            print(f"| {what} | {a * 1000:.0f} ms | {b * 1000:.0f} ms | {a / b:.2f}x |", flush=True)
        print("\n| runs in flight | Slurm commands per `runctl list` | its time |")
        print("|---|---|---|")
        try:
            for n in (max(1, args.inflight // 10), args.inflight):
                calls, took = polling(tmp, proj, env, n)
                print(f"| {n} | {calls} | {took * 1000:.0f} ms |", flush=True)
        finally:
            cancel_all(proj, env)


if __name__ == "__main__":
    main()
