"""Every example job runs end to end through the real CLI, and its metrics come back."""

from __future__ import annotations

import json
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


def test_v1_script(tmp_path: Path, home: Path) -> None:
    run_id = run_example("v1-script", tmp_path)
    logs = run_cli("logs", run_id, cwd=tmp_path).out
    assert "list rejected: run.log does not support list type" in logs
    assert "downloaded: uploaded by upload_file" in logs and "children: 4 parent ok: True" in logs
    m = run_cli("metrics", run_id, "--json", cwd=tmp_path).json()
    assert m["validation"] == [1.0, 0.5, 1 / 3] and m["learning_rate"] == 0.01 and m["model"] == "resnet-ish"
    assert math.isnan(m["diverged"]) and m["best"] == math.inf
    assert m["accuracies"] == [0.5, 0.7, 0.9]
    assert m["curve"] == {"x": [0, 1, 2], "y": [0, 1, 4]} and m["table"] == {"a": [1, 2], "b": ["u", "v"]}
    assert m["cm"]["data"]["matrix"] == [[3, 1], [0, 4]] and m["sample"] == "plot.png"
    assert "bad" not in m
    show = run_cli("show", run_id, "--json", cwd=tmp_path).json()
    assert show["displayName"] == "v1 script, renamed"
    assert show["tags"] == {"example": "v1-script", "stage": "train", "owner": "lab", "gpu": ""}
    assert show["properties"]["dataset"] == "v3"

    from runctl import Run, Workspace

    run = Run.get(Workspace.from_config(tmp_path), run_id)
    assert json.dumps(run.get_metrics(), sort_keys=True) == json.dumps(m, sort_keys=True)
    assert sorted(run.get_file_names()) == ["config/a.yaml", "config/b.yaml", "extra/notes.txt", "logs/std_log.txt",
                                             "outputs/model.json", "plot.png"]
    run.download_file("plot.png", str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    children = list(run.get_children())
    assert [c.display_name for c in children] == ["fold-0", None, None, "ctx"]
    assert all(c.get_status() == "Completed" for c in children)
    assert [c.get_tags().get("azureml.batch_child_number") for c in children] == [None, "0", "1", None]
    rec = run.get_metrics(recursive=True)
    assert rec[children[0].id] == {"fold_loss": 0.25} and rec[children[3].id] == {"inside": math.pi}
    assert json.dumps(run_cli("metrics", run_id, "--json", "-r", cwd=tmp_path).json(), sort_keys=True) == json.dumps(rec, sort_keys=True)
    assert [rec[c.id]["child_metric"] for c in children[1:3]] == [0, 1]
    assert run_cli("list", "--json", cwd=tmp_path).json()[0]["id"] == run_id
    assert run_cli("show", run_id, "--json", cwd=tmp_path).json()["children"] == [c.id for c in children]
    assert run_cli("show", children[0].id, "--json", cwd=tmp_path).json()["parentRunId"] == run_id
