"""A job's Python packages (environment.python.pip_packages / pip_requirements) built once per
host into a cached virtual environment by the launcher (runctl/job/pyenv.py): real builds
from a wheelhouse (a host without internet: find_links + no_index) and from the package
index this machine reaches; concurrent submits; a bad requirement; a cancel mid-build."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from .conftest import Project, wait_for


def make_wheel(where: Path, name: str = "fakepkg", version: str = "1.0", value: int = 42) -> Path:
    """A real (pure-Python) wheel, made by hand: pip installs it as any other."""
    where.mkdir(parents=True, exist_ok=True)
    wheel = where / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"VALUE = {value}\n".encode(),
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: runctl-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
        z.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    make_wheel(tmp_path / "wheels")
    return tmp_path / "wheels"


def offline_target(wheelhouse: Path, **more: Any) -> dict[str, Any]:
    return {"type": "local", "python_packages": {"find_links": [str(wheelhouse)], "no_index": True}, **more}


USES_IT = "import fakepkg\nprint('value', fakepkg.VALUE, flush=True)\n"


def env_job(project: Project, envs: Path, code: str = USES_IT, name: str = "job.yaml", **python: Any) -> Path:
    python = python or {"pip_packages": ["fakepkg==1.0"]}
    return project.script_job(code, name=name, compute_target="box", environment={
        "python": python, "environment_variables": {"RUNCTL_ENV_ROOT": str(envs)}})


def test_built_once_then_reused_and_recorded(tmp_path: Path, home: Path, wheelhouse: Path) -> None:
    project = Project(tmp_path / "proj", {"box": offline_target(wheelhouse)})
    envs = tmp_path / "envs"
    job = env_job(project, envs)
    first = project.cli("submit", str(job), "--wait", "-q", check=True, timeout=300).out.strip()
    assert "value 42" in project.cli("logs", first, check=True).out
    shown = project.cli("show", first, "--json", check=True).json()
    assert shown["environment_record"]["packages"]["fakepkg"] == "1.0"
    built = [d for d in envs.iterdir() if d.is_dir()]
    assert len(built) == 1 and (built[0] / ".runctl-env.json").exists()
    assert "built the environment" in (home / "runs" / first / "logs" / "environment.txt").read_text()
    second = project.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    assert "reusing the environment" in (home / "runs" / second / "logs" / "environment.txt").read_text()
    assert [d for d in envs.iterdir() if d.is_dir()] == built
    # a requirements file in the source directory defines the same environment
    project.write("requirements.txt", "# pinned\nfakepkg==1.0\n")
    third = project.cli("submit", str(env_job(project, envs, pip_requirements="requirements.txt")), "--wait", "-q",
                        check=True).out.strip()
    assert "reusing the environment" in (home / "runs" / third / "logs" / "environment.txt").read_text()


def test_ten_concurrent_submits_build_it_once(tmp_path: Path, home: Path, wheelhouse: Path) -> None:
    project = Project(tmp_path / "proj", {"box": offline_target(wheelhouse)})
    envs = tmp_path / "envs"
    job = env_job(project, envs)
    procs = [project.popen("submit", str(job), "-q") for _ in range(10)]
    ids = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(ids) and len(set(ids)) == 10
    for rid in ids:
        assert project.cli("wait", rid, "--timeout", "300").rc == 0
    logs = [(home / "runs" / rid / "logs" / "environment.txt").read_text() for rid in ids]
    assert sum("built the environment" in log for log in logs) == 1, logs
    assert sum("reusing the environment" in log for log in logs) == 9
    assert len([d for d in envs.iterdir() if d.is_dir()]) == 1


def test_a_bad_requirement_fails_the_run_and_leaves_the_cache_clean(tmp_path: Path, home: Path,
                                                                     wheelhouse: Path) -> None:
    project = Project(tmp_path / "proj", {"box": offline_target(wheelhouse)})
    envs = tmp_path / "envs"
    job = env_job(project, envs, pip_packages=["no-such-package-runctl-test==9.9"])
    r = project.cli("submit", str(job), "--wait", "-q", timeout=300)
    assert r.rc == 3, (r.rc, r.err)
    rid = project.cli("list", "--json", check=True).json()[0]["id"]
    shown = project.cli("show", rid, "--json", check=True).json()
    assert shown["status"] == "Failed" and "no-such-package-runctl-test" in shown["error"]["message"]
    assert "building the environment failed" in shown["error"]["message"]
    assert not [d for d in envs.iterdir() if d.is_dir()], "no half-built environment"
    assert "building the environment failed" in project.cli("logs", rid, check=True).out


def test_cancel_during_a_build_stops_it(tmp_path: Path, home: Path, wheelhouse: Path) -> None:
    slow = tmp_path / "slow-uv"
    marker = tmp_path / "installer-ran"
    slow.write_text(f"#!/bin/sh\ntouch {marker}\nexec sleep 300\n")
    slow.chmod(0o755)
    project = Project(tmp_path / "proj", {"box": offline_target(wheelhouse)})
    envs = tmp_path / "envs"
    job = project.script_job(USES_IT, compute_target="box", environment={
        "python": {"pip_packages": ["fakepkg==1.0"]},
        "environment_variables": {"RUNCTL_ENV_ROOT": str(envs), "RUNCTL_UV": str(slow)}})
    rid = project.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: marker.exists(), timeout_s=60, what="the installer to start")
    assert project.cli("status", rid, "--json", check=True).json()["status"] == "Preparing"
    assert project.cli("cancel", rid).rc == 0
    assert project.cli("wait", rid, "--timeout", "60").rc != 0
    assert project.cli("status", rid, "--json", check=True).json()["status"] == "Canceled"
    assert not [d for d in envs.iterdir() if d.is_dir()], "the half-built environment is gone"
    import subprocess

    assert subprocess.run(["pgrep", "-f", str(slow)], capture_output=True).returncode == 1, "the installer was stopped"


def test_fields_that_cannot_go_together_are_refused_before_a_run_exists(tmp_path: Path, home: Path,
                                                                        wheelhouse: Path) -> None:
    project = Project(tmp_path / "proj", {"box": offline_target(wheelhouse)})
    envs = tmp_path / "envs"
    for python, says in (({"pip_packages": ["x"], "user_managed_dependencies": True}, "user_managed_dependencies"),
                         ({"conda_dependencies_file": "env.yml"}, "conda"),
                         ({"pip_requirements": "missing.txt"}, "missing.txt")):
        r = project.cli("submit", str(env_job(project, envs, **python)), "-q")
        assert r.rc == 2 and says in r.err, (python, r.err)
    assert project.cli("list", "--json", check=True).json() == []


def test_a_real_package_from_the_index_this_machine_reaches(tmp_path: Path, home: Path) -> None:
    project = Project(tmp_path / "proj", {"box": {"type": "local"}})
    envs = tmp_path / "envs"
    job = env_job(project, envs, code="import six\nprint('six', six.__version__, flush=True)\n",
                  pip_packages=["six==1.16.0"])
    rid = project.cli("submit", str(job), "--wait", "-q", check=True, timeout=600).out.strip()
    assert "six 1.16.0" in project.cli("logs", rid, check=True).out
    record = project.cli("show", rid, "--json", check=True).json()["environment_record"]
    assert record["packages"]["six"] == "1.16.0" and json.dumps(record)


def test_built_on_the_ssh_host_and_by_slurm(tmp_path: Path, home: Path, wheelhouse: Path) -> None:
    """The same job on the test SSH host (a host without internet: the wheelhouse) and on the
    tests' Slurm cluster: each builds the environment where the job runs (the target's
    env_root), and `runctl env list` / `env rm` see it there (through the agent on SSH)."""
    from .conftest import require_service
    from .test_slurm_backend import local_target, slurm_ready
    from .test_ssh_backend import ssh_ready, target

    require_service("sshd", ssh_ready(), "run tests/infra/up.sh")
    require_service("slurm", slurm_ready(), "run tests/infra/up.sh")
    where = {"python_packages": {"find_links": [str(wheelhouse)], "no_index": True}}
    project = Project(tmp_path / "proj", {
        "box": target(work_dir=str(tmp_path / "remote"), env_root=str(tmp_path / "ssh-envs"), **where),
        "cluster": local_target(tmp_path, env_root=str(tmp_path / "slurm-envs"), **where)})
    job = project.script_job(USES_IT, environment={"python": {"pip_packages": ["fakepkg==1.0"]}})
    for compute, envs in (("box", tmp_path / "ssh-envs"), ("cluster", tmp_path / "slurm-envs")):
        rid = project.cli("submit", str(job), "--compute", compute, "--wait", "-q", check=True, timeout=300).out.strip()
        assert "value 42" in project.cli("logs", rid, check=True).out, compute
        assert len([d for d in envs.iterdir() if d.is_dir()]) == 1, compute
        record = project.cli("show", rid, "--json", check=True).json()["environment_record"]
        assert record["packages"]["fakepkg"] == "1.0" and record["python"]["executable"].startswith(str(envs))
        [env] = project.cli("env", "list", compute, "--json", check=True).json()
        assert env["path"].startswith(str(envs)) and env["runs"] == 1, env
        assert "removed" in project.cli("env", "rm", compute, env["key"], check=True).out
        assert not [d for d in envs.iterdir() if d.is_dir()], compute


def test_no_field_its_target_cannot_honour_is_dropped_silently(tmp_path: Path, home: Path) -> None:
    project = Project(tmp_path / "proj", {"box": {"type": "local"}})
    packages = project.script_job("print(1)\n", compute_target="box",
                                  environment={"docker": {"base_image": "python:3.11", "pip_packages": ["six"]}})
    r = project.cli("submit", str(packages), "-q")
    assert r.rc == 2 and "environment.docker.pip_packages" in r.err and "'box' (local)" in r.err
    assert "environment.python.pip_packages" in r.err, "says what to do"
    image = project.script_job("print('ran')\n", name="image.yaml", compute_target="box",
                               environment={"docker": {"image": "python:3.11", "shm_size": "2g"}})
    r = project.cli("submit", str(image), "-q", "--wait")
    assert r.rc == 0 and "environment.docker.image, environment.docker.shm_size ignored on target 'box' (local)" in r.err


def test_env_list_rm_and_gc(tmp_path: Path, home: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    envs = tmp_path / "envs"
    monkeypatch.setenv("RUNCTL_ENV_ROOT", str(envs))  # (what runctl and its local launcher both see)
    project = Project(tmp_path / "proj", {"box": offline_target(wheelhouse)})
    job = project.script_job(USES_IT, compute_target="box", environment={"python": {"pip_packages": ["fakepkg==1.0"]}})
    rid = project.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    [env] = project.cli("env", "list", "box", "--json", check=True).json()
    assert env["requirements"] == ["fakepkg==1.0"] and env["runs"] == 1 and env["bytes"] > 0 and not env["in_use"]
    assert env["key"] in project.cli("env", "list", check=True).out
    # a job running from it keeps it, from `env rm` and from gc
    sleeper = project.script_job("import time\nprint('up', flush=True)\ntime.sleep(60)\n", name="sleep.yaml",
                                 compute_target="box", environment={"python": {"pip_packages": ["fakepkg==1.0"]}})
    running = project.cli("submit", str(sleeper), "-q", check=True).out.strip()
    wait_for(lambda: "up" in project.cli("logs", running).out, timeout_s=60, what="the job to run")
    assert project.cli("env", "list", "box", "--json", check=True).json()[0]["in_use"]
    r = project.cli("env", "rm", "box", env["key"])
    assert r.rc == 2 and "a job runs from it" in r.err
    assert project.cli("gc", "--older-than", "0", check=True).rc == 0
    assert Path(env["path"]).is_dir()
    project.cli("cancel", running, check=True)
    project.cli("wait", running, "--timeout", "60")
    gone = project.cli("gc", "--older-than", "0", "--dry-run", check=True)
    assert env["path"] in gone.out and Path(env["path"]).is_dir(), gone.out
    assert "removed" in project.cli("env", "rm", "box", env["key"], check=True).out
    assert not Path(env["path"]).exists() and project.cli("env", "list", "box", "--json", check=True).json() == []
    assert rid


STAND_IN_MICROMAMBA = """#!/bin/sh
# A stand-in for micromamba (this machine has no conda): `create --yes --prefix P --file F`
# makes P a Python environment and records the file it was given.
while [ $# -gt 0 ]; do
  case "$1" in --prefix) prefix=$2; shift;; --file) file=$2; shift;; esac
  shift
