"""The SSH backend against raw ssh and rsync, same machine, same sshd, same run.

    python bench/bench_ssh.py [--repeat 10]

Needs the test SSH host (tests/infra/up-ssh.sh) and rsync. Measures (medians):
submit-to-first-output (`runctl submit --follow` of a job that prints a line and works
0.5 s) against `ssh host python3 -c 'print(1)'`; and staging a 2,000-file + 50 MB tree
into an empty remote cache (cold), again unchanged (warm), and with one file changed,
against `rsync -a` of the same tree over the same sshd. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cli_env, first_line

STATE = Path(os.environ.get("RUNCTL_TEST_SSH_STATE", "/var/lib/runctl-test-ssh"))
HOST, PORT = "10.231.0.2", 2222
SSH = ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={STATE / 'known_hosts'}",
       "-o", "StrictHostKeyChecking=yes", "-i", str(STATE / "client_ed25519"), "-p", str(PORT), f"root@{HOST}"]


def target(work_dir: Path) -> dict:
    return {"hosts": [HOST], "port": PORT, "user": "root", "identity_file": str(STATE / "client_ed25519"),
            "known_hosts": str(STATE / "known_hosts"), "python": "/usr/bin/python3", "work_dir": str(work_dir)}


def make_tree(root: Path) -> None:
    for i in range(2000):
        d = root / f"pkg{i % 40}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"m{i}.py").write_text(f"X = {i}\n" * 20)
    (root / "weights.bin").write_bytes(os.urandom(50 << 20))


def stage_once(src: Path, home: Path, work_dir: Path) -> float:
    code = f"""
import os, sys, time
from pathlib import Path
from runctl.store.sqlite import Store
from runctl.store.snapshot import list_source, take_snapshot
from runctl.ops import staging
from runctl.backends.base import LaunchSpec
from runctl.backends.ssh import SSHBackend
home = Path({str(home)!r})
store = Store(home)
objects = store.objects
sid = take_snapshot(list_source(Path({str(src)!r})), objects, store.stat_cache_get, store.stat_cache_put)
backend = SSHBackend("b", {target(work_dir)!r}, store.services("ssh"))
spec = LaunchSpec(run_id="r%d" % time.time_ns(), experiment="e", argv=["python3"], env={{}}, timeout_s=1, grace_s=1,
                  snapshot_id=sid)
