"""runctl's Docker backend against raw `docker run`, same machine, same run.

    python bench/bench_docker.py [--repeat 10] [--image local/python:3.11-bookworm]

Measures the time from starting the command to the job's first output line, for a job
that prints a line and then works for half a second (`runctl submit --follow` vs
`docker run --rm IMAGE python3 -c "print(1, flush=True); time.sleep(0.5)"`), and the total
time for a one-line job (`print(1)`) until the command returns (`runctl submit --wait`,
which also syncs the run and removes its container). Medians; Markdown on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cli_env, first_line_and_end

STREAM_JOB = "import time; print(1, flush=True); time.sleep(0.5)"


def runctl_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "runctl"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "runctl"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--image", default="local/python:3.11-bookworm")
    ap.add_argument("--quick", action="store_true", help="one repetition (a check that it runs)")
    args = ap.parse_args()
    if args.quick:
        args.repeat = 1
    with tempfile.TemporaryDirectory() as d:
        proj = Path(d) / "proj"  # the store beside it, in the same temporary folder (removed after)
        (proj / ".runctl").mkdir(parents=True)
        (proj / ".runctl" / "config.yaml").write_text("compute_targets:\n  docker-cpu: {type: docker}\n")
        (proj / "one.py").write_text("print(1)\n")
        (proj / "job.yaml").write_text(f"script: one.py\ncompute_target: docker-cpu\nenvironment:\n"
                                       f"  docker: {{image: '{args.image}'}}\n")
        (proj / "stream.py").write_text(STREAM_JOB + "\n")
        (proj / "stream.yaml").write_text(f"script: stream.py\ncompute_target: docker-cpu\nenvironment:\n"
                                          f"  docker: {{image: '{args.image}'}}\n")
        env = cli_env(RUNCTL_HOME=str(Path(d) / "store"))
        raw_cmd = ["docker", "run", "--rm", args.image, "python3", "-c", "print(1)"]
        raw_stream_cmd = ["docker", "run", "--rm", args.image, "python3", "-c", STREAM_JOB]
        subprocess.run(raw_cmd, check=True, capture_output=True)  # warm the page cache for both
        subprocess.run([*runctl_cmd(), "submit", "job.yaml", "--wait", "-q"], cwd=proj, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        raw_first, raw_total, ours_first, ours_follow_total, ours_total = [], [], [], [], []
        for _ in range(args.repeat):
            raw_first.append(first_line_and_end(raw_stream_cmd, proj, env)[0])
            raw_total.append(first_line_and_end(raw_cmd, proj, env)[1])
            ours_first.append(first_line_and_end([*runctl_cmd(), "submit", "stream.yaml", "--follow"], proj, env)[0])
            ours_follow_total.append(first_line_and_end([*runctl_cmd(), "submit", "job.yaml", "--follow"], proj, env)[1])
            t0 = time.perf_counter()
            subprocess.run([*runctl_cmd(), "submit", "job.yaml", "--wait", "-q"], cwd=proj, env=env, check=True,
                           capture_output=True)
            ours_total.append(time.perf_counter() - t0)
    med = statistics.median
    rows = [
        ("first output line (job prints, then works 0.5 s)", med(ours_first), med(raw_first)),
        ("total, one-line job (`submit --wait`)", med(ours_total), med(raw_total)),
        ("total, one-line job (`submit --follow`)", med(ours_follow_total), med(raw_total)),
    ]
    print(f"| {args.repeat} runs each, medians | runctl | raw `docker run --rm` | overhead | ratio |")
    print("|---|---|---|---|---|")
    for what, ours, raw in rows:
        print(f"| {what} | {ours * 1000:.0f} ms | {raw * 1000:.0f} ms | {(ours - raw) * 1000:+.0f} ms | {ours / raw:.2f}x |")


if __name__ == "__main__":
    main()
