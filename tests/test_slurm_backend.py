"""The Slurm backend against a real slurmctld + slurmd + munged (tests/infra/up-slurm.sh):
the conformance suites in local mode and through a login node (an sshd on this machine's
loopback, tests/infra/up-ssh.sh), the generated batch scripts (golden), ranks, time
limits, cancel while pending and running, a controller restart and a killed submit."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from runctl.store.layout import services
from runctl.testing.contract import BackendContract, BackendMethods

from .conftest import ALIVE_JOB, SLURM_CONF, SLURM_STATE, Project, kill_submits_at_random, poll_children, require_service, wait_for

GOLDEN = Path(__file__).parent / "golden"
SSH_STATE = Path(os.environ.get("RUNCTL_TEST_SSH_STATE", "/var/lib/runctl-test-ssh"))
PYTHON = "/usr/bin/python3"


def slurm_ready() -> bool:
    if shutil.which("sinfo") is None:
        return False
    p = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True)
    return p.returncode == 0 and any(s in p.stdout for s in ("idle", "mixed", "alloc"))


@pytest.fixture(scope="module", autouse=True)
def _slurm() -> None:
    require_service("the test Slurm cluster", slurm_ready(), "run tests/infra/up-slurm.sh")


def local_target(tmp_path: Path, **more: Any) -> dict[str, Any]:
    return {"type": "slurm", "work_dir": str(tmp_path / "shared work 'dir' $HOME"), "python": PYTHON,
            "slurm_conf": SLURM_CONF, **more}


def login_target(tmp_path: Path, **more: Any) -> dict[str, Any]:
    return {"type": "slurm", "login": "127.0.0.1", "port": 2223, "user": "root",
            "identity_file": str(SSH_STATE / "client_ed25519"), "known_hosts": str(SSH_STATE / "known_hosts"),
            "work_dir": str(tmp_path / "login work 'dir'"), "python": PYTHON, "slurm_conf": SLURM_CONF, **more}


def scancel(*args: str) -> None:
    subprocess.run(["scancel", *args], check=True)


# -- the generated batch script --------------------------------------------------------------
def _spec(**more: Any) -> Any:
    from runctl.backends.base import LaunchSpec

    return LaunchSpec(run_id="exp_1_abcd", experiment="exp", argv=[PYTHON, "train.py"], env={}, timeout_s=3600,
                      grace_s=10, snapshot_id="s", **more)


@pytest.mark.parametrize("name, spec, options", [
    ("slurm_single.sh", {}, {}),
    ("slurm_resources.sh", {"resources": {"cpus": 16, "memory": 64 << 30, "gpus": 4}},
     {"partition": "gpu", "account": "my project", "qos": "high", "sbatch_options": ["--constraint=a100"]}),
    ("slurm_multinode_gres.sh", {"resources": {"gpus": 4, "cpus": 16}, "node_count": 2,
                                 "distributed": {"type": "pytorch", "process_count_per_node": 4}},
     {"gpu_request": "gres", "metrics_ranks": "all"}),
    ("slurm_mpi.sh", {"node_count": 1, "distributed": {"type": "mpi", "process_count": 2}}, {}),
])
def test_batch_script_golden(name: str, spec: dict[str, Any], options: dict[str, Any]) -> None:
    from runctl.backends.slurm import batch_script

    run_dir = "/scratch/it's a \"dir\" with $HOME/exp_1_abcd"
    got = batch_script(_spec(**spec), run_dir, options, "/opt/conda/bin/python")
    golden = GOLDEN / name
    if os.environ.get("RUNCTL_UPDATE_GOLDEN"):
        golden.write_text(got)
    assert got == golden.read_text()
    # and the shell reads every quoted path back as it was
    script = got.replace("exec ", "printf '%s\\n' ", 1)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["/opt/conda/bin/python", f"{run_dir}/.runctl/launcher.py", run_dir]


def test_the_task_shim_gives_torchrun_and_azure_names() -> None:
    from runctl.job.task import first_host, rank_environment

    assert first_host("gpu[03-04,07],cpu1") == "gpu03" and first_host("node7") == "node7"
    env = rank_environment({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODEID": "2",
                            "SLURM_NNODES": "4", "SLURM_JOB_NODELIST": "gpu[10-13]", "SLURM_JOB_ID": "42"}, mpi=True)
    assert {k: env[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR",
                                "MASTER_PORT")} == {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8",
                                                    "LOCAL_WORLD_SIZE": "2", "NODE_RANK": "2", "MASTER_ADDR": "gpu10",
                                                    "MASTER_PORT": "15042"}
    assert env["AZ_BATCH_MASTER_NODE"] == "gpu10:15042" and env["AZ_BATCHAI_TASK_INDEX"] == "1"
    assert env["AZ_BATCH_IS_CURRENT_NODE_MASTER"] == "false" and env["OMPI_COMM_WORLD_RANK"] == "5"


def test_state_mapping() -> None:
    from runctl.backends.slurm import job_state

    running = {"state": "running", "start_time": 1.0}
    assert job_state(("PENDING", "Resources"), {}, False, False).status.value == "Queued"
    assert job_state(("CONFIGURING", "None"), {}, False, False).status.value == "Starting"
    assert job_state(("RUNNING", "None"), {}, False, False).status.value == "Starting"
    assert job_state(("RUNNING", "None"), running, False, False).status.value == "Running"
    assert job_state(("COMPLETING", "None"), running, False, False).status.value == "Finalizing"
    assert job_state(("REQUEUED", "None"), running, False, False).status.value == "Queued"
    timeout = job_state(("TIMEOUT", "TimeLimit"), {"state": "finished", "reason": "canceled", "exit_code": -15},
                        False, False)
    assert timeout.status.value == "Failed" and "time limit" in (timeout.error or "")
    killed = job_state(("TIMEOUT", "None"), {"state": "finished", "reason": "exit", "exit_code": -15}, False, False)
    assert killed.status.value == "Failed" and "time limit" in (killed.error or ""), "Slurm's SIGTERM reached the job first"
    oom = job_state(("OUT_OF_MEMORY", "None"), running, False, False)
    assert oom.status.value == "Failed" and "out of memory" in (oom.error or "")
    assert "node failure" in (job_state(("NODE_FAIL", "None"), running, False, False).error or "")
    done = {"state": "finished", "reason": "exit", "exit_code": 0}
    assert job_state(("TIMEOUT", "None"), done, False, False).status.value == "Completed", "the launcher's word wins"
    assert job_state(None, done, False, False).status.value == "Completed", "no accounting: status.json decides"
    assert job_state(("CANCELLED", "None"), {}, True, False).status.value == "Canceled"
    assert "outside runctl" in (job_state(("CANCELLED", "None"), running, False, False).error or "")
    assert job_state(None, {}, False, True).status.value == "Failed"
    gone = job_state(None, running, False, False)
    assert gone.status.value == "Failed" and "gone from the queue" in (gone.error or "")


# -- conformance ------------------------------------------------------------------------------
class TestSlurmContract(BackendContract):
    @pytest.fixture
    def target_config(self, tmp_path: Path) -> dict[str, Any]:
        return local_target(tmp_path)

    def test_secrets_reach_only_the_job(self, proj: Project, home: Path, target_config: dict[str, Any]) -> None:
        """On Slurm a secret travels in sbatch's exported environment (Slurm keeps a job's
        environment in its own state directory until the job is purged): the batch step holds
        it too. What runctl promises stays: the job sees it, no file of runctl's holds it."""
        secret = "s3cr3t-slurm-4711"
        job = proj.script_job("import os\nprint('token length', len(os.environ['TOKEN']), flush=True)\n",
                              environment={"environment_variables": {"TOKEN": "${env:RUNCTL_TEST_SECRET}"}},
                              **proj.extra)  # type: ignore[attr-defined]
        r = proj.cli("submit", str(job), "-q", "--wait", env={"RUNCTL_TEST_SECRET": secret})
        assert r.rc == 0, r.err
        assert f"token length {len(secret)}" in proj.cli("logs", r.out.strip()).out
        for root in (home, Path(target_config["work_dir"])):
            for path in root.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    assert secret.encode() not in path.read_bytes(), f"secret written to {path}"


