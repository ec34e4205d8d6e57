"""The conformance suite every backend passes: pytest classes to subclass in a test module.

- ``BackendContract``: real jobs through the real CLI. A backend joins by providing
  ``target_config`` (its compute target's fields in .runctl/config.yaml, ``type`` included:
  a backend of another package registers its type through the ``runctl.backends`` entry
  point group) and optionally ``job_extra`` (job fields it needs, e.g. a docker image).
- ``BackendMethods``: the contract method by method, as core drives it (below).
- ``WatchingMethods``: for backends whose ``wait_for_change`` watches the run.

The jobs use only the standard library, so they run in any image with Python >= 3.8. Each
class brings its own ``home`` fixture: a private store for the test (RUNCTL_HOME).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from runctl.testing import rig as core
from runctl.testing.project import Project, isolated_home, wait_for

TARGET = "under-test"


class Isolated:
    """A fresh store (RUNCTL_HOME) and config folders for each test; no run context inherited."""

    @pytest.fixture
    def home(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        return isolated_home(tmp_path, monkeypatch)


class BackendContract(Isolated):
    project_class: type[Project] = Project  # a test suite may write its configs its own way

    @pytest.fixture
    def target_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @pytest.fixture
    def job_extra(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def proj(self, tmp_path: Path, home: Path, target_config: dict[str, Any], job_extra: dict[str, Any]) -> Project:
        p = self.project_class(tmp_path / "proj", {TARGET: {**target_config, "cancel_grace_s": 2}})
        p.extra = {"compute_target": TARGET, **job_extra}  # type: ignore[attr-defined]
        return p

    def submit(self, proj: Project, code: str, *extra_args: str, **fields: Any) -> str:
        job = proj.script_job(code, **{**proj.extra, **fields})  # type: ignore[attr-defined]
        r = proj.cli("submit", str(job), "-q", *extra_args, check=True)
        return r.out.strip()

    def status(self, proj: Project, run_id: str) -> dict[str, Any]:
        return proj.cli("status", run_id, "--json", check=True).json()  # type: ignore[no-any-return]

    def test_submit_completes_with_logs_and_metrics(self, proj: Project) -> None:
        job = proj.script_job(
            """
            import sys
            from azureml.core import Run
            run = Run.get_context()
            print("hello from", run.id)
            print("to stderr", file=sys.stderr)
            for i in range(3):
                run.log("loss", 1.0 / (i + 1))
            run.log("accuracy", 0.9)
            """,
            **proj.extra,  # type: ignore[attr-defined]
        )
        r = proj.cli("submit", str(job), "--wait", "-q")
        assert r.rc == 0, r.err
        run_id = r.out.strip()
        st = self.status(proj, run_id)
        assert st["status"] == "Completed" and st["exit_code"] == 0
        logs = proj.cli("logs", run_id, check=True).out
        assert f"hello from {run_id}" in logs and "to stderr" in logs
        m = proj.cli("metrics", run_id, "--json", check=True).json()
        assert m == {"loss": [1.0, 0.5, 1.0 / 3], "accuracy": 0.9}

    def test_failing_script_exit_code(self, proj: Project) -> None:
        job = proj.script_job("import sys\nprint('about to fail')\nsys.exit(7)\n", **proj.extra)  # type: ignore[attr-defined]
        r = proj.cli("submit", str(job), "--wait", "-q")
        assert r.rc == 7
        run_id = r.out.strip()
        st = self.status(proj, run_id)
        assert st["status"] == "Failed" and st["exit_code"] == 7
        assert proj.cli("wait", run_id).rc == 7

    def test_cancel_keeps_logs_and_metrics(self, proj: Project) -> None:
        run_id = self.submit(proj, """
            import time
            from azureml.core import Run
            run = Run.get_context()
            for i in range(10000):
                run.log("tick", i)
                print("tick", i, flush=True)
                time.sleep(0.05)
            """)
        wait_for(lambda: "tick 5" in proj.cli("logs", run_id).out, what="the job to print")
        r = proj.cli("cancel", run_id)
        assert r.rc == 0, r.err
        assert proj.cli("wait", run_id).rc == 130
        st = self.status(proj, run_id)
        assert st["status"] == "Canceled"
        ticks = proj.cli("metrics", run_id, "--json", check=True).json()["tick"]
        assert ticks[:6] == [0, 1, 2, 3, 4, 5] and ticks == list(range(len(ticks)))

    def test_cancel_kills_a_job_that_ignores_sigterm(self, proj: Project) -> None:
        run_id = self.submit(proj, """
            import signal, time
            signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
            print("started", flush=True)
            time.sleep(600)
            """)
        wait_for(lambda: "started" in proj.cli("logs", run_id).out, what="the job to start")
        proj.cli("cancel", run_id, check=True)
        assert proj.cli("wait", run_id, "--timeout", "60").rc == 130
        assert "ignoring SIGTERM" in proj.cli("logs", run_id).out

    def test_time_limit(self, proj: Project) -> None:
        run_id = self.submit(proj, "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n",
                             max_run_duration_seconds=2)
        assert proj.cli("wait", run_id, "--timeout", "60").rc == 124
        st = self.status(proj, run_id)
        assert st["status"] == "Failed" and "max_run_duration_seconds" in st["error"]

    def test_outputs(self, proj: Project, tmp_path: Path) -> None:
        run_id = self.submit(proj, """
            import os
            os.makedirs("outputs/sub", exist_ok=True)
            open("outputs/sub/model.txt", "w").write("weights")
            d = os.path.join(os.environ["RUNCTL_OUTPUTS_DIR"], "extra")
            os.makedirs(d, exist_ok=True)
            open(os.path.join(d, "b.bin"), "wb").write(bytes(range(256)) * 1000)
            """)
        assert proj.cli("wait", run_id).rc == 0
        dest = tmp_path / "dest"
        r = proj.cli("outputs", run_id, str(dest), check=True)
        assert (dest / "sub" / "model.txt").read_text() == "weights"
        assert (dest / "extra" / "b.bin").read_bytes() == bytes(range(256)) * 1000
        assert len(r.out.splitlines()) == 2

    def test_logs_follow_streams_and_exits_with_run_code(self, proj: Project) -> None:
        run_id = self.submit(proj, """
            import sys, time
            for i in range(5):
                print("line", i, flush=True)
                time.sleep(0.2)
            sys.exit(3)
            """)
        r = proj.cli("logs", run_id, "--follow")
        assert r.rc == 3
        assert [f"line {i}" for i in range(5)] == [ln for ln in r.out.splitlines() if ln.startswith("line")]

    def test_metrics_visible_while_running(self, proj: Project) -> None:
        run_id = self.submit(proj, """
            import time
            from azureml.core import Run
            run = Run.get_context()
            run.log("early", 1)
            print("logged", flush=True)
            time.sleep(600)
            """)
        wait_for(lambda: proj.cli("metrics", run_id, "--json").json().get("early") == 1,
                 what="a metric of a live run")
        assert self.status(proj, run_id)["status"] == "Running"
        proj.cli("cancel", run_id, check=True)
        proj.cli("wait", run_id)

    def test_status_after_runctl_was_killed_mid_run(self, proj: Project) -> None:
        job = proj.script_job("""
            import time
            from azureml.core import Run
            run = Run.get_context()
            for i in range(20):
                run.log("step", i)
                print("step", i, flush=True)
                time.sleep(0.1)
            """, **proj.extra)  # type: ignore[attr-defined]
        waiter = proj.popen("submit", str(job), "--wait")
        run_id = wait_for(lambda: _last_run(proj), what="the run to be created")
        wait_for(lambda: "step 3" in proj.cli("logs", run_id).out, what="the job to run")
        os.kill(waiter.pid, signal.SIGKILL)
        waiter.communicate()
        assert proj.cli("wait", run_id, "--timeout", "60").rc == 0
        assert proj.cli("metrics", run_id, "--json").json()["step"] == list(range(20))
        logs = proj.cli("logs", run_id).out
        assert [ln for ln in logs.splitlines() if ln.startswith("step")] == [f"step {i}" for i in range(20)]


    def test_a_job_cannot_make_runctl_read_or_move_host_files(self, proj: Project, tmp_path: Path) -> None:
        """Links a hostile job plants in RUN_DIR (outputs, logs, artifacts, a child's folder,
        events.jsonl, .runctl) to host paths: nothing there is read, moved or created."""
        host = tmp_path / "host secrets"
        host.mkdir()
        (host / "id_rsa").write_text("PRIVATE KEY")
        os.chmod(host / "id_rsa", 0o600)
        (host / "events.jsonl").write_text('{"k":"scalar","n":"leak","v":1,"t":0}\n')
        before = sorted((p.name, p.stat().st_mode, p.read_bytes()) for p in host.iterdir())
        run_id = self.submit(proj, f"""
            import os, shutil
            from azureml.core import Run
            run = Run.get_context()
            run.log("ok", 1)
            child = run.child_run(run_id="kid")
            child.log("c", 2)
            run.flush()
            rd, host = os.environ["RUNCTL_RUN_DIR"], {str(host)!r}
            shutil.rmtree(os.path.join(rd, "outputs"))
            os.symlink(host, os.path.join(rd, "outputs"))
            os.makedirs(os.path.join(rd, "artifacts", "sub"))
            os.symlink(os.path.join(host, "id_rsa"), os.path.join(rd, "artifacts", "sub", "key"))
            os.mkfifo(os.path.join(rd, "artifacts", "pipe"))
            os.makedirs(os.path.join(rd, "runs"), exist_ok=True)
            os.symlink(host, os.path.join(rd, "runs", child.id))
            os.rename(os.path.join(rd, "logs"), os.path.join(rd, "logs-old"))
            os.symlink(host, os.path.join(rd, "logs"))
            os.rename(os.path.join(rd, ".runctl"), os.path.join(rd, ".runctl-old"))
            os.symlink(host, os.path.join(rd, ".runctl"))
            os.rename(os.path.join(rd, "events.jsonl"), os.path.join(rd, "events-old"))
            os.symlink(os.path.join(host, "events.jsonl"), os.path.join(rd, "events.jsonl"))
            print("planted", flush=True)
            """)
        waited = proj.cli("wait", run_id, "--timeout", "60")
        assert waited.rc == 0, (waited.err, proj.cli("logs", run_id).out, proj.cli("status", run_id, "--json").out)
        proj.cli("cancel", run_id)  # touches the cancel marker: never through the planted .runctl
        assert sorted((p.name, p.stat().st_mode, p.read_bytes()) for p in host.iterdir()) == before
        assert "leak" not in proj.cli("metrics", run_id, "--json", check=True).json()
        home = Path(os.environ["RUNCTL_HOME"])
        leaked = [p for p in home.rglob("*") if p.is_file() and not p.is_symlink() and b"PRIVATE KEY" in p.read_bytes()]
        assert leaked == []
        assert not [p for p in home.rglob("*") if p.is_symlink()], "no link is copied into the store"
        show = proj.cli("show", run_id, "--json", check=True).json()
        skipped = show["properties"]["runctl.skipped_files"]
        for name in ("outputs (symlink)", "artifacts/sub/key (symlink)", "artifacts/pipe (fifo)"):
            assert name in skipped


    def test_a_job_that_hides_the_launcher_lock_still_runs_to_its_true_end(self, proj: Project, tmp_path: Path) -> None:
        """A job replaces .runctl (where the launcher lock lives) with a link: runctl cannot
        reach the lock, and must not take the live launcher for dead (a run marked Failed
        while it runs, never corrected): the launcher's pid and start time say it lives."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        os.chmod(elsewhere, 0o777)
        run_id = self.submit(proj, f"""
            import os, time
            rd = os.environ["RUNCTL_RUN_DIR"]
            os.rename(os.path.join(rd, ".runctl"), os.path.join(rd, ".runctl-moved"))
            os.symlink({str(elsewhere)!r}, os.path.join(rd, ".runctl"))
            print("hidden", flush=True)
            time.sleep(3)
            print("done", flush=True)
            """)
        wait_for(lambda: "hidden" in proj.cli("logs", run_id).out, what="the job to hide the lock")
        assert self.status(proj, run_id)["status"] == "Running", "a live launcher behind a planted link"
        waited = proj.cli("wait", run_id, "--timeout", "60")
        assert waited.rc == 0, waited.err
        assert self.status(proj, run_id)["status"] == "Completed"
        assert "done" in proj.cli("logs", run_id, check=True).out
        assert list(elsewhere.iterdir()) == [], "nothing is made through the link"

    def test_secrets_reach_only_the_job(self, proj: Project, home: Path) -> None:
        """A ${env:NAME} secret: the job sees it; no file under the store or RUN_DIR holds it,
        and no process but the job's has it in its environment (not the launcher's)."""
        secret = "s3cr3t-contract-4711"
        job = proj.script_job("""
            import os, time
            print("token length", len(os.environ["TOKEN"]), flush=True)
            time.sleep(600)
            """, **{**proj.extra, "environment": {**proj.extra.get("environment", {}),  # type: ignore[attr-defined]
                                                  "environment_variables": {"TOKEN": "${env:RUNCTL_TEST_SECRET}"}}})
        run_id = proj.cli("submit", str(job), "-q", env={"RUNCTL_TEST_SECRET": secret}, check=True).out.strip()
        wait_for(lambda: f"token length {len(secret)}" in proj.cli("logs", run_id).out, what="the job to see its secret")
        holders = []
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"TOKEN={secret}".encode() in env:  # (RUNCTL_TEST_SECRET itself is the submitting shell's own)
                holders.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        assert holders and all("job.py" in h for h in holders), f"only the job holds the secret: {holders}"
        proj.cli("cancel", run_id, check=True)
        proj.cli("wait", run_id)
        for path in home.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert secret.encode() not in path.read_bytes(), f"secret written to {path}"


