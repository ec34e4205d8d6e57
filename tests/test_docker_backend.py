"""The Docker backend against the real dockerd (tests/infra/up-docker.sh brings it up)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from runctl.backends.base import LaunchSpec
from runctl.backends.docker import container_spec, pip_dockerfile, shm_bytes
from runctl.store.layout import services
from runctl.testing.contract import TARGET, BackendContract, BackendMethods, WatchingMethods

from .conftest import (
    ALIVE_JOB,
    REPO,
    SESSION_ID,
    SESSION_LABEL,
    Project,
    kill_submits_at_random,
    poll_children,
    require_service,
    stage_run_dir,
    wait_for,
)

IMAGE = os.environ.get("RUNCTL_TEST_IMAGE", "local/python:3.11-bookworm")
NOPY_IMAGE = "local/nopython:1"
PIP_IMAGE = "local/python-pip:3.11-bookworm"
GOLDEN = Path(__file__).parent / "golden"


def docker_ready() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.images.get(IMAGE)
        client.images.get(NOPY_IMAGE)
        client.images.get(PIP_IMAGE)
        client.close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module", autouse=True)
def _docker() -> Any:
    require_service("dockerd with the test images", docker_ready(), "run tests/infra/up-docker.sh")
    import docker

    client = docker.from_env()
    yield
    mine = {"label": f"{SESSION_LABEL}={SESSION_ID}"}  # only what this session's targets made
    for container in client.containers.list(all=True, filters=mine):
        container.remove(force=True)
    for image in client.images.list(filters=mine):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.images.remove(image.id, force=True)
    client.close()


def docker_proj(tmp_path: Path, **target: Any) -> Project:
    return Project(tmp_path / "proj", {TARGET: {"type": "docker", "cancel_grace_s": 2, **target}})


def submit(proj: Project, code: str, *args: str, image: str = IMAGE, **fields: Any) -> str:
    job = proj.script_job(code, compute_target=TARGET, environment={"docker": {"image": image}, **fields.pop("env", {})},
                          **fields)
    return proj.cli("submit", str(job), "-q", *args, check=True).out.strip()


class TestDockerContract(BackendContract):
    project_class = Project  # (its Docker target carries this session's label)

    @pytest.fixture
    def target_config(self) -> dict[str, Any]:
        return {"type": "docker"}

    @pytest.fixture
    def job_extra(self) -> dict[str, Any]:
        return {"environment": {"docker": {"image": IMAGE}}}


class TestDockerMethods(WatchingMethods, BackendMethods):
    @pytest.fixture
    def make_backend(self, home: Path) -> Any:
        from runctl.backends.docker import DockerBackend

        return lambda options: DockerBackend("under-test", {"image": IMAGE, "cancel_grace_s": 2, **options,
                                                            "labels": {SESSION_LABEL: SESSION_ID}}, services(home, "docker"))

    @pytest.fixture
    def job_environment(self) -> dict[str, Any]:
        return {"docker": {"image": IMAGE}}

    @pytest.fixture
    def job_python(self) -> str:
        return "python3"

    @pytest.fixture
    def stop_from_outside(self) -> Any:
        def stop(handle: Any) -> None:  # `docker stop`, as an operator would
            subprocess.run(["docker", "stop", "-t", "5", handle.native_id], check=True, capture_output=True)

        return stop

    @pytest.fixture
    def unreachable_options(self) -> dict[str, Any]:
        return {"base_url": "unix:///tmp/runctl-no-such-docker.sock"}


def test_container_spec_golden() -> None:
    spec = LaunchSpec(run_id="exp_1_abcd", experiment="exp", argv=["python3", "train it.py", "--x", "a'b\"c $(d)"],
                      env={"BATCH": "64"}, timeout_s=60, grace_s=2.5, snapshot_id="s",
                      resources={"cpus": 2, "memory": 4 << 30, "gpus": "all"},  # as core parses "4g"
                      environment={"docker": {"image": "python:3.11-slim", "shm_size": "8g"}})
    got = container_spec(spec, {"user": "1000:1000", "network": "none"}, "/srv/runs/it's here/exp_1_abcd",
                         "python:3.11-slim")
    golden = GOLDEN / "docker_container_spec.json"
    assert json.loads(json.dumps(got)) == json.loads(golden.read_text())
    default = container_spec(spec, {}, "/r", "img")
    assert default["body"]["User"] == f"{os.getuid()}:{os.getgid()}", "runs as the submitting user by default"
    no_gpu = LaunchSpec(**{**spec.__dict__, "resources": {"gpus": 0}})
    assert "DeviceRequests" not in container_spec(no_gpu, {"gpus": "all"}, "/r", "i")["body"]["HostConfig"]
    ids = LaunchSpec(**{**spec.__dict__, "resources": {"gpus": [0, 2]}})
    assert container_spec(ids, {}, "/r", "i")["body"]["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == ["0", "2"]
    assert pip_dockerfile("base:1") == (GOLDEN / "pip.Dockerfile").read_text()
    assert pip_dockerfile("base:1", ("build_ca_bundle", "build_pip_config")) == (
        GOLDEN / "pip-proxied.Dockerfile").read_text()
    assert [shm_bytes(t) for t in ("64", "64b", "2k", "8m", "8g", "1G")] == [64, 64, 2048, 8 << 20, 8 << 30, 1 << 30]


def test_resources_env_and_readonly_mounts(tmp_path: Path, home: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("dataset")
    proj = docker_proj(tmp_path, mounts=[f"{data}:/data"])
    run_id = submit(proj, """
        import os
        print("quota", open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read().strip())
        print("mem", open("/sys/fs/cgroup/memory/memory.limit_in_bytes").read().strip())
        print("env", os.environ["BATCH"], open("/data/in.txt").read())
        try:
            open("/data/new.txt", "w")
        except OSError as e:
            print("write refused:", e.strerror)
        """, resources={"cpus": 1.5, "memory": "256m"},
        env={"environment_variables": {"BATCH": "64"}})
    assert proj.cli("wait", run_id).rc == 0
    logs = proj.cli("logs", run_id).out
    assert "quota 150000" in logs and f"mem {256 << 20}" in logs
    assert "env 64 dataset" in logs and "write refused: Read-only file system" in logs


def test_files_are_owned_by_the_configured_user(tmp_path: Path, home: Path) -> None:
    proj = docker_proj(tmp_path, user="4321:4322")
    run_id = submit(proj, "import os\nprint(os.getuid(), os.getgid())\nopen('outputs/o.txt', 'w').write('x')\n")
    assert proj.cli("wait", run_id).rc == 0
    assert "4321 4322" in proj.cli("logs", run_id).out
    st = (home / "runs" / run_id / "outputs" / "o.txt").stat()
    assert (st.st_uid, st.st_gid) == (4321, 4322)


def test_oom_kill_is_reported(tmp_path: Path, home: Path) -> None:
    proj = docker_proj(tmp_path)
    run_id = submit(proj, """
        print("allocating", flush=True)
        blocks = []
        for _ in range(64):
            blocks.append(bytearray(16 << 20))
        print("survived?", flush=True)
        """, resources={"memory": "64m"})
    proj.cli("wait", run_id)
    st = proj.cli("status", run_id, "--json", check=True).json()
    assert st["status"] == "Failed" and "out of memory" in st["error"]
    assert "allocating" in proj.cli("logs", run_id).out


def test_command_job_in_an_image_without_python(tmp_path: Path, home: Path) -> None:
    proj = docker_proj(tmp_path)
    proj.write("data.txt", "payload")
    job = proj.job(command="echo hello from busybox; cat data.txt; echo; exit 3", compute_target=TARGET,
                   environment={"docker": {"image": NOPY_IMAGE}})
    r = proj.cli("submit", str(job), "--wait", "-q")
    assert r.rc == 3
    logs = proj.cli("logs", r.out.strip()).out
    assert "hello from busybox\npayload" in logs and "no python3 in this image" in logs
    job = proj.job("ok.yaml", command=["sh", "-c", "echo fine > outputs/f.txt"], compute_target=TARGET,
                   environment={"docker": {"image": NOPY_IMAGE}})
    r = proj.cli("submit", str(job), "--wait", "-q")
    assert r.rc == 0
    proj.cli("outputs", r.out.strip(), str(tmp_path / "o"), check=True)
    assert (tmp_path / "o" / "f.txt").read_text() == "fine\n"


def test_dockerfile_build_is_cached_by_content(tmp_path: Path, home: Path) -> None:
    proj = docker_proj(tmp_path)
    proj.write("Dockerfile", f"FROM {IMAGE}\nCOPY hello.txt /hello.txt\n")
    import uuid

    proj.write("hello.txt", f"built into the image {uuid.uuid4()}")  # fresh content: a fresh build
    proj.write("t.py", "print(open('/hello.txt').read())\n")
    job = proj.job(script="t.py", compute_target=TARGET, environment={"docker": {"dockerfile": "Dockerfile"}})
    first = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    second = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    for r in (first, second):
        assert "built into the image" in proj.cli("logs", r).out
    logs_of = [proj.cli("show", r, "--json").json()["logFiles"] for r in (first, second)]
    assert "logs/image_build_log.txt" in logs_of[0] and "logs/image_build_log.txt" not in logs_of[1]
    proj.write("hello.txt", f"changed {uuid.uuid4()}")
    third = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    assert "changed" in proj.cli("logs", third).out
    import docker

    client = docker.from_env()
    try:  # the image carries this session's label (the suite removes only what carries it)
        built = [i for i in client.images.list(name="runctl-env") if i.labels.get(SESSION_LABEL) == SESSION_ID]
        assert built, "images this session built are labelled as its own"
    finally:
        client.close()


def test_failed_build_and_failed_pull_are_clear(tmp_path: Path, home: Path) -> None:
    proj = docker_proj(tmp_path)
    proj.write("requirements.txt", "numpy\n")
    job = proj.script_job("print(1)\n", compute_target=TARGET,
                          environment={"docker": {"base_image": PIP_IMAGE, "pip_requirements": "requirements.txt"}})
    import docker

    client = docker.from_env()
    before = {c.id for c in client.containers.list(all=True)}  # (pip is there; the index cannot be reached)
    r = proj.cli("submit", str(job))
    assert r.rc == 3 and "building the image failed" in r.err
    assert proj.cli("list", "--json").json()[0]["status"] == "Failed"
    assert {c.id for c in client.containers.list(all=True)} == before, "a failed build leaves no containers"
    client.close()
    job = proj.script_job("print(1)\n", name="pull.yaml", compute_target=TARGET,
                          environment={"docker": {"image": "localhost:1/no/such-image:1"}})
    r = proj.cli("submit", str(job))
    assert r.rc == 2 and "cannot pull image 'localhost:1/no/such-image:1'" in r.err, r.err
    assert len(proj.cli("list", "--json").json()) == 1, "a failed pull leaves no run"


def test_unreachable_daemon(tmp_path: Path, home: Path) -> None:
    proj = docker_proj(tmp_path, base_url="unix:///tmp/runctl-no-such-docker.sock")
    job = proj.script_job("print(1)\n", compute_target=TARGET, environment={"docker": {"image": IMAGE}})
    r = proj.cli("submit", str(job))
    assert r.rc == 4 and "the Docker daemon does not answer" in r.err
    assert proj.cli("list", "--json").json() == []
    assert proj.cli("compute", "check", TARGET).rc == 4


def test_compute_check_lists_images(tmp_path: Path, home: Path) -> None:
    proj = docker_proj(tmp_path)
    out = proj.cli("compute", "check", TARGET, check=True).out
    assert out.startswith(f"{TARGET}: ok") and "Docker Engine" in out and IMAGE in out


def test_containers_are_removed_unless_kept_on_failure(tmp_path: Path, home: Path) -> None:
    import docker

    client = docker.from_env()
    proj = docker_proj(tmp_path, keep_failed_containers=True)
    ok = submit(proj, "print('fine')\n", "--wait")
    bad = proj.cli("submit", str(proj.script_job("raise SystemExit(2)\n", name="bad.yaml", compute_target=TARGET,
                                                   environment={"docker": {"image": IMAGE}})), "-q", "--wait")
    assert bad.rc == 2
    names = {c.name for c in client.containers.list(all=True, filters={"label": "runctl.run_id"})}
    assert f"runctl-{ok}" not in names and f"runctl-{bad.out.strip()}" in names
    client.containers.get(f"runctl-{bad.out.strip()}").remove(force=True)
    client.close()


@pytest.fixture
def own_dockerd() -> Any:
    """A dockerd of this test's own (its socket, data-root, exec-root, pid file, and a network
    namespace of its own: its bridge and iptables rules never touch the machine's), with the
    test image loaded, for a test that stops and starts a daemon: the machine's dockerd is
    never stopped. Yields (socket path, start, stop)."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="rctl-dockerd-", dir="/var/tmp"))
    sock, pid_file = root / "docker.sock", root / "docker.pid"  # (its own pid file: never the machine's)
    args = ["unshare", "--net", "--", "dockerd", "--host", f"unix://{sock}", "--data-root", str(root / "data"),
            "--exec-root", str(root / "x"), "--pidfile", str(pid_file)]

    running: list[subprocess.Popen] = []

    def start() -> None:
        with open(root / "dockerd.log", "ab") as log:
            running.append(subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                            start_new_session=True))
        wait_for(lambda: subprocess.run(["docker", "-H", f"unix://{sock}", "info"], capture_output=True).returncode == 0,
                 timeout_s=60, what="the test's own dockerd to answer")

    def stop() -> None:
        while running:
            daemon = running.pop()
            daemon.terminate()  # SIGTERM, as a service manager stops it: its containers stop with it
            daemon.wait(timeout=60)

    start()
    try:
        subprocess.run(f"docker save {IMAGE} | docker -H unix://{sock} load", shell=True, check=True,
                       capture_output=True)
        yield sock, start, stop
    finally:
        stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_dockerd_restart_mid_run(tmp_path: Path, home: Path, own_dockerd: Any) -> None:
    sock, start_daemon, stop_daemon = own_dockerd
    proj = docker_proj(tmp_path, base_url=f"unix://{sock}")
    run_id = submit(proj, """
        import time
        from azureml.core import Run
        run = Run.get_context()
        for i in range(100000):
            run.log("tick", i)
            print("tick", i, flush=True)
            time.sleep(0.1)
        """)
    wait_for(lambda: "tick 5" in proj.cli("logs", run_id).out, what="the job to run")
    waiter = proj.popen("wait", run_id)  # must ride out the daemon's absence
    stop_daemon()
    time.sleep(0.5)
    listed = proj.cli("list", "--json")
    assert listed.rc == 0 and "status not refreshed" in listed.err, "list degrades, it does not fail"
    start_daemon()
    _, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 143 and "retrying" in err
    assert proj.cli("wait", run_id, "--timeout", "60").rc == 143
    st = proj.cli("status", run_id, "--json", check=True).json()
    assert st["status"] == "Failed" and "outside runctl" in st["error"]
    ticks = proj.cli("metrics", run_id, "--json", check=True).json()["tick"]
    assert len(ticks) >= 6 and ticks == list(range(len(ticks)))