class TestSlurmLoginContract(BackendContract):
    @pytest.fixture
    def target_config(self, tmp_path: Path) -> dict[str, Any]:
        return login_target(tmp_path)

    test_secrets_reach_only_the_job = TestSlurmContract.test_secrets_reach_only_the_job


class _SlurmMethods(BackendMethods):
    @pytest.fixture
    def job_python(self) -> str:
        return PYTHON

    @pytest.fixture
    def stop_from_outside(self) -> Any:
        def stop(handle: Any) -> None:  # what an operator does: scancel, not through runctl
            scancel("--batch", "--signal=TERM", handle.native_id)

        return stop


class TestSlurmMethods(_SlurmMethods):
    @pytest.fixture
    def make_backend(self, home: Path, tmp_path: Path) -> Any:
        from runctl.backends.slurm import SlurmBackend

        def make(options: dict[str, Any]) -> SlurmBackend:
            opts = {k: v for k, v in local_target(tmp_path, cancel_grace_s=2, **options).items() if k != "type"}
            return SlurmBackend("under-test", opts, services(home, "slurm"))

        return make

    @pytest.fixture
    def unreachable_options(self, tmp_path: Path) -> dict[str, Any]:
        """A controller that does not answer: Slurm's commands say so (fault injection)."""
        bin_dir = tmp_path / "down-slurm"
        bin_dir.mkdir()
        for name in ("sinfo", "squeue", "sbatch", "scancel", "sacct"):
            (bin_dir / name).write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller "
                                        "(connect failure)' >&2\nexit 1\n")
            (bin_dir / name).chmod(0o755)
        return {"slurm_bin": str(bin_dir)}


