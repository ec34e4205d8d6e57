"""Every example job runs end to end through the real CLI, and its metrics come back."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from .conftest import REPO, run_cli


def run_example(name: str, tmp_path: Path) -> str:
    dest = tmp_path / name
    shutil.copytree(REPO / "examples" / name, dest)
    r = run_cli("submit", "job.yaml", "--wait", "-q", cwd=dest)
    assert r.rc == 0, r.err
    return r.out.strip()


def test_every_example_is_tested() -> None:
    examples = sorted(p.name for p in (REPO / "examples").iterdir() if (p / "job.yaml").exists())
    tested = sorted(n.removeprefix("test_").replace("_", "-") for n in globals() if n.startswith("test_")
                    and n not in ("test_every_example_is_tested",))
    assert examples == tested


def test_hello(tmp_path: Path, home: Path) -> None:
    run_id = run_example("hello", tmp_path)
    assert f"Hello from run {run_id}" in run_cli("logs", run_id, cwd=tmp_path).out
    assert run_cli("metrics", run_id, "--json", cwd=tmp_path).json() == {"answer": 42}
    run_cli("outputs", run_id, str(tmp_path / "o"), cwd=tmp_path, check=True)
    assert (tmp_path / "o" / "greeting.txt").read_text() == "Hello\n"


def test_train_loop(tmp_path: Path, home: Path) -> None:
    run_id = run_example("train-loop", tmp_path)
    m = run_cli("metrics", run_id, "--json", cwd=tmp_path).json()
    assert len(m["validation"]) == 5 and m["validation"][-1] < m["validation"][0]
    assert abs(m["final_w"] - 3) < 0.1 and abs(m["final_b"] - 1) < 0.1
    show = run_cli("show", run_id, "--json", cwd=tmp_path).json()
    assert show["displayName"] == "toy regression" and show["tags"] == {"example": "train-loop"}


def test_sine(tmp_path: Path, home: Path) -> None:
    run_id = run_example("sine", tmp_path)
    sine = run_cli("metrics", run_id, "--json", cwd=tmp_path).json()["sine"]
    assert len(sine["x"]) == 50 and sine["x"][0] == 0 and sine["x"][-1] == 10
    assert all(math.isclose(y, math.sin(x)) for x, y in zip(sine["x"], sine["y"]))
