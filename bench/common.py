"""Shared by the bench scripts (run as `python bench/NAME.py`, so this imports as `common`)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def first_line(cmd: list[str], cwd: Path, env: dict, skip: str = "Submitted") -> float:
    """Seconds from starting ``cmd`` to its first output line not starting with ``skip``
    (it must then exit 0)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = None
    for line in p.stdout:  # type: ignore[union-attr]
        if first is None and not line.startswith(skip):
            first = time.perf_counter() - t0
    p.wait()
    if p.returncode != 0 or first is None:
        raise RuntimeError(f"{cmd} failed")
    return first
