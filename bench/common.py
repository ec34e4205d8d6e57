"""Shared by the bench scripts (run as `python bench/NAME.py`, so this imports as `common`)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for the commands measured: this one, without PYTHONDONTWRITEBYTECODE
    (set on some development machines: runctl's modules would be compiled from source on
    every start, about 30 ms that an installed runctl, whose bytecode pip writes, never pays)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def first_line(cmd: list[str], cwd: Path, env: dict, skip: str = "Submitted") -> float:
    """Seconds from starting ``cmd`` to its first output line not starting with ``skip``
    (it must then exit 0)."""
    return first_line_and_end(cmd, cwd, env, skip)[0]


def first_line_and_end(cmd: list[str], cwd: Path, env: dict, skip: str = "Submitted") -> tuple[float, float]:
    """(seconds to the first output line not starting with ``skip``, seconds until ``cmd``
    exits, which it must with 0)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = None
    for line in p.stdout:  # type: ignore[union-attr]
        if first is None and not line.startswith(skip):
            first = time.perf_counter() - t0
    p.wait()
    if p.returncode != 0 or first is None:
        raise RuntimeError(f"{cmd} failed ({p.returncode})")
    return first, time.perf_counter() - t0
