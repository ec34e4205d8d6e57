"""A project folder with a workspace config and job files, and the real CLI run on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Project:
    """A project directory with a workspace config (``targets``: compute_targets), source
    files under src/ and job files beside it."""

    def __init__(self, root: Path, targets: dict[str, dict] | None = None) -> None:
        import yaml

        self.root = root
        self.src = root / "src"
        self.src.mkdir(parents=True, exist_ok=True)
        if targets:
            (root / ".runctl").mkdir(exist_ok=True)
            (root / ".runctl" / "config.yaml").write_text(yaml.safe_dump({"compute_targets": self.targets(targets)}))

    def targets(self, targets: dict[str, dict]) -> dict[str, dict]:
        """The compute targets as written to the config (a subclass may add to them)."""
        return targets

    def write(self, rel: str, text: str) -> Path:
        p = self.src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
        return p

    def job(self, name: str = "job.yaml", **fields: Any) -> Path:
        import yaml

        doc = {"source_directory": "src", "experiment": "test"}
        doc.update(fields)
        p = self.root / name
        p.write_text(yaml.safe_dump(doc))
        return p

    def script_job(self, code: str, name: str = "job.yaml", **fields: Any) -> Path:
        script = name.replace(".yaml", ".py")
        self.write(script, code)
        return self.job(name, script=script, **fields)

    def cli(self, *args: str, timeout: float = 120, check: bool = False, env: dict | None = None) -> Result:
        return run_cli(*args, cwd=self.root, timeout=timeout, check=check, env=env)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "runctl", *args], cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def isolated_home(tmp_path: Path, monkeypatch: Any) -> Path:
    """A fresh store (RUNCTL_HOME) and config and cache folders under ``tmp_path`` for this test,
    and no run context inherited from the environment; the store's folder."""
    h = tmp_path / "store"
    monkeypatch.setenv("RUNCTL_HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("RUNCTL_RUN_ID", raising=False)
    monkeypatch.delenv("RUNCTL_RUN_DIR", raising=False)
    return h


def run_cli(*args: str, cwd: Path, timeout: float = 120, check: bool = False, env: dict | None = None) -> Result:
    """``runctl ARGS`` in a subprocess (this Python's runctl), from ``cwd``."""
    full_env = dict(os.environ, **(env or {}))
    p = subprocess.run([sys.executable, "-m", "runctl", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=full_env)
    r = Result(p.returncode, p.stdout, p.stderr)
    if check and r.rc != 0:
        raise AssertionError(f"runctl {' '.join(args)} exited {r.rc}\nstdout: {r.out}\nstderr: {r.err}")
    return r


def wait_for(predicate: Any, timeout_s: float = 30, interval_s: float = 0.1, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy (for ordering only, never to assert speed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