class TestSlurmLoginMethods(_SlurmMethods):
    @pytest.fixture
    def make_backend(self, home: Path, tmp_path: Path) -> Any:
        from runctl.backends.slurm import SlurmBackend

        def make(options: dict[str, Any]) -> SlurmBackend:
            opts = {k: v for k, v in login_target(tmp_path, cancel_grace_s=2, **options).items() if k != "type"}
            return SlurmBackend("under-test", opts, services(home, "slurm"))

        return make

    @pytest.fixture
    def unreachable_options(self) -> dict[str, Any]:
        return {"login": "10.231.0.99", "connect_timeout_s": 1}


# -- Slurm's own cases --------------------------------------------------------------------------
def test_bad_partition_is_bad_input_before_any_run_exists(tmp_path: Path, home: Path) -> None:
    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path, partition="nosuch")})
    r = proj.cli("submit", str(proj.script_job("print(1)\n", compute_target="cluster")))
    assert r.rc == 2 and "Slurm refuses this job" in r.err and "partition" in r.err, r.err
    assert proj.cli("list", "--json").json() == []


def test_a_job_for_nodes_out_of_service_waits_queued_with_slurms_reason(tmp_path: Path, home: Path) -> None:
    """Plain sbatch queues a job whose nodes are drained or down ("not available now"); so does
    runctl: the run waits Queued, Slurm's reason shown, and a cancel ends it."""
    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path, partition="out-of-service", cancel_grace_s=2)})
    r = proj.cli("submit", str(proj.script_job("print(1)\n", compute_target="cluster")), "-q")
    assert r.rc == 0, r.err
    rid = r.out.strip()
    try:
        wait_for(lambda: proj.cli("status", rid).out.strip() == "Queued", what="the run to wait in the queue")
        shown = proj.cli("status", rid, "--json", check=True).json()
        assert shown["error"].startswith("Slurm: ") and "Node" in shown["error"], shown["error"]
    finally:
        assert proj.cli("cancel", rid).rc == 0
    assert proj.cli("wait", rid, "--timeout", "60").rc == 130


def test_ranks_of_a_two_process_job(tmp_path: Path, home: Path) -> None:
    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path)})
    job = proj.script_job("""
        import os
        from azureml.core import Run
        run = Run.get_context()
        names = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "AZ_BATCH_MASTER_NODE"]
        print(" ".join(f"{k}={os.environ.get(k)}" for k in names), flush=True)
        run.log("rank", int(os.environ["RANK"]))
        """, compute_target="cluster", distributed_job_config={"type": "pytorch", "process_count_per_node": 2})
    rid = proj.cli("submit", str(job), "-q", "--wait", check=True).out.strip()
    rank0 = proj.cli("logs", rid, check=True).out
    assert "RANK=0 LOCAL_RANK=0 WORLD_SIZE=2 NODE_RANK=0" in rank0
    rank1 = (home / "runs" / rid / "logs" / "std_log_process_1.txt").read_text()
    assert "RANK=1 LOCAL_RANK=1 WORLD_SIZE=2 NODE_RANK=0" in rank1
    port = [w for w in rank0.split() if w.startswith("MASTER_PORT=")][0]
    assert port in rank1 and "MASTER_ADDR=" in rank1, "both ranks agree on the rendezvous"
    assert proj.cli("metrics", rid, "--json", check=True).json() == {"rank": 0}, "metrics from rank 0 only"
    every = Project(tmp_path / "proj2", {"cluster": local_target(tmp_path, metrics_ranks="all")})
    shutil.copytree(proj.src, every.src, dirs_exist_ok=True)
    job2 = every.job(script="job.py", compute_target="cluster",
                     distributed_job_config={"type": "pytorch", "process_count_per_node": 2})
    rid2 = every.cli("submit", str(job2), "-q", "--wait", check=True).out.strip()
    assert sorted(every.cli("metrics", rid2, "--json", check=True).json()["rank"]) == [0, 1]


