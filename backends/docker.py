"""The Docker backend: each run in a container on the local Docker Engine (docker SDK).

RUN_DIR is made on this machine (as for the local backend) and bind-mounted at
/runctl/run; the snapshot is the working directory and the launcher runs inside with the
image's Python. An image without Python still runs a ``command:`` job (output and exit
code only). Containers carry runctl labels, so a run is found again after runctl, the
machine or dockerd restarted; a container is removed once its run is finished and synced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar, Iterator

from runctl import __version__
from runctl.backends.base import Handle, JobState, LaunchSpec, Services
from runctl.backends.engine import Engine, EngineError, EngineUnreachable, check_url, engine_url
from runctl.backends.hostdir import HostDirBackend, finished_state, live_state, times
from runctl.errors import BackendUnreachable, ConfigError, InputError, RunctlError, StartError
from runctl.job import protocol as P
from runctl.job.ownership import abandon_unstarted, read_status
from runctl.status import RunStatus

CONTAINER_RUN_DIR = "/runctl/run"
LABEL_RUN_ID = "runctl.run_id"
LABEL_EXPERIMENT = "runctl.experiment"
LABEL_VERSION = "runctl.version"
BUILT_IMAGE_REPO = "runctl-env"
CANCEL_ESCALATE_S = 10.0

# The container's command. It starts at once, while runctl still stages RUN_DIR, and waits
# for "go" on its standard input (sent once RUN_DIR is complete; the end of input instead
# means the submitter stopped first: NOT_STARTED_EXIT, nothing ran). With Python in the
# image, that Python starts now (-S: the launcher is stdlib only, and an image's .pth files
# can cost tens of milliseconds), waits, then runs the launcher, which reads the secret
# variables that follow "go"; without, the command runs directly with its output in the
# run's log (and `timeout` for the limit).
NOT_STARTED_EXIT = 75
WAIT_FOR_GO = ("import sys, json, os, signal, socket, subprocess, threading, time, fcntl, shutil, ctypes\n"
               f"if sys.stdin.readline() != 'go\\n':\n    sys.exit({NOT_STARTED_EXIT})\n"
               "sys.argv[0] = launcher = sys.argv[1] + '/.runctl/launcher.py'\n"
               "sys.argv[1:] = ['--secrets-stdin', sys.argv[1]]\n"
               "sys.path[0] = os.path.dirname(launcher)\n"
               "with open(launcher, 'rb') as f:\n    code = compile(f.read(), launcher, 'exec')\n"
               "exec(code, {'__name__': '__main__', '__file__': launcher, '__package__': None, '__builtins__': __builtins__})\n")
BOOTSTRAP = r"""run=/runctl/run
wait_for_go=$1
shift
if command -v "$RUNCTL_PYTHON" >/dev/null 2>&1; then
    exec "$RUNCTL_PYTHON" -S -c "$wait_for_go" "$run"
fi
IFS= read -r go || go=
[ "$go" = go ] || exit 75
cd "$run/code" || exit 127
mkdir -p "$run/outputs" "$run/logs"
if [ -n "$RUNCTL_SECRETS_STDIN" ]; then
    echo "runctl: no $RUNCTL_PYTHON in this image, and \${env:...} secrets reach the job through the launcher" >>"$run/logs/std_log.txt"
    exit 127
fi
[ -e outputs ] || ln -s ../outputs outputs
[ -e logs ] || ln -s ../logs logs
echo "runctl: no $RUNCTL_PYTHON in this image; running the command without the launcher" >>"$run/logs/std_log.txt"
if [ -n "$RUNCTL_TIMEOUT_S" ] && command -v timeout >/dev/null 2>&1; then
    exec timeout -s TERM -k "$RUNCTL_GRACE_S" "$RUNCTL_TIMEOUT_S" "$@" </dev/null >>"$run/logs/std_log.txt" 2>&1
