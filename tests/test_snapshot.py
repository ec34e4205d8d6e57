"""Snapshots: ignore rules, symlinks, size limit, content addressing, stat cache, git info."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runctl.backends.localfs import LocalTransport
from runctl.errors import InputError
from runctl.ops import staging
from runctl.store import snapshot
from runctl.store.snapshot import ObjectStore, check_size, git_properties, list_source, take_snapshot
from runctl.store.sqlite import Store


def paths(root: Path) -> list[str]:
    return [e.path for e in list_source(root).entries]


def make(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_gitignore_at_any_depth_and_root_ignore_file_can_reinclude(tmp_path: Path) -> None:
    make(tmp_path, {
        ".gitignore": "*.log\ndata/\n",
        "train.py": "", "a.log": "", "keep.log": "",
        "data/big.bin": "",
        "sub/.gitignore": "*.tmp\n!important.tmp\n",
        "sub/x.tmp": "", "sub/important.tmp": "", "sub/y.py": "",
        "sub/deeper/z.tmp": "", "sub/deeper/w.log": "",
        ".runctlignore": "!keep.log\nsecret.txt\n",
        "secret.txt": "",
        ".git/HEAD": "ref",
    })
    assert paths(tmp_path) == [
        ".gitignore", ".runctlignore", "keep.log", "sub/.gitignore", "sub/important.tmp", "sub/y.py", "train.py",
    ]


def test_amlignore_is_honoured(tmp_path: Path) -> None:
    make(tmp_path, {".amlignore": "outputs/\n", "outputs/old.pt": "", "t.py": ""})
    assert paths(tmp_path) == [".amlignore", "t.py"]


def test_symlink_outside_is_refused_inside_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make(src, {"t.py": "x", "data/a.txt": "a"})
    os.symlink("data/a.txt", src / "inside")
    assert "inside" in paths(src)
    os.symlink(tmp_path / "elsewhere", src / "outside")
    with pytest.raises(InputError, match="symlink points outside source_directory"):
        list_source(src)


def test_size_limit_names_the_largest_files(tmp_path: Path) -> None:
    make(tmp_path, {"small.py": "x"})
    (tmp_path / "huge.bin").write_bytes(b"\0" * (2 << 20))
    listing = list_source(tmp_path)
    check_size(listing, max_mb=3)
    with pytest.raises(InputError, match=r"over the limit of 1.0 MB \(largest: huge.bin \(2.0 MB\)"):
        check_size(listing, max_mb=1)


def test_content_addressed_and_deterministic(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make(src, {"a.py": "same", "b/c.py": "same", "d.txt": "other"})
    os.chmod(src / "a.py", 0o755)
    os.symlink("d.txt", src / "link")
    store = Store(tmp_path / "store")
    objects = ObjectStore(store.dir)
    sid = take_snapshot(list_source(src), objects, store.stat_cache_get, store.stat_cache_put)
    assert take_snapshot(list_source(src), objects, store.stat_cache_get, store.stat_cache_put) == sid
    assert len(list((store.dir / "objects").rglob("*"))) == 2 + 2, "two objects in two fan-out dirs"
    staging.stage(objects, LocalTransport(store.dir / "objects"), str(tmp_path / "out"),
                  staging.plan(objects, sid, {"run_id": "r"}))
    dest = tmp_path / "out" / "code"
    assert (dest / "b" / "c.py").read_text() == "same"
    assert os.access(dest / "a.py", os.X_OK) and not os.access(dest / "d.txt", os.X_OK)
    assert os.readlink(dest / "link") == "d.txt"
    (src / "d.txt").write_text("changed")
    assert take_snapshot(list_source(src), objects, store.stat_cache_get, store.stat_cache_put) != sid


def test_stat_cache_skips_rehashing_unchanged_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    make(src, {f"f{i}.py": str(i) for i in range(20)})
    old = 1_600_000_000
    for p in src.iterdir():
        os.utime(p, (old, old))
    store = Store(tmp_path / "store")
    objects = ObjectStore(store.dir)
    hashed: list[Path] = []
    real = snapshot.ObjectStore.add_file
    monkeypatch.setattr(snapshot.ObjectStore, "add_file", lambda self, p: hashed.append(p) or real(self, p))
    take_snapshot(list_source(src), objects, store.stat_cache_get, store.stat_cache_put)
    assert len(hashed) == 20
    hashed.clear()
    take_snapshot(list_source(src), objects, store.stat_cache_get, store.stat_cache_put)
    assert hashed == []
    (src / "f3.py").write_text("new content")
    os.utime(src / "f3.py", (old + 5, old + 5))
    take_snapshot(list_source(src), objects, store.stat_cache_get, store.stat_cache_put)
    assert hashed == [f"{src}/f3.py"]


def test_git_properties(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make(repo, {"t.py": "x"})
    git = ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q", "-b", "trunk"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://someone:s3cret@example.invalid/r.git"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    props = git_properties(repo)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert props["azureml.git.commit"] == head and props["mlflow.source.git.commit"] == head
    assert props["azureml.git.branch"] == "trunk"
    assert props["azureml.git.dirty"] == "False"
    assert props["azureml.git.repository_uri"] == "https://example.invalid/r.git", "credentials stripped"
    (repo / "t.py").write_text("changed")
    assert git_properties(repo)["azureml.git.dirty"] == "True"


def test_validate_shows_snapshot_summary(tmp_path: Path, home: Path) -> None:
    from .conftest import Project

    p = Project(tmp_path / "proj")
    p.write("t.py", "print(1)\n")
    (p.src / "weights.bin").write_bytes(b"\0" * 4096)
    job = p.job(script="t.py")
    r = p.cli("validate", str(job), "--json", check=True)
    d = r.json()
    assert d["snapshot"]["files"] == 2 and d["snapshot"]["bytes"] == 4096 + 9
    assert d["snapshot"]["largest"][0] == {"path": "weights.bin", "bytes": 4096}
    text = p.cli("validate", str(job), check=True).out
    assert "2 files" in text and "weights.bin" in text


def test_snapshot_over_limit_leaves_no_run(tmp_path: Path, home: Path) -> None:
    from .conftest import Project

    p = Project(tmp_path / "proj")
    (p.root / ".runctl").mkdir()
    (p.root / ".runctl" / "config.yaml").write_text("snapshot: {max_size_mb: 0.001}\n")
    p.write("t.py", "print(1)\n")
    (p.src / "big.bin").write_bytes(b"\0" * 10_000)
    r = p.cli("submit", str(p.job(script="t.py")))
    assert r.rc == 2 and "over the limit" in r.err and "big.bin" in r.err
    assert p.cli("list", "--json").json() == []
    assert not (home / "objects").exists()


def test_a_store_inside_the_source_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from .conftest import Project

    p = Project(tmp_path / "proj")
    monkeypatch.setenv("RUNCTL_HOME", str(p.src / ".store"))
    job = p.script_job("import os\nprint(sorted(os.listdir('.')))\n")
    run_id = p.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    again = p.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    assert "['job.py', 'logs', 'outputs']" in p.cli("logs", again).out
    assert run_id != again
