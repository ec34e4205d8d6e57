"""Hardening, second pass, on this machine: what a job leaves in RUN_DIR (status.json of the
wrong types, folders thousands deep, a device node) cannot crash or steer runctl, and `gc`
removes only what its own store made."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Project, require_service, wait_for


def test_a_status_json_of_the_wrong_types_never_breaks_the_listing(project: Project) -> None:
    """The job writes a finished status.json with impossible values, then kills its launcher
    (and so itself): status, show and list still answer for the whole store, and the run
    records what could be used, with a warning."""
    ok = project.cli("submit", str(project.script_job("print('fine')\n", name="ok.yaml")), "--wait", "-q", check=True)
    job = project.script_job("""
        import json, os, signal
        rd = os.environ["RUNCTL_RUN_DIR"]
        st = json.load(open(os.path.join(rd, "status.json")))
        launcher = st["launcher_pid"]
        st.update(state="finished", reason="exit", exit_code={"not": "a code"}, start_time="yesterday",
                  end_time=10 ** 30, launcher_pid=10 ** 30, host=["x"], error=7)
        with open(os.path.join(rd, "status.tmp"), "w") as f:
            json.dump(st, f)
        os.replace(os.path.join(rd, "status.tmp"), os.path.join(rd, "status.json"))
        os.kill(launcher, signal.SIGKILL)
        """, name="bad.yaml")
    rid = project.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: project.cli("status", rid, "--json", check=True).json()["status"] in ("Failed", "Completed"),
             what="the run to end")
    for _ in range(2):  # and again, once it is recorded
        st = project.cli("status", rid, "--json", check=True).json()
        assert st["status"] == "Failed" and st["exit_code"] is None and st["started_at"] is None, st
        listed = project.cli("list", "--json", check=True).json()
        assert {r["id"] for r in listed} == {rid, ok.out.strip()}
        show = project.cli("show", rid, "--json", check=True).json()
        assert "exit_code" in show["properties"]["runctl.status_warning"]


@pytest.fixture
def deep_cleanup(tmp_path: Path) -> Any:
    """pytest's own clean-up of old temporary folders recurses: leave no deep tree behind."""
    yield
    from runctl.job import safefs

    for child in tmp_path.iterdir():
        safefs.remove_tree(str(child))


@pytest.mark.parametrize("where", ["outputs", "logs"])
def test_folders_thousands_deep_are_reported_not_followed(project: Project, where: str, deep_cleanup: None) -> None:
    job = project.script_job(f"""
        import os
        fd = os.open({where!r}, os.O_RDONLY)
        for i in range(3000):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(os.open("deepest.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
        open(os.path.join({where!r}, "shallow.txt"), "w").write("kept")
        print("nested", flush=True)
        """)
    r = project.cli("submit", str(job), "--wait", "-q")
    assert r.rc == 0, r.err
    rid = r.out.strip()
    for cmd in (("status", rid), ("list",), ("wait", rid), ("show", rid)):
        assert project.cli(*cmd).rc == 0
    skipped = json.loads(project.cli("show", rid, "--json", check=True).json()["properties"]["runctl.skipped_files"])
    assert any("too deep" in s for s in skipped), skipped
    if where == "outputs":
        assert project.cli("outputs", rid, str(project.root / "got"), check=True).rc == 0
        assert (project.root / "got" / "shallow.txt").read_text() == "kept"


