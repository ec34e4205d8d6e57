"""What a tuning run's controller costs per child (issue 24), against the raw way of running
the same trials: `xargs -P C` starting `python train.py --x .. --y ..` for each sample.

    python bench/bench_tuning.py [--quick] [--children N] [--concurrent C] [--repeat R]

The trial script logs its metric five times and exits (no training: what is left is the
overhead). runctl: `runctl submit tune.yaml --wait` (random sampling, N runs, C at a time)
with the controller polling every 0.25 s and at its default (0.1 s here), from submit until the
parent is Completed. Per child: (runctl - raw) * C / N. A controller round (sync of the
children, each one's reports of the primary metric read, the bandit policy applied) is
timed in-process on the finished sweep. Medians of R; markdown on stdout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cli_env  # noqa: E402

TRAIN = """import argparse
from azureml.core import Run
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--y", type=float)
a = p.parse_args()
run = Run.get_context()
for i in range(5):
    run.log("accuracy", (1 - (a.x - 0.3) ** 2 - (a.y - 0.7) ** 2) * (i + 1) / 5)
"""

RAW_TRAIN = TRAIN.replace("from azureml.core import Run\n", "").replace("run = Run.get_context()\n", "") \
    .replace('run.log("accuracy", ', "print(")


def job_file(root: Path, n: int, c: int) -> Path:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "train.py").write_text(TRAIN)
    job = root / "tune.yaml"
    job.write_text(f"""source_directory: src
script: train.py
experiment: bench
hyperdrive:
  sampling: random
  parameter_space:
    --x: {{uniform: [0, 1]}}
    --y: {{uniform: [0, 1]}}
  primary_metric_name: accuracy
  primary_metric_goal: maximize
  max_total_runs: {n}
  max_concurrent_runs: {c}
  policy: {{bandit: {{slack_factor: 10, evaluation_interval: 1}}}}
  seed: 1
""")
    return job


def tuning(root: Path, home: Path, n: int, c: int, poll_s: float | None) -> tuple[float, str]:
    job = job_file(root, n, c)
    env = cli_env(RUNCTL_HOME=str(home), **({"RUNCTL_TUNING_POLL_S": str(poll_s)} if poll_s else {}))
    env.pop("RUNCTL_TUNING_POLL_S", None) if poll_s is None else None
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "runctl", "submit", str(job), "--wait", "-q"], cwd=root, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    return wall, p.stdout.strip()


def one_run(root: Path, home: Path) -> float:
    """One plain `runctl submit --wait` of the trial script: what any run costs, for scale."""
    job_file(root, 1, 1)
    plain = root / "one.yaml"
    plain.write_text("source_directory: src\nscript: train.py\narguments: [--x, 0.3, --y, 0.7]\nexperiment: one\n")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runctl", "submit", str(plain), "--wait", "-q"], cwd=root, check=True,
                   env=cli_env(RUNCTL_HOME=str(home)), capture_output=True)
    return time.perf_counter() - t0


def raw(root: Path, n: int, c: int) -> float:
    from runctl.config import hyperdrive as hd
    from runctl.ops.hyperdrive import space

    s = hd.parse_space({"--x": {"uniform": [0, 1]}, "--y": {"uniform": [0, 1]}})
    (root / "raw.py").write_text(RAW_TRAIN)
    lines = "".join(" ".join(space.arguments(space.nth(s, "random", 1, i))) + "\n" for i in range(n))
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-P", str(c), "-L", "1", sys.executable, str(root / "raw.py")], input=lines, text=True,
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def controller_round(home: Path, parent: str) -> tuple[float, float]:
    """(refresh of the children, reading their reports and applying the policy), in seconds."""
    from runctl.config.workspace import load_workspace
    from runctl.ops import runs
    from runctl.ops.hyperdrive.controller import Controller
    from runctl.ops.session import Session

    os.environ["RUNCTL_HOME"] = str(home)
    with Session(load_workspace()) as session:
        ctl = Controller(session, parent)
        refresh, judge = [], []
        for _ in range(20):
            kids = ctl.children()
            t0 = time.perf_counter()
            kids = runs.refresh_many(session, kids)
            t1 = time.perf_counter()
            ctl.evaluated.clear()
            ctl.apply_policy(kids)
            t2 = time.perf_counter()
            refresh.append(t1 - t0)
            judge.append(t2 - t1)
    return statistics.median(refresh), statistics.median(judge)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="8 children, once (a check that it runs)")
    ap.add_argument("--children", type=int, default=40)
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, c, repeat = (8, 4, 1) if args.quick else (args.children, args.concurrent, args.repeat)
    results: dict[str, list[float]] = {"raw": [], "quarter": [], "default": [], "one": []}
    parent, home = "", Path()
    for r in range(repeat):
        base = Path(tempfile.mkdtemp(prefix="runctl-bench-tuning-"))
        results["raw"].append(raw(base, n, c))
        results["one"].append(one_run(base / "one", base / "one-home"))
        wall, parent = tuning(base / "quarter", base / "quarter-home", n, c, 0.25)
        results["quarter"].append(wall)
        home = base / "quarter-home"
        if not args.quick or r == 0:
            results["default"].append(tuning(base / "default", base / "default-home", n, c, None)[0])
    refresh, judge = controller_round(home, parent)
    med = {k: statistics.median(v) for k, v in results.items() if v}
    print(f"Tuning overhead: {n} children, {c} at a time, trial = a Python script logging 5 values; medians of "
          f"{repeat}\n")
    print("| what | wall | per child: (wall - raw) x C / N |\n|---|---|---|")
    print(f"| raw: `xargs -P {c} python train.py ...` | {med['raw']:.2f} s | |")
    for key, label in (("quarter", "runctl, controller polling every 0.25 s"), ("default", "runctl, default poll (0.1 s)")):
        print(f"| {label}: `runctl submit tune.yaml --wait` | {med[key]:.2f} s | "
              f"{(med[key] - med['raw']) * c / n * 1000:.0f} ms |")
    print(f"| for scale: one plain `runctl submit --wait` of the trial script | {med['one'] * 1000:.0f} ms | |")
    print(f"\nA controller round over {n} finished children (median of 20): refresh {refresh * 1000:.1f} ms, "
          f"reports read and bandit applied {judge * 1000:.1f} ms.\n")


if __name__ == "__main__":
    main()