handle = backend.plan(spec)
_ = backend.link(handle).work_dir
os.sync()
t0 = time.perf_counter()
staging.stage(objects, backend.transport(handle), handle.run_dir, staging.plan(objects, sid, spec.launcher_spec()))
print(time.perf_counter() - t0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    settle(work_dir)
    return float(out.strip().splitlines()[-1])


def settle(work_dir: Path | None = None) -> None:
    """Before each timed step: the previous step's background work on the host is done
    (unpacking, the next ready copy: nothing asked for, no builder holding the lock) and
    written back, so no step pays for another (client and "host" share this disk)."""
    import fcntl

    deadline = time.monotonic() + 60
    while work_dir is not None and time.monotonic() < deadline:
        if not (work_dir / ".spare" / "next.json").exists():
            try:
                with open(work_dir / ".spare" / ".lock") as f:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
            except FileNotFoundError:
                break
            except BlockingIOError:
                pass
        time.sleep(0.05)
    os.sync()


def rsync_once(src: Path, dest: str) -> float:
    settle()
    t0 = time.perf_counter()
    subprocess.run(["rsync", "-a", "-e", " ".join(SSH[:-1]), f"{src}/", f"{SSH[-1]}:{dest}/"], check=True,
                   capture_output=True)
    return time.perf_counter() - t0


STAND_IN_SMI = """#!/bin/sh
case "$1" in
--query-gpu=*) for i in 0 1 2 3 4 5 6 7; do echo "$i, GPU-000$i, Stand-in H100, 0, 81559"; done ;;
esac
"""


def placement(tmp: Path, repeat: int) -> tuple[str, float, float]:
    """What placement adds to a submit: the backend's check_job + plan for a run that wants
    one GPU against one that wants none, on a warm connection (median of many). The stand-in
    nvidia-smi (a shell script) answers in a few ms; a real one on an H100 host takes about
    20 ms per query, and placement asks two (the GPU list, then who uses them)."""
    smi = tmp / "nvidia-smi"
    smi.write_text(STAND_IN_SMI)
    smi.chmod(0o755)
    code = f"""
import json, statistics, time
from pathlib import Path
from runctl.backends.base import LaunchSpec
from runctl.backends.ssh import SSHBackend
from runctl.store.layout import services
options = {{**{target(tmp / "remote-gpu")!r}, "nvidia_smi": {str(smi)!r}}}
backend = SSHBackend("b", options, services(Path({str(tmp / "h-gpu")!r}), "ssh"))
def once(gpus):
    spec = LaunchSpec(run_id="r%d" % time.time_ns(), experiment="e", argv=["python3"], env={{}}, timeout_s=1,
                      grace_s=1, snapshot_id="-", resources={{"gpus": gpus}})
    t0 = time.perf_counter()
    backend.check_job(spec)
    handle = backend.plan(spec)
    took = time.perf_counter() - t0
    if gpus:
        link = backend.link(handle)
        link.agent({{"op": "release_gpus", "work_dir": link.work_dir, "run_dir": handle.run_dir}})
    return took
once(0); once(1)
print(json.dumps([statistics.median(once(g) for _ in range({repeat * 5})) for g in (1, 0)]))
"""
    # (not from the current folder: in the repository root, its runctl/ would shadow the installed runctl)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp)
    if done.returncode != 0:
        raise RuntimeError(f"placement bench failed: {done.stderr[-2000:]}")
    out = done.stdout
    with_gpu, without = json.loads(out.strip().splitlines()[-1])
    return ("placement: check + plan of a run wanting 1 GPU vs none (warm connection)", with_gpu, without)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="one repetition (a check that it runs)")
    args = ap.parse_args()
    if args.quick:
        args.repeat = 1
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proj = tmp / "proj"
        (proj / ".runctl").mkdir(parents=True)

        (proj / ".runctl" / "config.yaml").write_text(json.dumps({"compute_targets": {"lab": {"type": "ssh",
                                                                   **target(tmp / "remote")}}}))
        (proj / "stream.py").write_text("import time; print(1, flush=True); time.sleep(0.5)\n")
        (proj / "stream.yaml").write_text("script: stream.py\ncompute_target: lab\n")
        env = cli_env(RUNCTL_HOME=str(tmp / "store"))
        exe = [sys.executable, "-m", "runctl"]
        subprocess.run([*exe, "submit", "stream.yaml", "--wait", "-q"], cwd=proj, env=env, check=True,
                       capture_output=True)
        ours, raw = [], []
        for _ in range(args.repeat):
            raw.append(first_line([*SSH, "python3", "-c", "'print(1)'"], proj, env))
            ours.append(first_line([*exe, "submit", "stream.yaml", "--follow"], proj, env))
        rows.append(("first output line (`submit --follow`) vs `ssh host python3 -c 'print(1)'`",
                     statistics.median(ours), statistics.median(raw)))
        rows.append(placement(tmp, args.repeat))
        src = tmp / "tree"
        make_tree(src)
        n = 1 if args.quick else max(3, args.repeat // 2)
        cold, cold_rsync, warm, warm_rsync, one, one_rsync = [], [], [], [], [], []
        for i in range(n):
            home, remote = tmp / f"h{i}", tmp / f"r{i}"
            cold.append(stage_once(src, home, remote))
            cold_rsync.append(rsync_once(src, str(tmp / f"rs{i}")))
            warm.append(stage_once(src, home, remote))
            warm_rsync.append(rsync_once(src, str(tmp / f"rs{i}")))
            (src / "pkg0" / "m0.py").write_text(f"X = {i}  # changed\n")
            one.append(stage_once(src, home, remote))
            one_rsync.append(rsync_once(src, str(tmp / f"rs{i}")))
        med = statistics.median
        rows += [("stage 2,000 files + 50 MB, cold, vs `rsync -a`", med(cold), med(cold_rsync)),
                 ("stage it again, unchanged, vs rsync's no-change run", med(warm), med(warm_rsync)),
                 ("stage it with one file changed, vs rsync", med(one), med(one_rsync))]
    print(f"| {args.repeat} runs (transfers: {n}), medians | runctl | peer | ratio |")
    print("|---|---|---|---|")
    for what, a, b in rows:
        ratio = f"+{(a - b) * 1000:.1f} ms" if what.startswith("placement") else f"{a / b:.2f}x"
        print(f"| {what} | {a * 1000:.1f} ms | {b * 1000:.1f} ms | {ratio} |")


if __name__ == "__main__":
    main()