def test_cancel_while_pending_and_while_running(tmp_path: Path, home: Path) -> None:
    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path, cancel_grace_s=2)})
    cpus = os.cpu_count() or 1
    hog = proj.script_job("import time\nprint('hog', flush=True)\ntime.sleep(600)\n", name="hog.yaml",
                          compute_target="cluster", resources={"cpus": cpus})
    running = proj.cli("submit", str(hog), "-q", check=True).out.strip()
    wait_for(lambda: "hog" in proj.cli("logs", running).out, what="the first job to run")
    pending = proj.cli("submit", str(hog), "-q", check=True).out.strip()
    wait_for(lambda: proj.cli("status", pending).out.strip() == "Queued", what="the second job to wait in the queue")
    assert proj.cli("cancel", pending).rc == 0
    assert proj.cli("wait", pending, "--timeout", "60").rc == 130
    assert proj.cli("show", pending, "--json", check=True).json()["status"] == "Canceled"
    assert proj.cli("cancel", running).rc == 0
    assert proj.cli("wait", running, "--timeout", "60").rc == 130
    assert "hog" in proj.cli("logs", running).out


def test_a_run_outlives_a_controller_restart(tmp_path: Path, home: Path) -> None:
    """slurmctld stopped and started again while a run is in flight (the tests' own cluster's
    daemon, by its pid file; never a controller of this machine's): runctl waits, then
    follows the run to its end."""
    pid_file = SLURM_STATE / "slurmctld.pid"
    require_service("the tests' own slurmctld", pid_file.exists(), "run tests/infra/up-slurm.sh")
    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path)})
    job = proj.script_job("""
        import time
        from azureml.core import Run
        run = Run.get_context()
        for i in range(8):
            run.log("i", i)
            print("tick", i, flush=True)
            time.sleep(0.5)
        """, compute_target="cluster")
    rid = proj.cli("submit", str(job), "-q", check=True).out.strip()
    wait_for(lambda: "tick 1" in proj.cli("logs", rid).out, what="the job to run")
    os.kill(int(pid_file.read_text()), 15)
    wait_for(lambda: subprocess.run(["sinfo"], capture_output=True).returncode != 0, what="slurmctld to stop")
    waiter = proj.popen("wait", rid, "--timeout", "120")
    time.sleep(2)
    r = proj.cli("status", rid, "--json")
    assert r.rc == 4 or r.json()["status"] in ("Running", "Starting"), (r.rc, r.out, r.err)
    subprocess.run(["setsid", "-f", "slurmctld", "-f", SLURM_CONF], check=True)
    wait_for(lambda: subprocess.run(["sinfo"], capture_output=True).returncode == 0, timeout_s=60,
             what="slurmctld to answer again")
    out, err = waiter.communicate(timeout=180)
    assert waiter.returncode == 0, err
    assert proj.cli("metrics", rid, "--json", check=True).json()["i"] == list(range(8))


def test_submit_killed_at_random_instants_leaves_no_untracked_job(tmp_path: Path, home: Path) -> None:
    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path)})
    kill_submits_at_random(proj, proj.script_job(ALIVE_JOB, compute_target="cluster"), kills=8, seed=11)
    names = subprocess.run(["squeue", "--noheader", "--format=%j|%T"], capture_output=True, text=True).stdout
    mine = [ln for ln in names.splitlines() if ln.split("|")[0].startswith("proj_")
            and any(ln.startswith(r["id"]) for r in proj.cli("list", "--json").json())]
    assert not [ln for ln in mine if ln.endswith(("RUNNING", "PENDING"))], f"no job of these runs is left: {mine}"


