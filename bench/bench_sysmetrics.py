"""What sampling a job's system metrics costs (runctl/job/sysmetrics.py), against the naive
way of doing the same: the launcher's sampler (one /proc pass per sample, one long-lived
`nvidia-smi --loop-ms`) vs a sampler that starts nvidia-smi for every sample.

    python bench/bench_sysmetrics.py [--quick] [--seconds S] [--nvidia-smi PATH]

A stand-in nvidia-smi (tests/fake_nvidia_smi.py, two GPUs) unless --nvidia-smi names a real
one. CPU is this process's and its children's (nvidia-smi) CPU time over the wall time,
in % of one core. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(fn: object, seconds: float) -> float:
    """% of one core that ``fn(seconds)`` used, itself and its children."""
    cpu0, kids0, t0 = time.process_time(), children_cpu(), time.monotonic()
    fn(seconds)  # type: ignore[operator]
    wall = time.monotonic() - t0
    return 100.0 * ((time.process_time() - cpu0) + (children_cpu() - kids0)) / wall


def main() -> None:
    from runctl.job import sysmetrics

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 s each (a check that it runs)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--nvidia-smi", help="a real nvidia-smi (default: the stand-in, two GPUs)")
    args = ap.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="runctl-bench-sys-"))
    smi = args.nvidia_smi
    if smi is None:
        smi = str(tmp / "nvidia-smi")
        shutil.copy(REPO / "tests" / "fake_nvidia_smi.py", smi)
        os.chmod(smi, 0o755)
        (tmp / "gpus.json").write_text(json.dumps({"gpus": [{"index": 0, "uuid": "GPU-a", "util": 50, "used": 1000},
                                                              {"index": 1, "uuid": "GPU-b", "util": 90, "used": 2000}]}))
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100000)"], start_new_session=True)
    events = tmp / "events.jsonl"
    rows = []
    try:
        for interval in (1.0, 10.0):
            span = max(seconds, 3 * interval) if interval > 1 else seconds

            def ours(s: float, interval: float = interval) -> None:
                sampler = sysmetrics.Sampler(str(events), job.pid, interval, {sysmetrics.NVIDIA_SMI_ENV: smi}).start()
                time.sleep(s)
                sampler.stop()

            def naive(s: float, interval: float = interval) -> None:
                end = time.monotonic() + s
                while time.monotonic() < end:
                    sysmetrics.session_usage(job.pid)
                    subprocess.run([smi, "--query-gpu=" + sysmetrics.GPU_QUERY, "--format=csv,noheader,nounits"],
                                   capture_output=True)
                    time.sleep(interval)

            rows.append((f"sampling every {interval:g} s ({span:g} s)", measure(ours, span), measure(naive, span)))
        lines = events.read_text().splitlines()
        assert lines and all(json.loads(line)["n"].startswith("system/") for line in lines)
    finally:
        job.kill()
        job.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    gpu = "stand-in nvidia-smi, 2 GPUs" if args.nvidia_smi is None else f"nvidia-smi {args.nvidia_smi}"
    print(f"| system metrics ({gpu}) | runctl's sampler, % of one core | nvidia-smi started per sample | ratio |")
    print("|---|---|---|---|")
    for what, a, b in rows:
        print(f"| {what} | {a:.3f}% | {b:.3f}% | {a / b:.2f}x |" if b else f"| {what} | {a:.3f}% | {b:.3f}% | - |")


if __name__ == "__main__":
    main()
