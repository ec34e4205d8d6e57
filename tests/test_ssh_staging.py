"""Staging on an SSH host: what the job finds in code/ is exactly the snapshot, whether it
was copied from the object cache, read from a pack, or made from the ready copy of earlier
code (the spare) and corrected; concurrent submits of the same code each get their own."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .conftest import Project
from .test_ssh_backend import HOST, _no_strays, _sshd, target  # noqa: F401  (the same fixtures)

LISTING = """
import hashlib, json, os, stat
out = {}
for d, dirs, files in os.walk("."):
    for n in dirs + files:
        p = os.path.join(d, n)[2:]
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            out[p] = ["link", os.readlink(p)]
        elif stat.S_ISDIR(st.st_mode):
            out[p] = ["dir"]
        else:
            out[p] = ["file", hashlib.sha256(open(p, "rb").read()).hexdigest(), bool(st.st_mode & 0o100)]
print("TREE " + json.dumps(out, sort_keys=True))
"""


def local_tree(src: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d, dirs, files in os.walk(src):
        for n in dirs + files:
            p = Path(d) / n
            rel = p.relative_to(src).as_posix()
            if p.is_symlink():
                out[rel] = ["link", os.readlink(p)]
            elif p.is_dir():
                out[rel] = ["dir"]
            else:
                out[rel] = ["file", hashlib.sha256(p.read_bytes()).hexdigest(), bool(p.stat().st_mode & 0o100)]
    return out


def job_tree(proj: Project, rid: str) -> dict[str, Any]:
    import json

    line = next(ln for ln in proj.cli("logs", rid, check=True).out.splitlines() if ln.startswith("TREE "))
    tree = json.loads(line[5:])
    assert tree.pop("logs") == ["link", "../logs"] and tree.pop("outputs") == ["link", "../outputs"]  # the launcher's
    return tree  # type: ignore[no-any-return]


def spare_settled(work: Path) -> None:
    """The host's background work (unpacking, the next ready copy) is done: nothing asked
    for (next.json) and no builder holding the lock."""
    import fcntl

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not (work / ".spare" / "next.json").exists():
            try:
                with open(work / ".spare" / ".lock") as f:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
            except FileNotFoundError:
                return
            except BlockingIOError:
                pass
        time.sleep(0.05)
    raise AssertionError("the spare builder did not finish")


def test_code_is_exactly_the_snapshot_through_every_kind_of_change(tmp_path: Path, home: Path) -> None:
    work = tmp_path / "remote"
    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(work), keep_run_dirs="all")})
    src = proj.src
    for i in range(30):
        (src / f"pkg{i % 3}").mkdir(exist_ok=True)
        (src / f"pkg{i % 3}" / f"m{i}.py").write_text(f"X = {i}\n")
    (src / "big.bin").write_bytes(os.urandom(600 << 10))  # a loose object (SFTP), beside packed small ones
    (src / "gone.txt").write_text("removed later\n")
    (src / "becomes_dir").write_text("a file first\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    job = proj.script_job(LISTING, compute_target="lab")
    seen = []
    for step in range(4):
        if step == 1:  # the same code again: from the ready copy untouched
            pass
        if step == 2:  # every kind of change
            (src / "pkg0" / "m0.py").write_text("X = 'changed'\n")
            (src / "gone.txt").unlink()
            (src / "becomes_dir").unlink()
            (src / "becomes_dir").mkdir()
            (src / "becomes_dir" / "inner.py").write_text("Y = 1\n")
            (src / "pkg2").rename(src / "pkg_renamed")
            os.symlink("pkg1/m1.py", src / "alias.py")
            os.chmod(src / "run.sh", 0o755)
            (src / "big.bin").write_bytes(os.urandom(600 << 10))
        if step == 3:  # back: the link becomes a file, the dir a file again
            os.unlink(src / "alias.py")
            (src / "alias.py").write_text("Z = 3\n")
            (src / "becomes_dir" / "inner.py").unlink()
            (src / "becomes_dir").rmdir()
            (src / "becomes_dir").write_text("a file again\n")
        spare_settled(work)
        ready = list((work / ".spare").glob("ready-*/code/pkg1/m1.py"))
        assert len(ready) == (0 if step == 0 else 1)
        inode = ready[0].stat().st_ino if ready else None
        rid = proj.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
        assert job_tree(proj, rid) == local_tree(src)
        if inode is not None:
            assert (work / rid / "code" / "pkg1" / "m1.py").stat().st_ino == inode, f"step {step}: made from the ready copy"
        seen.append(rid)
    spare_settled(work)
    assert not list((work / ".objects" / "packs").glob("*.idx")), "packs are unpacked in the background"
    assert len(list((work / ".spare").glob("ready-*"))) == 1, "one ready copy, of the last code"


def test_concurrent_submits_of_the_same_code_each_get_their_own_copy(tmp_path: Path, home: Path) -> None:
    work = tmp_path / "remote"
    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(work))})
    for i in range(50):
        (proj.src / f"m{i}.py").write_text(f"X = {i}\n")
    job = proj.script_job(LISTING + "open('m0.py', 'a').write('# mine\\n')\n", compute_target="lab")
    proj.cli("submit", str(job), "-q", "--wait", check=True)
    spare_settled(work)
    procs = [subprocess.Popen([sys.executable, "-m", "runctl", "submit", str(job), "-q", "--wait"], cwd=proj.root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    want = local_tree(proj.src)
    for out, _ in outs:
        assert job_tree(proj, out.strip()) == want, "a job's write to its code/ reaches no other run"


def test_a_large_upload_shows_its_progress_on_a_terminal(tmp_path: Path, home: Path) -> None:
    """On a terminal, one self-updating line; through a pipe (scripts, CI), nothing."""
    import pty

    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(tmp_path / "remote"))})
    (proj.src / "weights.bin").write_bytes(os.urandom(12 << 20))
    job = proj.script_job("print('done')\n", compute_target="lab")
    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "runctl", "submit", str(job), "-q", "--wait"], cwd=proj.root,
                         stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    out, _ = p.communicate(timeout=120)
    shown = b""
    while True:
        try:
            piece = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not piece:
            break
        shown += piece
    os.close(leader)
    assert p.returncode == 0
    lines = shown.decode().replace("\r\n", "\n").split("\n")
    final = [ln for ln in lines if "uploading code" in ln][-1].split("\r")[-1]
    import re

    done = re.search(r"runctl: uploading code: ([\d.]+) of ([\d.]+) MB, (\d+) of (\d+) files, [\d.]+ MB/s", final)
    assert done and done.group(1) == done.group(2) and float(done.group(1)) >= 12.5, shown  # (+ runctl's own files)
    assert done.group(3) == done.group(4), shown
    assert out.strip() and "uploading" not in out
    (proj.src / "weights.bin").write_bytes(os.urandom(12 << 20))
    piped = proj.cli("submit", str(job), "-q", "--wait", check=True)
    assert "uploading" not in piped.err, "no progress line into a pipe"


def test_gc_collects_on_the_host_only_what_this_store_holds_whole(tmp_path: Path, home: Path) -> None:
    work = tmp_path / "remote"
    proj = Project(tmp_path / "proj", {"lab": target(work_dir=str(work), keep_run_dirs="all")})
    (proj.src / "data.bin").write_bytes(os.urandom(300 << 10))
    job = proj.script_job("print('ran')\n", compute_target="lab")
    rid = proj.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    spare_settled(work)
    stranger = work / "other_store_run_1"  # a run of another store sharing this work_dir
    stranger.mkdir()
    (stranger / "status.json").write_text('{"state": "finished"}')
    assert (work / rid).is_dir() and list((work / ".objects").glob("??/*"))
    dry = proj.cli("gc", "--dry-run", "--older-than", "0", check=True)
    assert f"{HOST}:{work / rid}" in dry.out and (work / rid).is_dir(), "a dry run removes nothing"
    r = proj.cli("gc", "--older-than", "0", check=True)
    assert f"{HOST}:{work / rid}" in r.out and not (work / rid).exists()
    assert not list((work / ".objects").glob("??/*")) and not list((work / ".spare").glob("ready-*"))
    assert stranger.is_dir(), "a run directory this store did not name is never touched"
    again = proj.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    assert "ran" in proj.cli("logs", again, check=True).out, "the next submit uploads what it needs again"