def test_a_reused_job_id_is_never_taken_for_an_old_run(tmp_path: Path, home: Path) -> None:
    """The run is found by its job name (its run id): a job id that now names another,
    running job (a cluster whose state was reset) does not make the old run look alive."""
    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path, keep_run_dirs="all")})
    rid = proj.cli("submit", str(proj.script_job("print('mine')\n", compute_target="cluster")), "-q", "--wait",
                   check=True).out.strip()
    other = subprocess.run(["sbatch", "--parsable", "--job-name=someone-else", "--wrap=sleep 30",
                            f"--output={tmp_path}/other.txt"], capture_output=True, text=True, check=True)
    other_id = other.stdout.strip().split(";")[0]
    try:
        wait_for(lambda: "RUNNING" in subprocess.run(["squeue", "-h", "-j", other_id, "-o", "%T"],
                                                     capture_output=True, text=True).stdout, what="the other job")
        from runctl.store.sqlite import Store

        store = Store(home)
        handle = dict(store.get(rid).handle or {})
        store.update(rid, handle={**handle, "native_id": other_id}, status="Running", synced=False)
        store.close()
        assert proj.cli("status", rid, check=True).out.strip() == "Completed"
    finally:
        scancel(other_id)


SWEEP_SCRIPT = """
import argparse, time
from azureml.core import Run
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--bs", type=int)
a = p.parse_args()
Run.get_context().log("score", a.lr * a.bs)
print("lr", a.lr, "bs", a.bs, flush=True)
time.sleep(1)
"""


def test_a_sweep_is_one_job_array_with_a_run_per_combination(tmp_path: Path, home: Path) -> None:
    from runctl.store.sqlite import Store

    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path)})
    job = proj.script_job(SWEEP_SCRIPT, compute_target="cluster")
    r = proj.cli("submit", str(job), "-q", "--sweep", "lr=0.1,0.01", "--sweep", "bs=32,64", "--max-parallel", "2",
                 "--wait")
    assert r.rc == 0, r.err
    parent = r.out.strip()
    store = Store(home)
    kids = store.runs(parent_id=parent)
    jobs = {(k.handle or {})["native_id"].split("_")[0] for k in kids}
    assert len(kids) == 4 and len(jobs) == 1, "ONE Slurm job array"
    array_id = jobs.pop()
    limit = subprocess.run(["scontrol", "show", "job", array_id], capture_output=True, text=True).stdout
    assert "ArrayTaskThrottle=2" in limit, limit
    scores = {(store.tags(k.id)["lr"], store.tags(k.id)["bs"]):
              proj.cli("metrics", k.id, "--json", check=True).json()["score"] for k in kids}
    assert scores == {("0.1", "32"): 3.2, ("0.1", "64"): 6.4, ("0.01", "32"): 0.32, ("0.01", "64"): 0.64}
    assert all(store.get(k.id).status.value == "Completed" for k in kids)
    assert proj.cli("show", parent, "--json", check=True).json()["status"] == "Completed"
    store.close()


def test_compute_check_reports_partitions(tmp_path: Path, home: Path) -> None:
    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path, account="nobody")})
    r = proj.cli("compute", "check", "cluster", check=True)
    assert "partition debug*: up, 1 node(s) idle" in r.out or "partition debug*: up" in r.out, r.out
    assert "CPUs" in r.out and "account nobody: not checked (no accounting" in r.out


def test_slurms_own_time_limit_fails_the_run_with_that_reason(tmp_path: Path, home: Path) -> None:
    """A --time shorter than the job (here from sbatch_options; on clusters often the
    partition's limit): Slurm ends it as TIMEOUT (its check runs about every 30 s), and the
    run is Failed with reason "time limit"."""
    proj = Project(tmp_path / "proj", {"short": local_target(tmp_path, sbatch_options=["--time=0:05"])})
    job = proj.script_job("import time\nprint('long', flush=True)\ntime.sleep(300)\n", compute_target="short")
    rid = proj.cli("submit", str(job), "-q", check=True).out.strip()
    assert proj.cli("wait", rid, "--timeout", "150").rc != 0
    shown = proj.cli("show", rid, "--json", check=True).json()
    assert shown["status"] == "Failed" and "time limit" in shown["error"]["message"], shown
    assert "long" in proj.cli("logs", rid, check=True).out