fi
exec "$@" </dev/null >>"$run/logs/std_log.txt" 2>&1
"""


@contextlib.contextmanager
def docker_errors(what: str, refused: type[RunctlError] = InputError) -> Iterator[None]:
    """Convert the daemon's errors (through runctl's Engine client, or docker-py's for pulls
    and builds) into runctl's, naming what was being done, by operation: a daemon that does
    not answer is BackendUnreachable (exit 4) whatever was being done; one that refuses is
    ``refused``: InputError (exit 2), or StartError (exit 3) where a run was being started."""
    try:
        yield
    except EngineError as e:
        raise refused(f"{what}: the Docker daemon said: {e.message}{_hint(e.message)}") from e
    except EngineUnreachable as e:
        raise BackendUnreachable(unreachable_message(e)) from e
    except Exception as e:
        if "docker" not in sys.modules:
            raise
        docker = import_docker_sdk()
        import requests

        if isinstance(e, docker.errors.ImageNotFound):
            raise refused(f"{what}: image not found: {e.explanation or e}") from e
        if isinstance(e, docker.errors.APIError):
            said = str(e.explanation or e)
            raise refused(f"{what}: the Docker daemon said: {said}{_hint(said)}") from e
        if isinstance(e, (docker.errors.DockerException, requests.exceptions.ConnectionError)):
            raise BackendUnreachable(unreachable_message(e)) from e
        raise


def _hint(said: str) -> str:
    return ("; GPUs need the NVIDIA Container Toolkit on this host (`runctl compute check` then lists the "
            "nvidia runtime), or set resources.gpus: 0") if "could not select device driver" in said else ""


def import_docker_sdk() -> Any:
    """Import docker-py (for pulling and building images only). Keep it from importing
    paramiko (about 100 ms): docker-py treats a missing paramiko as "no SSH transport"."""
    if "paramiko" in sys.modules or "docker" in sys.modules:
        import docker

        return docker
    sys.modules["paramiko"] = None  # type: ignore[assignment]
    try:
        import docker
    finally:
        del sys.modules["paramiko"]
    return docker


def unreachable_message(e: BaseException) -> str:
    text = str(e)
    if "Permission denied" in text or isinstance(e.__context__, PermissionError):
        return ("permission denied on the Docker socket (/var/run/docker.sock); add your user to the "
                "'docker' group (then log in again) or run as root")
    return (f"the Docker daemon does not answer ({text}); start it (`systemctl start docker`, or `dockerd &`) "
            f"and check with `runctl compute check`")


def parse_gpus(value: Any) -> list[dict[str, Any]]:
    """resources.gpus / the target's gpus -> Docker device requests (NVIDIA)."""
    if value in (None, 0, "0", False):
        return []
    if value == "all":
        return [{"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}]
    if isinstance(value, list):
        return [{"Driver": "", "Count": 0, "DeviceIDs": [str(v) for v in value], "Capabilities": [["gpu"]], "Options": {}}]
    return [{"Driver": "", "Count": int(value), "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}]


def parse_mounts(mounts: list[Any]) -> dict[str, dict[str, str]]:
    """``host:container[:rw|ro]`` strings or {source, target, read_only} -> {source: {bind, mode}} (read-only by default)."""
    out: dict[str, dict[str, str]] = {}
    for m in mounts or []:
        if isinstance(m, str):
            parts = m.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                raise InputError(f"mount {m!r}: use HOST:CONTAINER or HOST:CONTAINER:rw")
            source, target, mode = parts[0], parts[1], parts[2] if len(parts) == 3 else "ro"
        else:
            source, target = m.get("source"), m.get("target")
            mode = "ro" if m.get("read_only", True) else "rw"
        source = os.path.abspath(os.path.expanduser(str(source)))
        if not os.path.exists(source):
            raise InputError(f"mount source {source!r} does not exist; fix mounts in the compute target")
        out[source] = {"bind": str(target), "mode": mode}
    return out


def check_mounts(volumes: dict[str, dict[str, str]], kept: Path, allowed: bool) -> None:
    """A read-write mount of /, of runctl's store (``services.keep_out``), or of a folder holding
    it hands the job the host or every run's data: refused unless the target says
    allow_unsafe_mounts: true."""
    if allowed:
        return
    store = os.path.realpath(kept)
    for source, how in volumes.items():
        real = os.path.realpath(source)
        holds_store = store == real or store.startswith(real.rstrip("/") + "/")
        in_store = real.startswith(store + "/")
        if how["mode"] == "rw" and (real == "/" or holds_store or in_store):
            what = "/" if real == "/" else "runctl's store" if (holds_store or in_store) and real != "/" else real
            raise InputError(f"mounts: {source} read-write would give the job {what} ({store}); mount it "
                             f"read-only, mount a narrower folder, or set allow_unsafe_mounts: true in the target")


def container_spec(spec: LaunchSpec, options: dict[str, Any], host_run_dir: str, image: str) -> dict[str, Any]:
    """The container's name and its Engine API create request (golden-tested): one place maps
    job and target settings. Its standard input stays open for the "go" (see BOOTSTRAP)."""
    resources = spec.resources or {}
    docker_env = (spec.environment or {}).get("docker") or {}
    user = options.get("user") or f"{os.getuid()}:{os.getgid()}"
    python = spec.argv[0] if spec.argv and "python" in os.path.basename(spec.argv[0]) else "python3"
    env = dict(spec.env)  # secret_env never: it goes to the launcher's stdin (see DockerBackend.submit)
    env.update({
        P.RUN_ID: spec.run_id, P.RUN_DIR: CONTAINER_RUN_DIR, P.EXPERIMENT: spec.experiment,
        P.OUTPUTS: f"{CONTAINER_RUN_DIR}/{P.OUTPUTS_DIR}", "RUNCTL_PYTHON": python,
        "RUNCTL_TIMEOUT_S": str(spec.timeout_s or ""), "RUNCTL_GRACE_S": f"{spec.grace_s:g}",
        "RUNCTL_IMAGE": image,  # (the run's environment record names it)
    })
    if spec.secret_env:
        env["RUNCTL_SECRETS_STDIN"] = "1"
    if not str(user).startswith("0") and "HOME" not in env:
        env["HOME"] = "/tmp"  # an arbitrary uid has no home in most images
    binds = {host_run_dir: {"bind": CONTAINER_RUN_DIR, "mode": "rw"}}
    binds.update(parse_mounts(options.get("mounts", [])))
    host: dict[str, Any] = {"Binds": [f"{src}:{b['bind']}:{b['mode']}" for src, b in binds.items()], "Init": True}
    cpus = resources.get("cpus", options.get("cpus"))
    if cpus:
        host["NanoCpus"] = int(float(cpus) * 1e9)
    memory = resources.get("memory", options.get("memory"))
    if memory:
        host["Memory"] = host["MemorySwap"] = int(memory)  # bytes (core parsed it); no swap beyond: an OOM is an OOM
    shm = docker_env.get("shm_size") or options.get("shm_size")
    if shm:
        host["ShmSize"] = shm_bytes(shm)
    gpus = parse_gpus(resources["gpus"] if "gpus" in resources else options.get("gpus"))
    if gpus:
        host["DeviceRequests"] = gpus
    if options.get("network"):
        host["NetworkMode"] = options["network"]
    body = {
        "Image": image,
        "Cmd": ["/bin/sh", "-c", BOOTSTRAP, "runctl-boot", WAIT_FOR_GO, *spec.argv],
        "WorkingDir": CONTAINER_RUN_DIR,  # not code/: the daemon would make it (as root) before staging does
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": {**(options.get("labels") or {}), LABEL_RUN_ID: spec.run_id, LABEL_EXPERIMENT: spec.experiment,
                   LABEL_VERSION: __version__},
        "User": str(user),
        "AttachStdin": True, "OpenStdin": True, "StdinOnce": True,
        "HostConfig": host,
    }
    return {"name": f"runctl-{spec.run_id}", "body": body}


def shm_bytes(text: str) -> int:
    """shm_size as the schemas allow it (digits, then b, k, m or g; binary units) -> bytes."""
    text = str(text).strip().lower()
    power = "bkmg".find(text[-1]) if text[-1:].isalpha() else 0
    return int(text.rstrip("bkmg")) * 1024 ** max(power, 0)


BUILD_FILES = {"build_ca_bundle": ("runctl-ca.pem", "PIP_CERT"), "build_pip_config": ("runctl-pip.conf", "PIP_CONFIG_FILE")}


def pip_dockerfile(base_image: str, extra: tuple[str, ...] = ()) -> str:
    """The Dockerfile that installs requirements.txt on ``base_image``; ``extra``: the target
    options of BUILD_FILES given (a CA bundle, a pip.conf), copied in for the install only."""
    copies = "".join(f"COPY {BUILD_FILES[o][0]} /tmp/{BUILD_FILES[o][0]}\n" for o in extra)
    env = "".join(f"{BUILD_FILES[o][1]}=/tmp/{BUILD_FILES[o][0]} " for o in extra)
    # PIP_BREAK_SYSTEM_PACKAGES: Debian-based images mark their Python externally managed;
    # as a variable (not a flag) it is harmless to older pips that do not know it.
    return (f"FROM {base_image}\nCOPY requirements.txt /tmp/runctl-requirements.txt\n{copies}"
            f"RUN {env}PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir -r /tmp/runctl-requirements.txt\n")


_RESOURCE = {"cpus": {"type": "number", "exclusiveMinimum": 0}, "memory": {"type": ["integer", "string"]},
             "gpus": {"oneOf": [{"type": "integer", "minimum": 0}, {"enum": ["all"]},
                                {"type": "array", "items": {"type": ["integer", "string"]}, "minItems": 1}]}}


class DockerBackend(HostDirBackend):
    name = "docker"
    options_schema: ClassVar[dict[str, Any]] = {
        **HostDirBackend.options_schema, **_RESOURCE,
        "image": {"type": "string", "minLength": 1},
        "shm_size": {"type": "string", "pattern": "^[0-9]+[bkmgBKMG]?$"},
        "mounts": {"type": "array", "items": {"oneOf": [
            {"type": "string", "minLength": 3},
            {"type": "object", "additionalProperties": False, "required": ["source", "target"],
             "properties": {"source": {"type": "string"}, "target": {"type": "string"}, "read_only": {"type": "boolean"}}},
        ]}},
        "allow_unsafe_mounts": {"type": "boolean"},
        "network": {"type": "string", "minLength": 1},
        "user": {"type": ["string", "integer"]},
        "keep_failed_containers": {"type": "boolean"},
        "base_url": {"type": "string", "minLength": 1},
        "build_ca_bundle": {"type": "string", "minLength": 1,
                            "description": "a CA bundle (PEM) pip trusts while installing pip packages on base_image "
                                           "(a TLS-intercepting proxy); not left in the image's environment"},
        "build_pip_config": {"type": "string", "minLength": 1,
                             "description": "a pip.conf used while installing pip packages on base_image (index-url, "
                                          "proxy, trusted-host...)"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "labels put on the containers and images this target makes (e.g. to find them)"},
    }

    def __init__(self, target: str, options: dict[str, Any], services: Services) -> None:
        super().__init__(target, options, services)
        problem = check_url(engine_url(options.get("base_url")))
        if problem and options.get("base_url"):
            raise ConfigError(problem, field="base_url", hint="remove base_url to use this machine's daemon")
        if problem:  # from DOCKER_HOST (e.g. a remote Docker context exported in the shell)
            raise ConfigError(f"DOCKER_HOST in runctl's environment: {problem}", field="type",
                              hint="unset DOCKER_HOST, or set base_url: unix:///var/run/docker.sock in this target")
        self._engine: Engine | None = None
        self._sdk: Any = None
        self._starting: dict[str, _Start] = {}  # run id -> its container's start, begun while staging

    @property
    def engine(self) -> Engine:
        """runctl's own client (backends/engine.py), for everything but pulls and builds."""
        if self._engine is None:
            self._engine = Engine(self.options.get("base_url"))
        return self._engine

    @property
    def sdk(self) -> Any:
        """docker-py, for pulling and building images (imported only then)."""
        if self._sdk is None:
            docker = import_docker_sdk()
            with docker_errors("connecting to Docker"):
                self._sdk = docker.DockerClient(base_url=engine_url(self.options.get("base_url")), version="auto",
                                                timeout=120)
        return self._sdk

    def close(self) -> None:
        for start in list(self._starting.values()):
            start.abandon(self)
        self._starting.clear()
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._sdk is not None:
            self._sdk.close()
            self._sdk = None

    # -- images ---------------------------------------------------------------------------
    installs_python_packages = True  # environment.python.pip_*: installed into the image, not a venv
    runs_images = True

    def docker_env(self, spec: LaunchSpec) -> dict[str, Any]:
        """environment.docker, with environment.python's pip_packages / pip_requirements (the
        one place a job names its packages) installed on the image it names (base_image, else
        image, else the target's image)."""
        docker_env = dict((spec.environment or {}).get("docker") or {})
        python = (spec.environment or {}).get("python") or {}
        from_python = False
        for field in ("pip_packages", "pip_requirements"):
            if python.get(field) and not docker_env.get(field):
                docker_env[field] = python[field]
                from_python = True
        if from_python and not docker_env.get("base_image") and not docker_env.get("dockerfile"):
            base = docker_env.pop("image", None) or self.options.get("image")
            if base:
                docker_env["base_image"] = base
        return docker_env

    def check_job(self, spec: LaunchSpec) -> None:
        for kept in self.services.keep_out:
            check_mounts(parse_mounts(self.options.get("mounts", [])), kept, bool(self.options.get("allow_unsafe_mounts")))
        docker_env = self.docker_env(spec)
        if not (docker_env.get("image") or docker_env.get("dockerfile") or docker_env.get("base_image")
                or self.options.get("image")):
            raise InputError(f"compute target {self.target!r} runs containers: set environment.docker.image "
                             f"(or dockerfile, or base_image), or image: in the target")
        for field in ("pip_requirements", "pip_packages"):
            if docker_env.get(field) and not docker_env.get("base_image"):
                raise InputError(f"environment.docker.{field} needs environment.docker.base_image (the image the "
                                 f"packages are installed on)")
        image = docker_env.get("image") or (None if docker_env.get("dockerfile") or docker_env.get("base_image")
                                            else self.options.get("image"))
        self.check_capacity(spec)
        if image:
            self.ensure_image(image)

    def check_capacity(self, spec: LaunchSpec) -> None:
        """Refuse, before a run exists, what this daemon cannot give: GPUs without the NVIDIA
        runtime, more memory or CPUs than the machine has."""
        resources: dict[str, Any] = {k: self.options[k] for k in ("cpus", "memory", "gpus") if k in self.options}
        resources.update(spec.resources or {})
        if not any(resources.get(k) for k in ("cpus", "memory", "gpus")):
            return
        with docker_errors("asking Docker what this machine has"):
            info = self.engine.request("GET", "/info")
        if resources.get("gpus") and "nvidia" not in (info.get("Runtimes") or {}):
            raise InputError(f"resources.gpus: {resources['gpus']!r}, but the Docker daemon of target {self.target!r} "
                             f"has no nvidia runtime: install the NVIDIA Container Toolkit on this host "
                             f"(`runctl compute check {self.target}` then lists it), or set resources.gpus: 0")
        if resources.get("memory") and info.get("MemTotal") and resources["memory"] > info["MemTotal"]:
            raise InputError(f"resources.memory: {resources['memory']} bytes, but this machine has "
                             f"{info['MemTotal']}; ask for less")
        if resources.get("cpus") and info.get("NCPU") and resources["cpus"] > info["NCPU"]:
            raise InputError(f"resources.cpus: {resources['cpus']:g}, but this machine has {info['NCPU']}; ask for fewer")

    def has_image(self, name: str) -> bool:
        with docker_errors(f"looking up image {name!r}"):
            try:
                self.engine.image(name)
                return True
            except EngineError as e:
                if e.not_found:
                    return False
                raise

    def ensure_image(self, image: str) -> None:
        """Use the local image if present, else pull it (progress on a terminal). An image
        that cannot be had is a request this daemon refuses: InputError, before any run exists."""
        if self.has_image(image):
            return
        docker = import_docker_sdk()
        repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        try:
            for event in self.sdk.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
                if "error" in event:
                    raise InputError(f"cannot pull image {image!r}: {event['error']}; check the name, or build or "
                                     f"load it locally (`docker images` lists what is here)")
                if sys.stderr.isatty():
                    sys.stderr.write(f"\r{image}: {event.get('status', '')} {event.get('progress', '')}\033[K")
            if sys.stderr.isatty():
                sys.stderr.write("\n")
        except (docker.errors.APIError, docker.errors.DockerException) as e:
            explanation = getattr(e, "explanation", None) or str(e)
            raise InputError(f"cannot pull image {image!r}: {explanation}; check the name, or build or load it "
                             f"locally (`docker images` lists what is here)") from e

    def build_image(self, spec: LaunchSpec, run_dir: Path) -> str:
        """Build from environment.docker.dockerfile or base_image + pip_requirements, cached by content."""
        docker_env = self.docker_env(spec)
        code = run_dir / "code"
        if docker_env.get("dockerfile"):
            dockerfile = (code / docker_env["dockerfile"]).read_text()
            context = docker_env.get("build_context", ".").strip("/") or "."
            prefix = "" if context == "." else context + "/"
            tree = [[p, d] for p, d in spec.code_files if p.startswith(prefix)]
            key_src = json.dumps([dockerfile, context, tree])
            context_dir = code / context
        else:
            requirements = (code / docker_env["pip_requirements"]).read_text() if docker_env.get("pip_requirements") else ""
            if docker_env.get("pip_packages"):
                requirements = requirements.rstrip("\n") + ("\n" if requirements else "") \
                    + "\n".join(docker_env["pip_packages"]) + "\n"
            extra = tuple(o for o in BUILD_FILES if self.options.get(o))
            dockerfile = pip_dockerfile(docker_env["base_image"], extra)
            files = {BUILD_FILES[o][0]: self._build_file(o) for o in extra}
            key_src = json.dumps([dockerfile, requirements, {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}])
            context_dir = run_dir / ".runctl" / "build"
            context_dir.mkdir(parents=True, exist_ok=True)
            (context_dir / "requirements.txt").write_text(requirements)
            for name, data in files.items():
                (context_dir / name).write_bytes(data)
        tag = f"{BUILT_IMAGE_REPO}:{hashlib.sha256(key_src.encode()).hexdigest()[:20]}"
        if self.has_image(tag):
            return tag
        if not docker_env.get("dockerfile"):
            self._check_pip(docker_env["base_image"])
        log_path = run_dir / "logs" / "image_build_log.txt"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        (context_dir / ".runctl.Dockerfile").write_text(dockerfile)
        with docker_errors("listing images", StartError):
            before = set(self.sdk.api.images(all=True, quiet=True))
        made: list[str] = []  # the layers this build made (" ---> ID" after a step that ran)
        with open(log_path, "a") as log, docker_errors(f"building image {tag}", StartError):
            for event in self.sdk.api.build(path=str(context_dir), dockerfile=".runctl.Dockerfile", tag=tag,
                                               rm=True, forcerm=True, decode=True,
                                               labels={**(self.options.get("labels") or {}), LABEL_VERSION: __version__}):
                if "stream" in event:
                    log.write(event["stream"])
                    m = re.match(r"^ ---> ([0-9a-f]{12})\s*$", event["stream"])
                    if m:
                        made.append(m.group(1))
                if "error" in event:
                    log.write(event["error"] + "\n")
                    log.flush()
                    self._drop_layers(before, made)
                    tail = log_path.read_text(errors="replace").splitlines()[-15:]
                    raise StartError("building the image failed: " + event["error"].strip() + "\n  "
                                     + "\n  ".join(tail) + f"\n(the whole build log: `runctl logs {spec.run_id}`)")
        return tag

    def _build_file(self, option: str) -> bytes:
        path = Path(self.options[option]).expanduser()
        try:
            return path.read_bytes()
        except OSError as e:
            raise InputError(f"target {self.target!r}: {option}: cannot read {path} ({e.strerror})") from None

    def _check_pip(self, base_image: str) -> None:
        """Before building on ``base_image``: does its Python have pip? (Many slim or
        distribution images do not, and the build would fail deep in its log.)"""
        self.ensure_image(base_image)
        docker = import_docker_sdk()
        try:
            self.sdk.containers.run(base_image, ["python3", "-m", "pip", "--version"], entrypoint=[], remove=True,
                                    network_mode="none", labels=dict(self.options.get("labels") or {}))
        except docker.errors.ContainerError as e:
            said = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {e.exit_status}"]
            raise StartError(f"environment.docker.base_image {base_image!r} has no pip (`python3 -m pip` there: "
                             f"{said[0]}); use an image with pip (e.g. python:3.11-slim), or a dockerfile that "
                             f"installs your packages") from None
        except docker.errors.DockerException as e:
            raise StartError(f"environment.docker.base_image {base_image!r}: cannot run python3 in it ({e}); use an "
                             f"image with Python and pip") from None

    def _drop_layers(self, before: set[str], made: list[str]) -> None:
        """A failed build leaves the layers of its steps that ran as untagged images: remove
        those (only images this build made, never one that existed before it)."""
        try:
            after = self.sdk.api.images(all=True, quiet=True)
        except Exception:
            return
        new = [i for i in after if i not in before and any(i.split(":")[-1].startswith(p) for p in made)]
        for image_id in reversed(new):  # children first
            with contextlib.suppress(Exception):
                self.sdk.api.remove_image(image_id, noprune=False)

    # -- the contract -----------------------------------------------------------------------
    def _image_for(self, spec: LaunchSpec) -> str | None:
        """The image to run, when it is known before RUN_DIR is staged (None: it is built
        from the staged code's Dockerfile or requirements)."""
        docker_env = self.docker_env(spec)
        if docker_env.get("image"):
            return str(docker_env["image"])
        if docker_env.get("dockerfile") or docker_env.get("base_image"):
            return None
        return str(self.options["image"])

    def begin(self, spec: LaunchSpec, handle: Handle) -> None:
        """Create and start the container while core stages RUN_DIR (starting one takes most
        of 0.2 s); its command waits for ``submit``'s "go". A job whose image is built from
        its own code starts in ``submit`` instead."""
        image = self._image_for(spec)
        if image is None:
            return
        run_dir = Path(handle.run_dir)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir()  # empty, for the bind mount; staging fills it
        self._starting[spec.run_id] = _Start(self, spec, handle, image)

    def abort(self, handle: Handle) -> None:
        start = self._starting.pop(Path(handle.run_dir).name, None)
        if start is not None:
            start.abandon(self)
        with contextlib.suppress(OSError):
            os.rmdir(handle.run_dir)  # only if staging left it as begin() made it: empty

    def submit(self, spec: LaunchSpec, handle: Handle) -> Handle:
        run_dir = Path(handle.run_dir)
        if self.options.get("user") and os.getuid() == 0:
            _chown_tree(run_dir, str(self.options["user"]))
        start = self._starting.pop(spec.run_id, None)
        if start is None:
            start = _Start(self, spec, handle, self._image_for(spec) or self.build_image(spec, run_dir))
        try:
            container_id = start.go(self, spec.secret_env)
        except Exception:
            # Canceled while its container waited for "go" (the stop closed the stream): the run
            # is recorded canceled before it started, not as a failure to start.
            if self.cancel_requested(handle) and abandon_unstarted(handle.run_dir, canceled=True) is not None:
                container_id = start.container_id or ""
            else:
                raise
        return Handle("docker", container_id, handle.run_dir, host=handle.host,
                      extra={"image": start.image, "name": start.name})

    def _container(self, handle: Handle) -> dict[str, Any] | None:
        """The run's container (as the daemon inspects it), by id, else by its run-id label
        (a pending handle has no id yet); None once removed or never made."""
        with docker_errors("asking Docker about the run's container"):
            if handle.native_id:
                with contextlib.suppress(NotFound):
                    return _inspected(self.engine, handle.native_id)
            found = self.engine.containers([f"{LABEL_RUN_ID}={Path(handle.run_dir).name}"])
            with contextlib.suppress(NotFound):
                return _inspected(self.engine, found[0]["Id"]) if found else None
            return None  # removed between the listing and the inspection

    def status(self, handle: Handle) -> JobState:
        container = self._container(handle)
        return self._state(handle, container, container.get("State", {}) if container is not None else None)

    def status_many(self, handles: list[Handle]) -> list[JobState]:
        """One container listing for all runs (no per-container inspect); a full inspect only
        for containers that stopped, whose exit code and OOM flag matter."""
        with docker_errors("asking Docker about the runs' containers"):
            listed = self.engine.containers([LABEL_RUN_ID])
        by_run = {(c.get("Labels") or {}).get(LABEL_RUN_ID): c for c in listed}
        out = []
        for h in handles:
            c = by_run.get(Path(h.run_dir).name)
            state = c.get("State") if c is not None else None
            if c is None or state in ("running", "created"):
                c_state = None if c is None else {"Running": state == "running", "Status": state}
                out.append(self._state(h, c, c_state))
            else:
                out.append(self.status(h))
        return out

    def _state(self, handle: Handle, container: dict[str, Any] | None, c_state: dict[str, Any] | None) -> JobState:
        st = read_status(handle.run_dir)
        never_went = c_state is None or c_state.get("Status") == "created" or (
            not c_state.get("Running") and c_state.get("ExitCode") == NOT_STARTED_EXIT)
        if handle.pending and not st and never_went:
            # Its submitter died before the job could start: make sure it never does.
            self._remove(container)
            return finished_state(abandon_unstarted(handle.run_dir) or read_status(handle.run_dir),
                                  self.cancel_requested(handle))
        cancel = self.cancel_requested(handle)
        if cancel and container is not None and c_state and c_state.get("Running"):
            if self.cancel_marker_age(handle) > float(self.options.get("cancel_grace_s", 10)) + CANCEL_ESCALATE_S:
                with docker_errors("killing the run's container"), contextlib.suppress(EngineError):
                    self.engine.kill(container["Id"], "SIGKILL")
        return map_state(st, c_state, cancel)

    def cancel(self, handle: Handle) -> None:
        self.mark_cancel(handle)
        container = self._container(handle)
        state = (container.get("State") or {}).get("Status") if container is not None else None
        if container is not None and state == "running":
            with docker_errors("stopping the run's container"), contextlib.suppress(EngineError):
                self.engine.kill(container["Id"], "SIGTERM")  # the launcher stops the job gracefully, then exits
        elif container is None or state == "created":
            if abandon_unstarted(handle.run_dir, canceled=True) is not None:
                self._remove(container)

    def _remove(self, container: dict[str, Any] | None) -> None:
        if container is None:
            return
        with docker_errors("removing the run's container"):
            try:
                self.engine.remove(container["Id"])
            except EngineError as e:
                if not e.not_found and e.status != 409:  # gone, or already being removed
                    raise

    def release(self, handle: Handle, state: JobState) -> None:
        if not (state.status == RunStatus.FAILED and self.options.get("keep_failed_containers")):
            self._remove(self._container(handle))
        super().release(handle, state)

    def check(self) -> list[str]:
        with docker_errors("checking Docker"):
            version = self.engine.request("GET", "/version")
            images = sorted(t for img in self.engine.request("GET", "/images/json")
                            for t in (img.get("RepoTags") or []) if t != "<none>:<none>")
            runtimes = sorted((self.engine.request("GET", "/info").get("Runtimes") or {}).keys())
        lines = [f"Docker Engine {version.get('Version')} (API {version.get('ApiVersion')})",
                 f"runtimes: {', '.join(runtimes)}" + ("" if "nvidia" in runtimes else " (no nvidia runtime: gpus unavailable)"),
                 f"work_dir: {self.work_dir}", f"images ({len(images)}):"]
        return lines + [f"  {t}" for t in images]


class NotFound(Exception):
    pass


def _inspected(engine: Engine, container_id: str) -> dict[str, Any]:
    try:
        return engine.inspect(container_id)
    except EngineError as e:
        if e.not_found:
            raise NotFound(container_id) from e
        raise


class _Start:
    """A run's container being created and started, in a thread beside staging, with its
    standard input held open by an attach: ``go`` sends "go" (and the secret variables) and
    closes it; ``abandon`` closes it unsent (the container's command then exits,
    NOT_STARTED_EXIT) and removes the container."""

    def __init__(self, backend: DockerBackend, spec: LaunchSpec, handle: Handle, image: str) -> None:
        request = container_spec(spec, backend.options, handle.run_dir, image)
        self.image, self.name, self.body = image, request["name"], request["body"]
        self.container_id: str | None = None
        self.sock: socket.socket | None = None
        self.error: BaseException | None = None
        self.engine = Engine(backend.options.get("base_url"))  # its own connection: it runs beside the caller
        self.thread = threading.Thread(target=self._run, name=f"runctl-start-{spec.run_id}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with contextlib.suppress(Exception):  # the image's digest, for the run's environment record
                info = self.engine.image(self.image)
                digest = (info.get("RepoDigests") or [None])[0] or info.get("Id")
                if isinstance(digest, str):
                    self.body["Env"].append(f"RUNCTL_IMAGE_DIGEST={digest}")
            self.container_id = self.engine.create(self.name, self.body)
            self.sock = self.engine.attach_stdin(self.container_id)
            self.engine.start(self.container_id)
        except BaseException as e:  # noqa: BLE001 - handed to the caller by go()
            self.error = e

    def go(self, backend: DockerBackend, secrets: dict[str, str]) -> str:
        self.thread.join()
        try:
            with docker_errors(f"starting a container from {self.image!r}", StartError):
                if self.error is not None:
                    raise self.error
                assert self.sock is not None and self.container_id is not None
                self.sock.sendall(b"go\n" + json.dumps(secrets).encode())
            return self.container_id
        except BaseException:
            self.abandon(backend)
            raise
        finally:
            self._close()

    def abandon(self, backend: DockerBackend) -> None:
        self.thread.join()
        self._close()
        if self.container_id is not None:
            with contextlib.suppress(Exception):
                backend._remove({"Id": self.container_id})

    def _close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
        self.engine.close()


def map_state(st: dict[str, Any], c_state: dict[str, Any] | None, cancel_requested: bool) -> JobState:
    """The one mapping from (status.json, the container's State) to a RunStatus."""
    common = times(st)
    running = bool(c_state and (c_state.get("Running") or c_state.get("Restarting")))
    if c_state and c_state.get("OOMKilled") and not running:
        code = st.get("exit_code") if st.get("state") == P.FINISHED else c_state.get("ExitCode")
        return JobState(RunStatus.FAILED, exit_code=code or 137, error="out of memory (the container hit its memory limit)",
                        **{**common, "ended_at": common["ended_at"] or _docker_time(c_state.get("FinishedAt"))})
    if st.get("state") == P.FINISHED:
        return finished_state(st, cancel_requested)
    if c_state is None:
        return JobState(RunStatus.FAILED, error="the run's container was removed before the job finished", **common)
    if running and st:  # the launcher's word on a live run, as on every backend
        return live_state(st, True, cancel_requested)
    if running:  # no launcher (an image without Python): the container is the job
        return JobState(RunStatus.CANCEL_REQUESTED if cancel_requested else RunStatus.RUNNING, **common)
    if c_state.get("Status") == "created":
        return JobState(RunStatus.STARTING, **common)
    code = c_state.get("ExitCode")
    ended = _docker_time(c_state.get("FinishedAt"))
    started = common["started_at"] or _docker_time(c_state.get("StartedAt"))
    if cancel_requested:
        return JobState(RunStatus.CANCELED, exit_code=code, error="canceled", started_at=started, ended_at=ended)
    if st:  # the launcher started but could not record the end: the container was stopped hard
        return JobState(RunStatus.FAILED, exit_code=code, started_at=started, ended_at=ended,
                        error=f"the container stopped (exit code {code}) before the launcher recorded the end")
    if code == 0:  # no launcher (an image without Python): the command's own exit code
        return JobState(RunStatus.COMPLETED, exit_code=0, started_at=started, ended_at=ended)
    return JobState(RunStatus.FAILED, exit_code=code, error=f"exit code {code}", started_at=started, ended_at=ended)


def _chown_tree(root: Path, user: str) -> None:
    """Root submitting for another uid:gid: the container must be able to write RUN_DIR."""
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return
    ids = (int(uid), int(gid) if gid.isdigit() else int(uid))
    for dirpath, _dirs, files in os.walk(root):
        os.chown(dirpath, *ids)
        for fn in files:
            os.chown(os.path.join(dirpath, fn), *ids, follow_symlinks=False)


def _docker_time(text: str | None) -> float | None:
    if not text or text.startswith("0001"):
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return None