def _last_run(proj: Project) -> str | None:
    r = proj.cli("list", "--json")
    runs = r.json() if r.rc == 0 else []
    return runs[0]["id"] if runs else None



WEIRD_WORK_DIR = "work dir with 'quotes' \"double\" and $HOME"


class BackendMethods(Isolated):
    """The contract at method level: what core relies on from each method of a backend.
    A backend joins with ``make_backend`` (target options -> a Backend; build it with
    ``runctl.testing.services_for(home, NAME)`` as its services), ``job_environment``
    (LaunchSpec.environment it needs, e.g. an image), ``job_python`` (the interpreter on the
    compute side) and ``stop_from_outside`` (stop a running job the way an operator would, not
    through runctl); ``unreachable_options`` if its compute side can be made unreachable."""

    @pytest.fixture
    def make_backend(self) -> Any:
        raise NotImplementedError

    @pytest.fixture
    def job_environment(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def job_python(self) -> str:
        """The interpreter the test jobs run with on the compute side."""
        import sys

        return sys.executable

    @pytest.fixture
    def stop_from_outside(self) -> Any:
        raise NotImplementedError

    @pytest.fixture
    def unreachable_options(self) -> dict[str, Any] | None:
        """Options that make this backend's compute side unreachable; None if it cannot be."""
        return None

    @pytest.fixture
    def rig(self, tmp_path: Path, home: Path, make_backend: Any, job_environment: dict[str, Any], job_python: str) -> Any:
        class Rig:
            pass

        r = Rig()
        r.home = home  # type: ignore[attr-defined]
        src = tmp_path / "src"
        src.mkdir()
        (src / "job.py").write_text(
            "import os, sys, time\n"
            "mode = sys.argv[1]\n"
            "print('token', len(os.environ.get('TOKEN', '')), flush=True)\n"
            "if mode == 'grow':\n"
            "    open('outputs/a.txt', 'w').write('x')\n"
            "    os.symlink('/etc', 'outputs/link')\n"
            "    for i in range(3):\n"
            "        print('line', i, flush=True)\n"
            "        time.sleep(0.3)\n"
            "elif mode == 'sleep':\n"
            "    time.sleep(600)\n")
        r.sid = core.snapshot(src, home)  # type: ignore[attr-defined]
        r.backend = make_backend({"work_dir": str(tmp_path / WEIRD_WORK_DIR)})  # type: ignore[attr-defined]
        r.environment = job_environment  # type: ignore[attr-defined]
        r.python = job_python  # type: ignore[attr-defined]
        r.started = []  # type: ignore[attr-defined]
        yield r
        for handle in r.started:  # type: ignore[attr-defined]
            r.backend.cancel(handle)  # type: ignore[attr-defined]
            r.backend.release(handle, wait_for(lambda h=handle: (lambda st: st if st.status.is_terminal else None)(  # type: ignore[attr-defined]
                r.backend.status(h)), what="the run to end"))  # type: ignore[attr-defined]
        r.backend.close()  # type: ignore[attr-defined]

    def _spec(self, rig: Any, mode: str, run_id: str, secrets: dict[str, str] | None = None) -> Any:
        import uuid

        from runctl.backends.base import LaunchSpec

        python = rig.python
        run_id = f"{run_id}_{uuid.uuid4().hex[:8]}"  # container names are global to a daemon
        return LaunchSpec(run_id=run_id, experiment="exp", argv=[python, "job.py", mode], env={}, timeout_s=120,
                          grace_s=1, snapshot_id=rig.sid, environment=rig.environment, secret_env=secrets or {})

    def _start(self, rig: Any, spec: Any, counting: bool = False) -> Any:
        handle = rig.backend.plan(spec)
        assert handle.pending and WEIRD_WORK_DIR in handle.run_dir
        staged = core.stage(rig.backend, spec, handle, rig.home)
        rig.backend.check_job(spec)
        final = rig.backend.submit(spec, handle)
        rig.started.append(final)
        assert not final.pending and final.run_dir == handle.run_dir
        return final, staged

    def _until_final(self, rig: Any, handle: Any, timeout_s: float = 60) -> Any:
        return wait_for(lambda: (lambda st: st if st.status.is_terminal else None)(rig.backend.status(handle)),
                        timeout_s=timeout_s, what="the run to end")

    def test_staging_twice_sends_nothing_the_second_time(self, rig: Any) -> None:
        for i, run_id in enumerate(("exp_1_first", "exp_1_again")):
            spec = self._spec(rig, "quick", run_id)
            handle = rig.backend.plan(spec)
            staged = core.stage(rig.backend, spec, handle, rig.home)
            if i == 1:
                assert (staged.sent_objects, staged.sent_bytes) == (0, 0)
            assert rig.backend.transport(handle).missing(core.stage_digests(spec, rig.home)) == set()

    def test_read_list_and_state_of_a_run(self, rig: Any) -> None:
        handle, _ = self._start(rig, self._spec(rig, "grow", "exp_1_grow"))
        wait_for(lambda: b"line 0" in rig.backend.read(handle, "logs/std_log.txt", 0, 1 << 20), what="first line")
        first = rig.backend.read(handle, "logs/std_log.txt", 0, 1 << 20)
        assert rig.backend.read(handle, "logs/std_log.txt", len(first) + 10_000, 100) == b"", "past the end"
        wait_for(lambda: rig.backend.read(handle, "logs/std_log.txt", len(first), 100), what="the file to grow")
        state = self._until_final(rig, handle)
        assert state.status.value == "Completed" and state.exit_code == 0
        log = rig.backend.read(handle, "logs/std_log.txt", 0, 1 << 20)
        assert log.startswith(first) and b"line 2" in log
        assert rig.backend.read(handle, "logs/std_log.txt", 3, 4) == log[3:7]
        assert rig.backend.read(handle, "no/such/file", 0, 10) == b""
        files = {(f.path, f.kind) for f in rig.backend.list_files(handle, "outputs")}
        assert ("outputs/a.txt", "file") in files and ("outputs/link", "symlink") in files
        assert rig.backend.read(handle, "outputs/link/passwd", 0, 10) == b"", "links are never followed"
        rig.backend.release(handle, state)
        rig.backend.release(handle, state)  # idempotent

    def test_cancel_is_idempotent_and_a_stop_from_outside_is_a_failure(self, rig: Any, stop_from_outside: Any) -> None:
        handle, _ = self._start(rig, self._spec(rig, "sleep", "exp_1_sleep"))
        wait_for(lambda: b"token" in rig.backend.read(handle, "logs/std_log.txt", 0, 100), what="the job to start")
        stop_from_outside(handle)
        state = self._until_final(rig, handle)
        assert state.status.value == "Failed" and "outside runctl" in (state.error or ""), state
        rig.backend.cancel(handle)
        rig.backend.cancel(handle)
        assert rig.backend.status(handle).status.value in ("Failed", "Canceled")
        other, _ = self._start(rig, self._spec(rig, "sleep", "exp_1_cancel"))
        wait_for(lambda: b"token" in rig.backend.read(other, "logs/std_log.txt", 0, 100), what="the job to start")
        rig.backend.cancel(other)
        rig.backend.cancel(other)
        assert self._until_final(rig, other).status.value == "Canceled"

    def test_secrets_are_never_on_disk(self, rig: Any) -> None:
        secret = "s3cr3t-method-level-815"
        handle, _ = self._start(rig, self._spec(rig, "quick", "exp_1_secret", {"TOKEN": secret}))
        assert self._until_final(rig, handle).status.value == "Completed"
        assert b"token %d" % len(secret) in rig.backend.read(handle, "logs/std_log.txt", 0, 1000)
        for p in [*Path(handle.run_dir).rglob("*"), *rig.home.rglob("*")]:
            if p.is_file() and not p.is_symlink():
                assert secret.encode() not in p.read_bytes(), p

    def test_core_treats_every_answer_as_hostile(self, rig: Any, tmp_path: Path) -> None:
        """Core's sync over this backend, with its answers poisoned as a job that rewrote the
        backend's agent could: names that leave the store, odd kinds and sizes, reads longer
        than asked, a state of the wrong types. Nothing lands outside the run's store folder,
        every skip is recorded, and the run ends with what could be trusted."""
        from dataclasses import replace

        from runctl.backends.base import RunFile

        handle, _ = self._start(rig, self._spec(rig, "grow", "exp_1_hostile"))
        self._until_final(rig, handle)
        real = rig.backend
        outside = tmp_path / "outside"
        hostile_names = {
            "{d}/../../../../outside/escaped": "an empty, '.' or '..' component",
            str(outside / "absolute"): "an absolute path",
            "{d}/nul\0name": "a NUL in the name",
            "{d}/./dot": "an empty, '.' or '..' component",
            "{d}//empty": "an empty, '.' or '..' component",
            "{d}/" + "n" * 300: "a name too long for the store",
            "elsewhere/file": "not under {d}/",
        }

        class Hostile:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def list_files(self, h: Any, reldir: str) -> list[Any]:
                bad = [RunFile(name.format(d=reldir), 5) for name in hostile_names]
                bad += [RunFile(f"{reldir}/negative", -1), RunFile(f"{reldir}/huge", 10**30),
                        RunFile(f"{reldir}/strange", 3, "door"), RunFile(f"{reldir}/notint", "5")]  # type: ignore[arg-type]
                return real.list_files(h, reldir) + bad  # type: ignore[no-any-return]

            def read(self, h: Any, rel: str, offset: int, max_bytes: int) -> bytes:
                data = real.read(h, rel, offset, max_bytes)
                return data + b"MORE THAN ASKED" * 10 if data else data  # type: ignore[no-any-return]

            def move_file(self, h: Any, rel: str, dest: Path) -> bool:
                return False  # copy through read: the longer answers are exercised

            def status(self, h: Any) -> Any:
                return replace(real.status(h), exit_code=10**30, started_at=float("nan"), ended_at="yesterday",
                               error={"not": "text"}, host=7)

        store, record = core.sync_once(Hostile(), handle, tmp_path / "hostile-store")
        assert record.synced and record.status.value == "Completed", record
        assert record.exit_code is None and record.started_at is None and record.error is None and record.host is None
        assert not outside.exists(), "nothing is written outside the store"
        run_dir = store.run_dir(record.id)
        assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()
                      and not p.name.startswith(".")) == ["logs/std_log.txt", "outputs/a.txt"]
        assert (run_dir / "outputs" / "a.txt").read_bytes() == b"x", "reads are cut to what was asked"
        props = store.properties(record.id)
        skipped = json.loads(props["runctl.skipped_files"])
        assert any("escaped" in s and "'..'" in s for s in skipped) and any("absolute path" in s for s in skipped)
        assert any("NUL" in s for s in skipped) and any("impossible size" in s for s in skipped)
        assert any("unknown kind" in s for s in skipped) and any("too long" in s for s in skipped), skipped
        assert "exit_code" in props["runctl.status_warning"] and "started_at" in props["runctl.status_warning"]
        store.close()

    def test_an_unreachable_backend_raises_backend_unreachable(self, rig: Any, make_backend: Any,
                                                                unreachable_options: dict[str, Any] | None) -> None:
        from runctl.errors import BackendUnreachable

        if unreachable_options is None:  # its compute side is this process's machine: check() always answers
            assert isinstance(rig.backend.check(), list)
            return
        backend = make_backend(unreachable_options)
        spec = self._spec(rig, "quick", "exp_1_unreachable")
        try:
            with pytest.raises(BackendUnreachable):
                backend.check()
            with pytest.raises(BackendUnreachable):
                backend.status(backend.plan(spec))
        finally:
            backend.close()


class WatchingMethods:
    """For backends whose ``wait_for_change`` watches the run (local, Docker, SSH): a
    follower is woken by the run's start, first output and end, not by its timeout."""

    def test_a_follower_is_woken_by_the_run(self, rig: Any) -> None:
        import time

        spec = BackendMethods._spec(self, rig, "grow", "exp_1_watch")  # type: ignore[arg-type]
        handle, _ = BackendMethods._start(self, rig, spec)  # type: ignore[arg-type]
        t0 = time.monotonic()
        while not rig.backend.status(handle).status.is_terminal:
            rig.backend.wait_for_change(handle, 30)
            assert time.monotonic() - t0 < 25, "woken by the run, not by the 30 s timeout"