def test_a_device_node_in_place_of_status_json_is_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A root job can put a device node where runctl reads: runctl looks (lstat, no link
    followed) before it opens, so the device is never opened (opening one can have effects)."""
    from runctl.backends import hostdir
    from runctl.job import safefs

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.mknod(run_dir / "status.json", 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    opened: list[str] = []
    real_open = os.open

    def spy(path: object, flags: int, *args: object, **kw: object) -> int:
        opened.append(str(path))
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(safefs.os, "open", spy)
    assert hostdir.read_status(str(run_dir)) == {}
    assert safefs.read_file(str(run_dir), "status.json", 0, 10) == b""
    assert not safefs.exists(str(run_dir), "status.json")
    assert "status.json" not in opened, opened


def test_gc_removes_only_what_its_own_store_named(tmp_path: Path, home: Path) -> None:
    """A local target's work_dir that also holds a user's folder and another store's running
    run: gc of this store leaves both, and the other store's run ends whole."""
    work = tmp_path / "shared work"
    mine = Project(tmp_path / "mine", {"here": {"type": "local", "work_dir": str(work), "keep_run_dirs": "all"}})
    theirs_home = tmp_path / "their store"
    theirs = Project(tmp_path / "theirs", {"here": {"type": "local", "work_dir": str(work)}})
    kept = mine.cli("submit", str(mine.script_job("print(1)\n", compute_target="here")), "--wait", "-q",
                    check=True).out.strip()
    user = work / "my notes"
    user.mkdir()
    (user / "todo.txt").write_text("keep me")
    env = {"RUNCTL_HOME": str(theirs_home)}
    job = theirs.script_job("""
        import time
        from azureml.core import Run
        run = Run.get_context()
        for i in range(30):
            run.log("i", i)
            print("tick", i, flush=True)
            time.sleep(0.1)
        """, compute_target="here")
    other = theirs.cli("submit", str(job), "-q", env=env, check=True).out.strip()
    wait_for(lambda: "tick 2" in theirs.cli("logs", other, env=env).out, what="their run to start")
    old = time.time() - 30 * 86400
    for p in (user, work / other, work / kept):
        os.utime(p, (old, old))
    for value in ("nan", "inf", "-1"):
        r = mine.cli("gc", "--older-than", value)
        assert r.rc == 2 and "older-than" in r.err.lower(), (value, r.err)
    listed = mine.cli("gc", "--dry-run", "--older-than", "0", check=True).out
    assert str(work / kept) in listed and str(user) not in listed and other not in listed
    mine.cli("gc", "--older-than", "0", check=True)
    assert (user / "todo.txt").read_text() == "keep me"
    assert not (work / kept).exists(), "its own finished run's folder goes"
    assert theirs.cli("wait", other, "--timeout", "60", env=env).rc == 0
    assert theirs.cli("metrics", other, "--json", env=env, check=True).json()["i"] == list(range(30))


@pytest.mark.parametrize("target", ["local", "docker"])
def test_sparse_outputs_stay_sparse_hard_links_come_once_and_a_ceiling_holds(tmp_path: Path, home: Path,
                                                                                target: str) -> None:
    """A 2 GB sparse output and a hard link to it: the store holds one copy, still sparse; a
    file past the workspace's outputs.max_size_mb is left out, and the run says so."""
    import yaml

    targets = {"here": {"type": "local"}}
    extra: dict[str, Any] = {}
    if target == "docker":
        from .test_docker_backend import IMAGE, docker_ready

        require_service("dockerd", docker_ready(), "run tests/infra/up-docker.sh")
        targets = {"here": {"type": "docker"}}
        extra = {"environment": {"docker": {"image": IMAGE}}}
    proj = Project(tmp_path / "proj", targets)
    config = proj.root / ".runctl" / "config.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "outputs": {"max_size_mb": 2100}}))
    job = proj.script_job("""
        import os
        os.makedirs("outputs", exist_ok=True)
        with open("outputs/big.bin", "wb") as f:
            f.truncate(2 << 30)
            f.write(b"head")
        os.link("outputs/big.bin", "outputs/same.bin")
        open("outputs/small.txt", "w").write("s")
        with open("outputs/zz-over.bin", "wb") as f:
            f.truncate(200 << 20)
        """, compute_target="here", **extra)
    r = proj.cli("submit", str(job), "--wait", "-q", timeout=300)
    assert r.rc == 0, r.err
    rid = r.out.strip()
    stored = home / "runs" / rid / "outputs"
    big = (stored / "big.bin").stat()
    assert big.st_size == 2 << 30 and big.st_blocks * 512 < (16 << 20), "kept sparse"
    with (stored / "big.bin").open("rb") as f:
        assert f.read(4) == b"head"
    assert not (stored / "same.bin").exists() and (stored / "small.txt").read_text() == "s"
    assert not (stored / "zz-over.bin").exists()
    skipped = json.loads(proj.cli("show", rid, "--json", check=True).json()["properties"]["runctl.skipped_files"])
    assert any("same.bin (another name" in s for s in skipped), skipped
    assert any("zz-over.bin" in s and "outputs.max_size_mb" in s for s in skipped), skipped


def test_a_cancel_after_the_job_hid_its_control_folder_ends_canceled(project: Project, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    job = project.script_job(f"""
        import os, time
        rd = os.environ["RUNCTL_RUN_DIR"]
        os.rename(os.path.join(rd, ".runctl"), os.path.join(rd, ".runctl-moved"))
        os.symlink({str(elsewhere)!r}, os.path.join(rd, ".runctl"))
        print("hidden", flush=True)
        time.sleep(600)
        """)
    rid = project.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: "hidden" in project.cli("logs", rid).out, what="the job to hide .runctl")
    assert project.cli("cancel", rid).rc == 0
    assert project.cli("wait", rid, "--timeout", "60").rc == 130
    assert project.cli("status", rid, check=True).out.strip() == "Canceled"
    assert list(elsewhere.iterdir()) == []