def test_socket_permission_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from runctl.backends.docker import import_docker_sdk, unreachable_message

    docker = import_docker_sdk()
    try:
        raise docker.errors.DockerException("Error while fetching server API version: ('Connection aborted.', "
                                            "PermissionError(13, 'Permission denied'))")
    except docker.errors.DockerException as e:
        assert "add your user to the 'docker' group" in unreachable_message(e)
    import socket

    from runctl.backends import engine as engine_mod

    class NoPermission(socket.socket):
        def connect(self, address: Any) -> None:
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(engine_mod.socket, "socket", NoPermission)
    with pytest.raises(engine_mod.EngineUnreachable) as raised:  # runctl's own client, as a non-member sees it
        engine_mod.Engine("unix:///var/run/docker.sock").request("GET", "/_ping")
    assert "add your user to the 'docker' group" in unreachable_message(raised.value)


def test_base_image_plus_pip_requirements_is_built_once(tmp_path: Path, home: Path) -> None:
    import uuid

    proj = docker_proj(tmp_path)
    proj.write("requirements.txt", f"# {uuid.uuid4()}\npip\n")  # satisfied offline; the comment makes a fresh build
    job = proj.script_job("import pip\nprint('pip', pip.__version__)\n", compute_target=TARGET,
                          environment={"docker": {"base_image": PIP_IMAGE, "pip_requirements": "requirements.txt"}})
    first = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    second = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    assert "pip " in proj.cli("logs", second).out
    build_logs = [proj.cli("show", r, "--json").json()["logFiles"].get("logs/image_build_log.txt") for r in (first, second)]
    assert build_logs[0] and "Requirement already satisfied: pip" in Path(build_logs[0]).read_text()
    assert build_logs[1] is None, "an unchanged environment is not rebuilt"


