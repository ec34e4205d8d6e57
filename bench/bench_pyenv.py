"""What a job's Python environment (environment.python.pip_packages) costs on the local backend,
against doing the same by hand: the first run, which builds it (venv + pip here, or uv when on
PATH), vs `python -m venv` + `pip install` + running the script; and a later run, which finds
it, vs the same job without packages (the goal: under 20 ms more).

    python bench/bench_pyenv.py [--quick] [--package six==1.16.0]

The package comes from the index this machine reaches. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cli_env


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one first build, two cached runs (a check that it runs)")
    ap.add_argument("--package", default="six==1.16.0")
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    repeat = 2 if args.quick else args.repeat
    tmp = Path(tempfile.mkdtemp(prefix="runctl-bench-pyenv-"))
    runctl = str(Path(sys.executable).parent / "runctl")
    try:
        src = tmp / "proj" / "src"
        src.mkdir(parents=True)
        name = args.package.split("=")[0].split("[")[0]
        (src / "one.py").write_text(f"import {name}\nprint('ok')\n")
        (src / "plain.py").write_text("print('ok')\n")
        proj = src.parent
        (proj / "env.yaml").write_text(f"source_directory: src\nscript: one.py\nexperiment: b\nenvironment:\n"
                                       f"  python:\n    pip_packages: ['{args.package}']\n")
        (proj / "plain.yaml").write_text("source_directory: src\nscript: plain.py\nexperiment: b\n")
        env = cli_env(RUNCTL_HOME=str(tmp / "home"), RUNCTL_ENV_ROOT=str(tmp / "envs"))
        first = timed([runctl, "submit", "env.yaml", "--wait", "-q"], proj, env)
        by_hand = tmp / "by-hand"
        hand = timed([sys.executable, "-m", "venv", str(by_hand)], proj, env)
        hand += timed([str(by_hand / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                       args.package], proj, env)
        hand += timed([str(by_hand / "bin" / "python"), "src/one.py"], proj, env)
        cached, plain = [], []
        for _ in range(repeat):
            cached.append(timed([runctl, "submit", "env.yaml", "--wait", "-q"], proj, env))
            plain.append(timed([runctl, "submit", "plain.yaml", "--wait", "-q"], proj, env))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c, p = statistics.median(cached), statistics.median(plain)
    installer = "uv" if shutil.which("uv") else "venv + pip"
    print("| what | runctl | by hand / without packages, same run | difference |")
    print("|---|---|---|---|")
    print(f"| first run of a new environment ({args.package}, {installer}) | {first * 1000:.0f} ms | "
          f"`python -m venv` + `pip install` + the script: {hand * 1000:.0f} ms | {(first - hand) * 1000:+.0f} ms |")
    print(f"| a later run, environment found (`submit --wait`, median of {repeat}) | {c * 1000:.0f} ms | "
          f"the same job without packages: {p * 1000:.0f} ms | {(c - p) * 1000:+.0f} ms |")


if __name__ == "__main__":
    main()
