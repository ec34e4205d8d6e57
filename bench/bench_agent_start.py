"""Starting runctl's agent on an SSH host: the copy there checked against runctl's own and
run from memory (what runctl does), against sending and installing it every time.

    python bench/bench_agent_start.py [--repeat 15]

Needs the test SSH host (tests/infra/up-ssh.sh). Medians of the time from a ready SSH
connection to the agent's first answer; Markdown on stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from runctl.backends.sshlink import HostLink

STATE = Path(os.environ.get("RUNCTL_TEST_SSH_STATE", "/var/lib/runctl-test-ssh"))


def start_once(options: dict, work: str, reinstall: bool) -> float:
    link = HostLink("10.231.0.2", options)
    _ = link.conn  # connected first: only the agent's start is measured
    if reinstall:
        shutil.rmtree(os.path.join(work, ".runctl-agent"), ignore_errors=True)
    t0 = time.perf_counter()
    link.agent({"op": "info", "work_dir": work})
    took = time.perf_counter() - t0
    link.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="two starts each (a check that it runs)")
    args = ap.parse_args()
    if args.quick:
        args.repeat = 2
    with tempfile.TemporaryDirectory() as work:
        options = {"port": 2222, "user": "root", "identity_file": str(STATE / "client_ed25519"),
                   "known_hosts": str(STATE / "known_hosts"), "python": "/usr/bin/python3", "work_dir": work}
        start_once(options, work, False)
        checked = [start_once(options, work, False) for _ in range(args.repeat)]
        sent = [start_once(options, work, True) for _ in range(args.repeat)]
    print(f"| {args.repeat} starts, medians | checked copy (runctl) | sent and installed each time | ratio |")
    print("|---|---|---|---|")
    c, s = statistics.median(checked) * 1000, statistics.median(sent) * 1000
    print(f"| agent start to first answer | {c:.1f} ms | {s:.1f} ms | {c / s:.2f}x |")


if __name__ == "__main__":
    main()