def test_run_directories_on_the_shared_work_dir_are_private(tmp_path: Path, home: Path) -> None:
    import stat

    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path, keep_run_dirs="all")})
    job = proj.script_job("from azureml.core import Run\nRun.get_context().log('x', 1)\nprint('hi')\n",
                          compute_target="cluster")
    rid = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    run_dir = Path(local_target(tmp_path)["work_dir"]) / rid
    for rel in ("logs/std_log.txt", "events.jsonl", "status.json"):
        mode = stat.S_IMODE((run_dir / rel).stat().st_mode)
        assert mode & 0o077 == 0, f"{rel} is {oct(mode)}"
    assert stat.S_IMODE((run_dir / "logs").stat().st_mode) & 0o077 == 0


def test_a_newline_in_sbatch_options_is_bad_input(tmp_path: Path, home: Path) -> None:
    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path, sbatch_options=["--comment=x\nrm -rf ~"])})
    r = proj.cli("submit", str(proj.script_job("print(1)\n", compute_target="cluster")))
    assert r.rc == 2 and "sbatch_options" in r.err, r.err
    assert proj.cli("list", "--json").json() == []


def test_compute_trust_works_for_a_login_node(tmp_path: Path, home: Path) -> None:
    """The advice an unknown login-node key gives (`runctl compute trust TARGET`) is taken;
    a target that connects to no host says there is nothing to trust."""
    known = tmp_path / "known_hosts"
    proj = Project(tmp_path / "proj", {"cluster": login_target(tmp_path, known_hosts=str(known)),
                                       "here": local_target(tmp_path)})
    r = proj.cli("submit", str(proj.script_job("print(1)\n", compute_target="cluster")))
    assert r.rc == 2 and "runctl compute trust" in r.err, r.err
    r = proj.cli("compute", "trust", "cluster")
    assert r.rc == 0 and "127.0.0.1: trusted ssh-ed25519 SHA256:" in r.out, (r.out, r.err)
    assert proj.cli("compute", "check", "cluster").rc == 0
    r = proj.cli("compute", "trust", "here")
    assert r.rc == 2 and "no host key to trust" in r.err


TUNE_SCRIPT = """
import argparse, time
from azureml.core import Run
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
p.add_argument("--y", type=float)
a = p.parse_args()
run = Run.get_context()
for epoch in range(3):
    run.log("loss", (a.x - 0.3) ** 2 + (a.y - 0.7) ** 2 + 0.5 ** epoch)
    time.sleep(0.3)
"""


def test_a_tuning_run_starts_its_children_as_job_arrays_within_max_concurrent_runs(tmp_path: Path, home: Path) -> None:
    """Random sampling on Slurm: each batch of children is one job array; never more than
    max_concurrent_runs unfinished (polled); the best run minimises the quadratic."""
    from runctl.store.sqlite import Store

    proj = Project(tmp_path / "proj", {"cluster": local_target(tmp_path)})
    job = proj.script_job(TUNE_SCRIPT, compute_target="cluster", hyperdrive={
        "sampling": "random", "parameter_space": {"--x": {"uniform": [0, 1]}, "--y": {"uniform": [0, 1]}},
        "primary_metric_name": "loss", "primary_metric_goal": "minimize", "max_total_runs": 6,
        "max_concurrent_runs": 3, "seed": 11})
    parent = proj.cli("submit", str(job), "-q", check=True, env={"RUNCTL_TUNING_POLL_S": "0.3"}).out.strip()
    store = Store(home)
    try:
        poll_children(store, parent, at_most=3)
        kids = store.runs(parent_id=parent)
        assert len(kids) == 6 and all(k.status.value == "Completed" for k in kids), [(k.id, k.status) for k in kids]
        first = {(store.get(f"{parent}_{i}").handle or {})["native_id"].split("_")[0] for i in range(3)}
        assert len(first) == 1, "the first three children are ONE job array"
        shown = proj.cli("show", parent, "--json", check=True).json()
        assert shown["status"] == "Completed"
        best = shown["best_run"]
        hp = best["hyperparameters"]
        assert best["primary_metric"]["value"] == pytest.approx((hp["--x"] - 0.3) ** 2 + (hp["--y"] - 0.7) ** 2 + 0.25)
        assert best["primary_metric"]["value"] == min(
            min(v for _, _, v in store.metric_events(k.id, "loss")) for k in kids)
    finally:
        if not store.get(parent).status.is_terminal:
            proj.cli("cancel", parent)
        store.close()