done
echo "stand-in micromamba: creating $prefix"
python3 -m venv "$prefix" && cp "$file" "$prefix/conda-file.yml"
"""


def test_a_conda_file_is_built_with_the_hosts_conda_tool_or_says_what_to_install(tmp_path: Path, home: Path) -> None:
    project = Project(tmp_path / "proj", {"box": {"type": "local"}})
    envs = tmp_path / "envs"
    project.write("environment.yml", "name: demo\ndependencies:\n  - python=3.11\n")
    job = env_job(project, envs, code="import sys\nprint('prefix', sys.prefix, flush=True)\n",
                  conda_dependencies_file="environment.yml")
    bare = {"PATH": "/usr/bin:/bin"}  # (no conda tool on it)
    r = project.cli("submit", str(job), "--wait", "-q", env=bare, timeout=120)
    assert r.rc == 3, r.err
    rid = project.cli("list", "--json", check=True).json()[0]["id"]
    assert "needs micromamba, mamba or conda on the host" in project.cli("show", rid, "--json", check=True).json()[
        "error"]["message"]
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "micromamba").write_text(STAND_IN_MICROMAMBA)
    (tools / "micromamba").chmod(0o755)
    rid = project.cli("submit", str(job), "--wait", "-q", env={"PATH": f"{tools}:/usr/bin:/bin"}, check=True,
                      timeout=120).out.strip()
    [built] = [d for d in envs.iterdir() if d.is_dir()]
    assert f"prefix {built}" in project.cli("logs", rid, check=True).out
    assert "stand-in micromamba: creating" in project.cli("logs", rid, check=True).out, "the build shows in the log"
    assert (built / "conda-file.yml").read_text() == "name: demo\ndependencies:\n  - python=3.11\n"


def test_a_killed_build_is_never_used_and_the_next_run_builds_afresh(tmp_path: Path, home: Path,
                                                                      wheelhouse: Path) -> None:
    import os
    import signal
    import subprocess

    slow = tmp_path / "slow-uv"
    marker = tmp_path / "installer-ran"
    slow.write_text(f"#!/bin/sh\nmkdir -p \"$4\"\ntouch \"$4/half-built\" {marker}\nexec sleep 300\n")  # uv venv --python B DIR
    slow.chmod(0o755)
    project = Project(tmp_path / "proj", {"box": offline_target(wheelhouse)})
    envs = tmp_path / "envs"
    killed = project.script_job(USES_IT, name="killed.yaml", compute_target="box", environment={
        "python": {"pip_packages": ["fakepkg==1.0"]},
        "environment_variables": {"RUNCTL_ENV_ROOT": str(envs), "RUNCTL_UV": str(slow)}})
    rid = project.cli("submit", str(killed), "-q", check=True).out.strip()
    wait_for(lambda: marker.exists(), timeout_s=60, what="the installer to start")
    status = json.loads((home / "work" / rid / "status.json").read_text())
    os.kill(status["launcher_pid"], signal.SIGKILL)  # a build killed midway (an OOM kill, a reboot)
    wait_for(lambda: subprocess.run(["pgrep", "-f", str(slow)], capture_output=True).returncode == 1, timeout_s=30,
             what="the installer to die with its launcher")
    assert [p.name for p in envs.iterdir() if p.is_dir()] and not [p for p in envs.iterdir() if p.is_dir()
                                                                   and ".building-" not in p.name]
    rid2 = project.cli("submit", str(env_job(project, envs)), "--wait", "-q", check=True, timeout=300).out.strip()
    assert "value 42" in project.cli("logs", rid2, check=True).out
    assert [p.name for p in envs.iterdir() if p.is_dir() and ".building-" in p.name] == [], "the leftover is gone"
    assert project.cli("wait", rid, "--timeout", "60").rc != 0


def test_uv_builds_it_when_the_base_interpreter_has_it(tmp_path: Path, home: Path, wheelhouse: Path) -> None:
    """uv, where it can be had: here a base interpreter with uv installed into it (uv ships as a
    wheel), from the index this machine reaches."""
    import subprocess
    import sys

    base = tmp_path / "base"
    subprocess.run([sys.executable, "-m", "venv", str(base)], check=True)
    subprocess.run([str(base / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "uv"],
                   check=True, timeout=300)
    project = Project(tmp_path / "proj", {"box": offline_target(wheelhouse)})
    envs = tmp_path / "envs"
    job = env_job(project, envs, pip_packages=["fakepkg==1.0"], interpreter_path=str(base / "bin" / "python"))
    rid = project.cli("submit", str(job), "--wait", "-q", check=True, timeout=300).out.strip()
    assert "value 42" in project.cli("logs", rid, check=True).out
    assert "building the environment with uv" in (home / "runs" / rid / "logs" / "environment.txt").read_text()
