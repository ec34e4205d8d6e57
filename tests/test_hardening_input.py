"""Hostile input is exit 2, one line naming where, and nothing is created."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from runctl.errors import InputError
from runctl.store.snapshot import _strip_credentials

from .conftest import Project, run_cli

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize(("text", "where", "what"), [
    (BOMB, ":1:", "alias bomb"),
    ("script: t.py\nexperiment: " + "9" * 5000 + "\n", ":2:", "4300 digits"),
    ("script: t.py\nx: " + "[" * 500 + "]" * 500 + "\n", ":2:", "levels deep"),
    ("script: t.py\nenvironment: &e\n  python: *e\n", ":2:", "contains it"),
])
def test_hostile_yaml_is_refused_fast(project: Project, text: str, where: str, what: str) -> None:
    project.write("t.py", "print(1)\n")
    job = project.root / "job.yaml"
    job.write_text(text)
    t0 = time.monotonic()
    r = project.cli("validate", str(job), timeout=30)
    assert r.rc == 2 and where in r.err and what in r.err and len(r.err.splitlines()) == 1, r.err
    assert time.monotonic() - t0 < 30  # (the bomb took 56 s and 3 GB before)


@pytest.mark.parametrize(("fields", "expect"), [
    ({"max_run_duration_seconds": 10**20}, "max_run_duration_seconds"),
    ({"arguments": ["ok", "a\x00b"]}, "arguments[1]: contains a NUL byte"),
    ({"environment": {"environment_variables": {"V": "x\x00"}}}, "environment.environment_variables.V: contains a NUL"),
    ({"experiment": "exp\n"}, "experiment"),
    ({"experiment": "e" * 250}, "experiment"),
    ({"display_name": "\x1b]0;pwned\x07"}, "display_name"),
])
def test_values_that_would_fail_the_run_are_refused(project: Project, fields: dict, expect: str) -> None:
    job = project.script_job("print(1)\n", **fields)
    for cmd in ("validate", "submit"):
        r = project.cli(cmd, str(job))
        assert r.rc == 2 and "job.yaml:" in r.err and expect in r.err, r.err
        assert "\x1b" not in r.err and "\x00" not in r.err
    assert project.cli("list", "--json").json() == []


def test_script_left_out_by_gitignore_is_refused(project: Project) -> None:
    job = project.script_job("print(1)\n")
    project.write(".gitignore", "*.py\n")
    for cmd in ("validate", "submit"):
        r = project.cli(cmd, str(job))
        assert r.rc == 2 and "left out of the snapshot" in r.err and "job.py" in r.err, r.err
    assert project.cli("list", "--json").json() == []


def _non_utf8_name(src: Path) -> None:
    with open(os.fsencode(src) + b"/n\xff.bin", "wb") as f:
        f.write(b"x")


@pytest.mark.parametrize(("setup", "expect"), [
    (_non_utf8_name, "not valid UTF-8"),
    (lambda src: (src / ".gitignore").write_bytes(b"ok\n\xff\xfe\n"), ".gitignore: not UTF-8"),
    (lambda src: (src / ".gitignore").write_text("ok\n!\n"), ".gitignore:2: invalid pattern"),
])
def test_bad_source_trees_are_exit_2(project: Project, setup, expect: str) -> None:
    job = project.script_job("print(1)\n")
    setup(project.src)
    r = project.cli("submit", str(job))
    assert r.rc == 2 and expect in r.err and "Traceback" not in r.err, r.err


request_cleanup: list[Path] = []


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    while request_cleanup:
        shutil.rmtree(request_cleanup.pop(), ignore_errors=True)


def _as_nobody(fn) -> str:
    """Run ``fn()`` in a forked child that has dropped root (root reads everything); returns
    the InputError it raised ("" if none)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgid(65534)
            os.setuid(65534)
            fn()
            out = ""
        except InputError as e:
            out = "InputError: " + str(e)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            out = f"{type(e).__name__}: {e}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    return data.decode()


def test_unreadable_source_is_exit_2(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    tmp_path = Path(tempfile.mkdtemp(prefix="runctl-nobody-", dir="/tmp"))  # reachable by nobody
    request_cleanup.append(tmp_path)
    src = tmp_path / "src"
    (src / "private").mkdir(parents=True)
    (src / "secret.txt").write_text("x")
    os.chmod(src / "secret.txt", 0o000)
    os.chmod(src / "private", 0o000)
    store = tmp_path / "store"
    store.mkdir()
    for p in (tmp_path, src, store):
        os.chmod(p, 0o777)
    import pathspec  # noqa: F401  (imported while root: nobody may not read this venv, e.g. under a 0700 mktemp)

    from runctl.store.snapshot import ObjectStore, list_source, take_snapshot

    err = _as_nobody(lambda: list_source(src))
    assert err.startswith("InputError: ") and "private: cannot read this directory" in err, err
    (src / ".runctlignore").write_text("private/\n")
    err = _as_nobody(lambda: take_snapshot(list_source(src), ObjectStore(store), lambda k: {}, lambda rows: None))
    assert err.startswith("InputError: ") and "secret.txt: cannot read this file" in err, err


def test_the_store_as_source_directory_is_exit_2(project: Project, home: Path) -> None:
    project.write("t.py", "print(1)\n")
    project.cli("submit", str(project.job(script="t.py")), "--wait", check=True)
    (home / "t.py").write_text("print(1)\n")
    job = project.root / "store-job.yaml"
    job.write_text(f"source_directory: {home}\nscript: t.py\n")
    r = project.cli("submit", str(job))
    assert r.rc == 2 and "runctl's store" in r.err, r.err


def test_small_ones(project: Project) -> None:
    project.write("t.py", "print(1)\n")
    rid = project.cli("submit", str(project.job(script="t.py")), "-q", "--wait", check=True).out.strip()
    assert project.cli("status", rid[:8]).rc == 0
    assert project.cli("status", rid[:8].upper()).rc == 2, "run references are case-sensitive"
    r = project.cli("status", "x" * 50_000)
    assert r.rc == 2 and len(r.err) < 300 and "Traceback" not in r.err
    assert project.cli("list", "--limit", "-5").rc == 2
    r = project.cli("submit", str(project.job("cmd.yaml", command=["/nonexistent"])))
    assert r.rc == 2 and "'/nonexistent'" in r.err and "command" in r.err and "interpreter_path" not in r.err, r.err
    assert _strip_credentials("https://gitlab.example/g/r.git?private_token=SECRET") == "https://gitlab.example/g/r.git"
    assert _strip_credentials("https://u:SECRET@h/r.git") == "https://h/r.git"
    assert _strip_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"


def test_rerun_of_a_child_run_says_what_to_do(project: Project) -> None:
    job = project.script_job("from azureml.core import Run\nRun.get_context().child_run().log('x', 1)\n")
    rid = project.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    child = project.cli("show", rid, "--json", check=True).json()["children"][0]
    r = project.cli("rerun", child)
    assert r.rc == 2 and f"runctl rerun {rid}" in r.err, r.err


def test_unsafe_docker_mounts_are_refused_before_a_run_exists(tmp_path: Path, home: Path) -> None:
    for source in ("/", str(home), str(home.parent)):
        proj = Project(tmp_path / f"p{len(source)}", {"d": {"type": "docker", "image": "any", "mounts": [f"{source}:/h:rw"]}})
        job = proj.script_job("print(1)\n", compute_target="d")
        r = proj.cli("submit", str(job))
        assert r.rc == 2 and "allow_unsafe_mounts" in r.err, r.err
        assert run_cli("list", "--json", cwd=proj.root).json() == []