def test_container_removed_behind_runctls_back(tmp_path: Path, home: Path) -> None:
    import docker

    proj = docker_proj(tmp_path)
    run_id = submit(proj, "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    wait_for(lambda: "up" in proj.cli("logs", run_id).out, what="the job to start")
    client = docker.from_env()
    client.containers.get(f"runctl-{run_id}").remove(force=True)
    client.close()
    assert proj.cli("wait", run_id, "--timeout", "60").rc != 0
    st = proj.cli("status", run_id, "--json", check=True).json()
    assert st["status"] == "Failed" and "container was removed" in st["error"]


def test_gpus_without_the_nvidia_toolkit_say_what_to_install(tmp_path: Path, home: Path) -> None:
    import docker

    if "nvidia" in (docker.from_env().info().get("Runtimes") or {}):
        pytest.skip("this Docker daemon has the nvidia runtime: the GPU request would succeed")
    proj = docker_proj(tmp_path)
    job = proj.script_job("print(1)\n", compute_target=TARGET, resources={"gpus": 1},
                          environment={"docker": {"image": IMAGE}})
    r = proj.cli("submit", str(job))
    assert r.rc == 2 and "NVIDIA Container Toolkit" in r.err, r.err
    assert proj.cli("list", "--json").json() == [], "refused before a run exists"
    for resources, said in (({"memory": "64T"}, "resources.memory"), ({"cpus": 4096}, "resources.cpus")):
        big = proj.script_job("print(1)\n", name="big.yaml", compute_target=TARGET, resources=resources,
                              environment={"docker": {"image": IMAGE}})
        r = proj.cli("submit", str(big))
        assert r.rc == 2 and said in r.err, r.err


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_submit_killed_at_random_instants_leaves_no_untracked_container(tmp_path: Path, home: Path, sig: int) -> None:
    """The crash hand-over with a real dockerd (SIGKILL; and Ctrl-C, which aborts a container
    begun beside staging): every run ends true, and no container of a run that the store
    calls never-started exists or ever runs."""
    import docker

    proj = docker_proj(tmp_path)
    job = proj.script_job(ALIVE_JOB, compute_target=TARGET, environment={"docker": {"image": IMAGE}})
    final = kill_submits_at_random(proj, job, kills=16 if sig == signal.SIGKILL else 8, seed=11, sig=sig)
    client = docker.from_env()
    try:
        ids = {r["id"] for r in final}
        left = [c.labels.get("runctl.run_id") for c in client.containers.list(all=True, filters={"label": "runctl.run_id"})]
        assert not [rid for rid in left if rid in ids], "finished runs' containers are removed, never-started ones too"
    finally:
        client.close()


def one_line_snapshot(tmp_path: Path, home: Path) -> str:
    """The snapshot id of a source folder whose t.py prints 'job ran', in the store at ``home``."""
    from runctl.store.snapshot import ObjectStore, list_source, take_snapshot
    from runctl.store.sqlite import Store

    src = tmp_path / "src"
    src.mkdir()
    (src / "t.py").write_text("print('job ran')\n")
    store = Store(home)
    try:
        return take_snapshot(list_source(src), ObjectStore(home), store.stat_cache_get, store.stat_cache_put)
    finally:
        store.close()


@pytest.mark.parametrize("made", ["nothing", "run dir", "created container", "started, no go"])
def test_a_pending_run_whose_submitter_died_never_starts(tmp_path: Path, home: Path, made: str) -> None:
    """The instants the random kills rarely hit, made on purpose: submit died after recording
    the plan, before the run directory / after it / after creating the container / while its
    container, started beside staging, waited for the "go" that never came."""
    import docker

    from runctl.backends.docker import DockerBackend

    sid = one_line_snapshot(tmp_path, home)
    backend = DockerBackend("d", {"image": IMAGE, "labels": {SESSION_LABEL: SESSION_ID}}, services(home, "docker"))
    spec = LaunchSpec(run_id=f"exp_1_{re.sub('[^a-z]', '', made)}", experiment="exp", argv=["python3", "t.py"], env={},
                      timeout_s=60, grace_s=1, snapshot_id=sid)
    handle = backend.plan(spec)
    assert handle.pending
    if made != "nothing":
        run_dir = stage_run_dir(backend, spec, home)
    if made == "created container":
        request = container_spec(spec, backend.options, str(run_dir), IMAGE)
        backend.engine.create(request["name"], request["body"])
    if made == "started, no go":  # what a killed submitter leaves: its attach closes with it
        from runctl.backends.docker import _Start

        start = _Start(backend, spec, handle, IMAGE)
        start.thread.join()
        assert start.error is None and start.container_id
        start._close()
        deadline = time.monotonic() + 30
        while backend.engine.inspect(start.container_id)["State"]["Running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.engine.inspect(start.container_id)["State"]["ExitCode"] == 75
    state = backend.status(handle)
    assert state.status.value == "Failed" and "never ran" in (state.error or "")
    client = docker.from_env()
    try:
        assert client.containers.list(all=True, filters={"label": f"runctl.run_id={spec.run_id}"}) == []
    finally:
        client.close()
    if made != "nothing":  # a launcher that still starts (a late `docker start`) refuses to run the job
        assert json.loads((run_dir / "status.json").read_text())["reason"] == "abandoned"
        r = subprocess.run(["python3", str(run_dir / ".runctl" / "launcher.py"), str(run_dir)], capture_output=True, text=True)
        assert r.returncode == 0 and "not starting the job again" in r.stderr
        assert not (run_dir / "logs" / "std_log.txt").exists()
    backend.close()


def test_a_failed_build_shows_its_last_lines_keeps_its_log_and_leaves_no_layers(tmp_path: Path, home: Path) -> None:
    import uuid

    import docker

    proj = docker_proj(tmp_path)
    marker = uuid.uuid4().hex  # fresh steps: nothing of this build is in the cache
    proj.write("Dockerfile", f"FROM {IMAGE}\nRUN echo step-one-{marker} > /one\nRUN echo step-two-{marker} > /two\n"
                             f"RUN printf 'about-to-fail-{marker} \\033[31mred\\n' && exit 3\n")
    proj.write("t.py", "print(1)\n")
    job = proj.job(script="t.py", compute_target=TARGET, environment={"docker": {"dockerfile": "Dockerfile"}})
    client = docker.from_env()
    try:
        before = set(client.api.images(all=True, quiet=True))
        r = proj.cli("submit", str(job), "-q")
        assert r.rc == 3 and "building the image failed" in r.err, r.err
        assert f"about-to-fail-{marker}" in r.err, "the build's last lines are in the error"
        rid = proj.cli("list", "--json").json()[0]["id"]
        assert r.out.strip() == rid, "-q prints the id of the run that failed to start"
        assert f"`runctl logs {rid}`" in r.err and "logs RUN" not in r.err
        assert any(line.strip().startswith(f"about-to-fail-{marker}") for line in r.err.splitlines()), \
            "the build's last lines are lines, not one line of \\n escapes"
        assert "\x1b" not in r.err and "\\x1b[31m" in r.err, "a terminal escape is shown escaped"
        assert f"about-to-fail-{marker}" in proj.cli("logs", rid, check=True).out, "the build log is the run's log"
        logs = proj.cli("logs", rid, "--json", check=True).json()
        assert f"about-to-fail-{marker}" in logs["logs/image_build_log.txt"], "and in the run's logs"
        assert set(client.api.images(all=True, quiet=True)) == before, "no layer of the failed build is left"
    finally:
        client.close()


def test_pip_packages_are_installed_on_the_base_image(tmp_path: Path, home: Path) -> None:
    """environment.docker.pip_packages (what a v1 Environment's pip packages become) are
    installed on base_image with the target's pip configuration and CA bundle (a
    TLS-intercepting proxy); a base image without pip is said so before any build."""
    proj = docker_proj(tmp_path)
    job = proj.script_job("print(1)\n", compute_target=TARGET,
                          environment={"docker": {"base_image": IMAGE, "pip_packages": ["nosuch-runctl-pkg==1.0"]}})
    r = proj.cli("submit", str(job))
    assert r.rc == 3 and f"base_image {IMAGE!r} has no pip" in r.err and "No module named pip" in r.err, r.err
    rid = proj.cli("list", "--json").json()[0]["id"]
    assert "logs/image_build_log.txt" not in proj.cli("logs", rid, "--json", check=True).json(), "no build was tried"
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a real one\n-----END CERTIFICATE-----\n")
    (tmp_path / "pip.conf").write_text("[global]\nno-index = true\nfind-links = /runctl-test-no-such-wheels\n")
    proxied = docker_proj(tmp_path / "p", build_ca_bundle=str(tmp_path / "ca.pem"),
                          build_pip_config=str(tmp_path / "pip.conf"))
    job = proxied.script_job("print(1)\n", compute_target=TARGET,
                             environment={"docker": {"base_image": PIP_IMAGE, "pip_packages": ["nosuch-runctl-pkg==1.0"]}})
    r = proxied.cli("submit", str(job))
    assert r.rc == 3 and "building the image failed" in r.err, r.err
    rid = proxied.cli("list", "--json").json()[0]["id"]
    build = home / "work" / rid / ".runctl" / "build"
    assert (build / "requirements.txt").read_text() == "nosuch-runctl-pkg==1.0\n"
    assert (build / "runctl-ca.pem").read_text() == (tmp_path / "ca.pem").read_text()
    log = proxied.cli("logs", rid, "--json", check=True).json()["logs/image_build_log.txt"]
    assert "PIP_CERT=/tmp/runctl-ca.pem" in log and "/runctl-test-no-such-wheels" in log, "pip used the target's config"
    bad = proj.script_job("print(1)\n", name="bad.yaml", compute_target=TARGET,
                          environment={"docker": {"image": IMAGE, "pip_packages": ["x"]}})
    r = proj.cli("submit", str(bad))
    assert r.rc == 2 and "pip_packages needs environment.docker.base_image" in r.err


def test_a_container_begun_beside_staging_is_removed_when_staging_fails(tmp_path: Path, home: Path) -> None:
    """begin() starts the container while core stages RUN_DIR; abort() (staging failed)
    leaves neither the container nor the empty RUN_DIR behind, and the job never ran."""
    from runctl.backends.docker import DockerBackend

    backend = DockerBackend("d", {"image": IMAGE, "labels": {SESSION_LABEL: SESSION_ID}}, services(home, "docker"))
    spec = LaunchSpec(run_id="exp_1_aborted", experiment="exp", argv=["python3", "t.py"], env={}, timeout_s=60,
                      grace_s=1, snapshot_id="s")
    handle = backend.plan(spec)
    backend.begin(spec, handle)
    assert Path(handle.run_dir).is_dir() and not any(Path(handle.run_dir).iterdir())
    backend.abort(handle)
    assert not Path(handle.run_dir).exists()
    assert backend.engine.containers(["runctl.run_id=exp_1_aborted"]) == []
    backend.close()


def test_a_daemon_elsewhere_is_refused_with_the_field_named(tmp_path: Path, home: Path) -> None:
    proj = docker_proj(tmp_path, base_url="ssh://gpu-box")
    job = proj.script_job("print(1)\n", compute_target=TARGET, environment={"docker": {"image": IMAGE}})
    res = proj.cli("submit", str(job))
    assert res.rc == 2 and "base_url" in res.err and "ssh://gpu-box" in res.err and "SSH compute target" in res.err
    assert proj.cli("list", "--json", check=True).json() == []
    plain = docker_proj(tmp_path / "plain")
    job = plain.script_job("print(1)\n", compute_target=TARGET, environment={"docker": {"image": IMAGE}})
    res = plain.cli("submit", str(job), env={"DOCKER_HOST": "ssh://gpu-box"})
    assert res.rc == 2 and "DOCKER_HOST" in res.err and "unset DOCKER_HOST" in res.err, res.err


def test_a_run_canceled_while_its_container_waits_for_go_ends_canceled(tmp_path: Path, home: Path) -> None:
    """`runctl cancel` in the moment between the container's start and the "go": the job
    never runs, and the run ends Canceled, not Failed to start."""
    from runctl.backends.docker import DockerBackend

    sid = one_line_snapshot(tmp_path, home)
    backend = DockerBackend("d", {"image": IMAGE, "labels": {SESSION_LABEL: SESSION_ID}}, services(home, "docker"))
    spec = LaunchSpec(run_id="exp_1_cancelwait", experiment="exp", argv=["python3", "t.py"], env={}, timeout_s=60,
                      grace_s=1, snapshot_id=sid)
    handle = backend.plan(spec)
    backend.begin(spec, handle)
    start = backend._starting[spec.run_id]
    start.thread.join()
    try:
        assert start.error is None
        stage_run_dir(backend, spec, home)
        backend.cancel(handle)  # what `runctl cancel` does with the pending handle
        wait_for(lambda: not backend.engine.inspect(start.container_id)["State"]["Running"], what="the container to stop")
        done = backend.submit(spec, handle)
        state = backend.status(done)
    finally:
        if start.container_id:
            backend._remove({"Id": start.container_id})
    # (whether the daemon still took the "go" on the stopped container's stream is a race: both end Canceled)
    assert state.status.value == "Canceled" and state.error in ("canceled", "canceled before it started"), state
    assert "job ran" not in (Path(handle.run_dir) / "logs" / "std_log.txt").read_text(errors="replace") \
        if (Path(handle.run_dir) / "logs" / "std_log.txt").exists() else True
    backend.release(done, state)
    assert backend.engine.containers([f"runctl.run_id={spec.run_id}"]) == []
    backend.close()


@pytest.mark.slow
def test_the_setup_rebuilds_a_broken_test_image(tmp_path: Path) -> None:
    """A tag that points at a broken image (an import someone left unfinished): the set-up
    runs Python in it, says so, and builds it again."""
    import docker

    name = f"local/runctl-broken-test:{SESSION_ID}"
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "half").write_text("an unfinished import")
    subprocess.run(f"tar -C {tmp_path / 'rootfs'} -c . | docker import - {name}", shell=True, check=True,
                   capture_output=True)
    try:
        r = subprocess.run(["bash", str(REPO / "tests" / "infra" / "up-docker.sh")], capture_output=True, text=True,
                           env={**os.environ, "RUNCTL_TEST_IMAGE": name}, timeout=600)
        assert r.returncode == 0, r.stderr
        assert f"test image {name} is there but does not work" in r.stderr
        ran = subprocess.run(["docker", "run", "--rm", name, "python3", "-c", "print('fixed')"], capture_output=True,
                             text=True)
        assert ran.stdout.strip() == "fixed"
    finally:
        client = docker.from_env()
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(name, force=True)
        client.close()


def test_environment_python_packages_are_installed_into_the_image(tmp_path: Path, home: Path) -> None:
    """environment.python.pip_packages, the one place a job names its packages, on Docker: the
    image it names is the base they are installed on (no virtual environment is built)."""
    proj = docker_proj(tmp_path)
    job = proj.script_job("print(1)\n", compute_target=TARGET,
                          environment={"docker": {"image": IMAGE},
                                       "python": {"pip_packages": ["nosuch-runctl-pkg==1.0"]}})
    r = proj.cli("submit", str(job))
    assert r.rc == 3 and f"base_image {IMAGE!r} has no pip" in r.err, "installed on the image the job names"


def test_the_environment_record_names_the_image_and_its_digest(tmp_path: Path, home: Path) -> None:
    proj = docker_proj(tmp_path)
    job = proj.script_job("print('hi')\n", compute_target=TARGET, environment={"docker": {"image": IMAGE}})
    rid = proj.cli("submit", str(job), "--wait", "-q", check=True).out.strip()
    record = proj.cli("show", rid, "--json", check=True).json()["environment_record"]
    assert record["image"] == IMAGE and "sha256:" in record["image_digest"], record
    assert record["python"]["version"].startswith("3.") and isinstance(record["packages"], dict)


def test_a_tuning_runs_children_run_in_containers_within_max_concurrent_runs(tmp_path: Path, home: Path) -> None:
    """Tuning on the Docker target: each child is a container of the job's image; never more
    than max_concurrent_runs unfinished (polled); the best run is the grid's best point."""
    from runctl.store.sqlite import Store

    proj = docker_proj(tmp_path)
    code = ("import argparse, time\nfrom azureml.core import Run\np = argparse.ArgumentParser()\n"
            "p.add_argument('--x', type=float)\na = p.parse_args()\nrun = Run.get_context()\n"
            "for i in range(3):\n    run.log('loss', (a.x - 0.4) ** 2 + 1 / (i + 1))\n    time.sleep(0.3)\n")
    job = proj.script_job(code, name="tune.yaml", compute_target=TARGET, environment={"docker": {"image": IMAGE}},
                          hyperdrive={"sampling": "grid", "parameter_space": {"--x": {"choice": [0.1, 0.4, 0.7]}},
                                      "primary_metric_name": "loss", "primary_metric_goal": "minimize",
                                      "max_concurrent_runs": 2})
    parent = proj.cli("submit", str(job), "-q", check=True, env={"RUNCTL_TUNING_POLL_S": "0.2"}).out.strip()
    store = Store(home)
    try:
        poll_children(store, parent, at_most=2)
        kids = store.runs(parent_id=parent)
        assert len(kids) == 3 and all(k.status.value == "Completed" and k.backend == "docker" for k in kids), \
            [(k.id, k.status, k.error) for k in kids]
        best = proj.cli("show", parent, "--json", check=True).json()["best_run"]
        assert best["hyperparameters"] == {"--x": 0.4}
        assert all((k.handle or {}).get("native_id") for k in kids), "each child was a container"
    finally:
        if not store.get(parent).status.is_terminal:
            proj.cli("cancel", parent)
        store.close()
