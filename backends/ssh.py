"""The SSH backend: runs on a host reached by SSH, with nothing installed there but Python.

paramiko, with ~/.ssh/config aliases (HostName, User, Port, IdentityFile, ProxyJump),
ssh-agent and key files, and known_hosts verification that never auto-accepts: an
unknown or changed host key is an error showing the fingerprint and how to trust it
(``runctl compute trust TARGET``). Files go through SFTP into a content-addressed object
cache under the remote work_dir; everything else (materialising RUN_DIR, reading its
files without following links, the launcher lock, cancel) is one request to runctl's
stdlib agent (runctl/remote_agent.py), shipped once per host and version.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import posixpath
import shlex
import socket
import time
from pathlib import Path
from typing import Any, ClassVar, Iterator

from runctl import protocol as P
from runctl.errors import BackendUnreachable, InputError, RunctlError, StartError
from runctl.status import RunStatus

from .base import Backend, Handle, JobState, LaunchSpec, RunFile
from .transport import StagePlan, Transport

RUNCTL_PKG = Path(__file__).resolve().parent.parent / "runctl"
if not (RUNCTL_PKG / "remote_agent.py").exists():  # installed: backends/ lives inside runctl/
    RUNCTL_PKG = Path(__file__).resolve().parent.parent
AGENT_FILES = (("remote_agent.py", "remote_agent.py"), ("launcher.py", "launcher.py"),
               ("protocol.py", "lib/runctl_protocol.py"))
SAFEFS = Path(__file__).resolve().parent / "safefs.py"
READ_CHUNK = 4 << 20
# Installs the agent's files (one JSON line on stdin: {name: base64}) into argv[1], then
# becomes the agent. Python >= 3.8, stdlib only.
AGENT_BOOTSTRAP = """
import base64, json, os, shutil, sys
dest = sys.argv[1]
sys.stdout.write('{"install": true}\\n')
sys.stdout.flush()
files = json.loads(sys.stdin.buffer.readline())
tmp = '%s.tmp%d' % (dest, os.getpid())
os.makedirs(os.path.join(tmp, 'lib'))
for name, data in files.items():
    with open(os.path.join(tmp, name), 'wb') as f:
        f.write(base64.b64decode(data))
try:
    os.rename(tmp, dest)
except OSError:
    shutil.rmtree(tmp)
agent = os.path.join(dest, 'remote_agent.py')
os.execv(sys.executable, [sys.executable, '-S', '-E', agent, '--serve'])
"""


@contextlib.contextmanager
def ssh_errors(host: str, what: str) -> Iterator[None]:
    """paramiko and socket errors -> runctl's, naming the host and what was being done."""
    import paramiko

    try:
        yield
    except paramiko.BadHostKeyException as e:
        raise InputError(f"{host}: the host key CHANGED (now {fingerprint(e.key)}, known_hosts has "
                         f"{fingerprint(e.expected_key)}); if the host was reinstalled, check the new key with its "
                         f"administrator, remove the old line (ssh-keygen -R {host}) and run `runctl compute trust`") from e
    except paramiko.AuthenticationException as e:
        raise InputError(f"{host}: authentication failed ({e}); check User and IdentityFile in ~/.ssh/config, "
                         f"or that ssh-agent holds the key") from e
    except (OSError, EOFError, paramiko.SSHException) as e:
        raise BackendUnreachable(f"{host}: {what}: {e or type(e).__name__}; check that it is up and "
                                 f"reachable (`runctl compute check`)") from e


def send_all(chan: Any, data: bytes) -> None:
    """``chan.sendall`` in pieces: paramiko copies the rest of the buffer on every packet it
    sends, so one 8 MB sendall crawls (3 MB/s here) where pieces of 256 KB go at link speed."""
    view = memoryview(data)
    for i in range(0, len(view), 256 << 10):
        chan.sendall(view[i:i + (256 << 10)])


class LineReader:
    """Lines from a channel. (paramiko's own file object re-joins its whole buffer for every
    piece that arrives: a 5 MB answer line took seconds.)"""

    def __init__(self, chan: Any) -> None:
        self.chan = chan
        self.buf = bytearray()

    def readline(self) -> bytes:
        searched = 0
        while (end := self.buf.find(b"\n", searched)) < 0:
            searched = len(self.buf)
            piece = self.chan.recv(1 << 20)
            if not piece:
                line, self.buf = bytes(self.buf), bytearray()
                return line
            self.buf += piece
        line = bytes(self.buf[:end + 1])
        del self.buf[:end + 1]
        return line


def fingerprint(key: Any) -> str:
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class HostSettings:
    """Where and how to connect: the target's options over the ~/.ssh/config entry."""

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        import paramiko

        cfg_path = Path(os.path.expanduser(options.get("ssh_config", "~/.ssh/config")))
        entry: dict[str, Any] = {}
        if cfg_path.is_file():
            entry = paramiko.SSHConfig.from_path(str(cfg_path)).lookup(alias)
        self.alias = alias
        self.hostname = entry.get("hostname", alias)
        self.port = int(options.get("port") or entry.get("port") or 22)
        self.user = options.get("user") or entry.get("user") or os.environ.get("USER") or "root"
        keys = options.get("identity_file") or entry.get("identityfile") or []
        self.key_files = [os.path.expanduser(k) for k in ([keys] if isinstance(keys, str) else keys)]
        self.proxy_jump = entry.get("proxyjump")
        self.known_hosts = os.path.expanduser(options.get("known_hosts") or "~/.ssh/known_hosts")
        self.timeout_s = float(options.get("connect_timeout_s", 15))
        self.command_timeout_s = float(options.get("command_timeout_s", 60))

    @property
    def key_name(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


class Connection:
    """One SSH connection (and its SFTP session) to one host, for one runctl command."""

    def __init__(self, settings: HostSettings) -> None:
        import paramiko

        self.settings = settings
        self.client = paramiko.SSHClient()
        if os.path.exists(settings.known_hosts):
            self.client.load_host_keys(settings.known_hosts)
        self.client.set_missing_host_key_policy(_Refuse(settings))
        with ssh_errors(settings.alias, "connecting"):
            self.client.connect(settings.hostname, port=settings.port, username=settings.user,
                                key_filename=settings.key_files or None, timeout=settings.timeout_s,
                                banner_timeout=settings.timeout_s, auth_timeout=settings.timeout_s,
                                sock=self._proxy(), allow_agent=True, look_for_keys=not settings.key_files)
        self._sftp: Any = None
        self._bound_unacked_time()

    def _bound_unacked_time(self) -> None:
        """Data unacknowledged for longer than command_timeout_s ends the connection (Linux
        TCP_USER_TIMEOUT): paramiko's writes would otherwise block for as long as TCP retries
        (many minutes) on a cut link; this way runctl reconnects and resumes."""
        sock = getattr(self.client.get_transport(), "sock", None)
        option = getattr(socket, "TCP_USER_TIMEOUT", None)
        if isinstance(sock, socket.socket) and option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, int(self.settings.command_timeout_s * 1000))

    def _proxy(self) -> Any:
        if not self.settings.proxy_jump:
            return None
        import paramiko

        return paramiko.ProxyCommand(f"ssh -W {shlex.quote(self.settings.hostname)}:{self.settings.port} "
                                     f"{shlex.quote(self.settings.proxy_jump)}")

    @property
    def sftp(self) -> Any:
        if self._sftp is None:
            with ssh_errors(self.settings.alias, "opening SFTP"):
                self._sftp = self.client.open_sftp()
                self._sftp.get_channel().settimeout(self.settings.command_timeout_s)
        return self._sftp

    def run(self, command: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
        """Run ``command`` (already shell-quoted) with ``stdin``; (exit status, stdout, stderr)."""
        with ssh_errors(self.settings.alias, "running a command"):
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise EOFError("the connection is closed")
            chan = transport.open_session(timeout=self.settings.timeout_s)
            chan.settimeout(self.settings.command_timeout_s)  # a cut link raises instead of hanging
            try:
                chan.exec_command(command)
                if stdin:
                    send_all(chan, stdin)
                chan.shutdown_write()
                out = chan.makefile("rb").read()  # the agent writes little to stderr: no window stall
                err = chan.makefile_stderr("rb").read()
                return chan.recv_exit_status(), out, err
            finally:
                chan.close()

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()


class _Refuse:
    """Never add an unknown host key: say which key it is and how to trust it."""

    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise InputError(f"{self.settings.alias}: the host key is not trusted yet ({fingerprint(key)}); "
                         f"check that fingerprint with the host's administrator, then run `runctl compute trust "
                         f"TARGET` (or add the key to {self.settings.known_hosts})")


def fetch_host_key(settings: HostSettings) -> Any:
    """The host's key as it presents it now (for `runctl compute trust`)."""
    import paramiko

    with ssh_errors(settings.alias, "fetching the host key"):
        sock = socket.create_connection((settings.hostname, settings.port), timeout=settings.timeout_s)
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=settings.timeout_s)
            return transport.get_remote_server_key()
        finally:
            transport.close()


def trust_host(settings: HostSettings) -> str:
    """Add the host's current key to known_hosts (an explicit user action); what was done.
    A key already there is left alone; a different one is refused (a changed key is for a
    person to look into, not for this command to paper over)."""
    import paramiko

    key = fetch_host_key(settings)
    known = paramiko.HostKeys()
    if os.path.exists(settings.known_hosts):
        known.load(settings.known_hosts)
    have = (known.lookup(settings.key_name) or {}).get(key.get_name())
    if have is not None and have.asbytes() == key.asbytes():
        return f"already trusted {fingerprint(key)}"
    if have is not None:
        raise InputError(f"{settings.alias}: the host key CHANGED (now {fingerprint(key)}, known_hosts has "
                         f"{fingerprint(have)}); check with the host's administrator, remove the old line "
                         f"(ssh-keygen -f {settings.known_hosts} -R '{settings.key_name}') and trust it again")
    os.makedirs(os.path.dirname(settings.known_hosts) or ".", exist_ok=True)
    with open(settings.known_hosts, "a") as f:
        f.write(f"{settings.key_name} {key.get_name()} {key.get_base64()}\n")
    os.chmod(settings.known_hosts, 0o600)
    return f"trusted {fingerprint(key)}"


class HostLink:
    """One host of a target: its connection (opened on first use, reopened after a drop),
    its work_dir and runctl's agent there."""

    def __init__(self, alias: str, options: dict[str, Any]) -> None:
        self.settings = HostSettings(alias, options)
        self.options = options
        self.python = options.get("python", "python3")
        self._conn: Connection | None = None
        self._work_dir: str | None = None
        self._agent_dir: str | None = None
        self.inventory: tuple[float, list[dict[str, Any]] | None] = (0.0, None)  # (when, GPUs) from check_job

    @property
    def alias(self) -> str:
        return self.settings.alias

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = Connection(self.settings)
        return self._conn

    @contextlib.contextmanager
    def reconnecting(self) -> Iterator[None]:
        """A dropped link closes this connection, so the next request (core retries with
        back-off while waiting or staging) opens a fresh one."""
        try:
            yield
        except BackendUnreachable:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
            self._agent_dir = None
            self._serving = None

    _serving: tuple[Any, Any] | None = None

    def _start_agent(self) -> tuple[Any, Any]:
        """Start the agent on one channel; if this version is not on the host yet, a small
        bootstrap asks for its files, installs them and becomes the agent (no extra round
        trip, no SFTP). The agent says {"ready": true} when it serves."""
        script = shlex.quote(posixpath.join(self._agent_path(), "remote_agent.py"))
        python = shlex.quote(self.python)
        transport = self.conn.client.get_transport()
        chan = transport.open_session(timeout=self.settings.timeout_s)
        chan.settimeout(self.settings.command_timeout_s)
        chan.exec_command(f"if [ -f {script} ]; then exec {python} -S -E {script} --serve; else exec {python} "
                          f"-S -E -c {shlex.quote(AGENT_BOOTSTRAP)} {shlex.quote(self._agent_path())}; fi")
        reader = LineReader(chan)
        hello = reader.readline()
        if hello.startswith(b'{"install"'):
            files = {name: base64.b64encode(data).decode() for name, data in self._agent_files()}
            send_all(chan, json.dumps(files).encode() + b"\n")
            hello = reader.readline()
        if not hello.startswith(b'{"ready"'):
            chan.close()
            raise BackendUnreachable(f"{self.alias}: runctl's agent did not start with {self.python}: "
                                     f"{hello[:300].decode(errors='replace').strip() or 'no answer'}; set the "
                                     f"target's python to a Python >= 3.8 on that host")
        self._serving = (chan, reader)
        return self._serving

    @property
    def work_dir(self) -> str:
        if self._work_dir is None:
            wanted = self.options.get("work_dir", "~/.runctl")
            if wanted == "~" or wanted.startswith("~/"):
                with self.reconnecting(), ssh_errors(self.alias, "finding the home directory"):
                    wanted = posixpath.join(self.conn.sftp.normalize("."), wanted[2:])
            self._work_dir = wanted
        return self._work_dir

    @property
    def cache_dir(self) -> str:
        return posixpath.join(self.work_dir, ".objects")

    def mkdirs(self, path: str) -> None:
        rc, _, err = self.conn.run(f"mkdir -p {shlex.quote(path)}")
        if rc != 0:
            raise StartError(f"{self.alias}: cannot make {path}: {err.decode(errors='replace').strip()}")

    def _agent_files(self) -> list[tuple[str, bytes]]:
        files = [(dest, (RUNCTL_PKG / src).read_bytes()) for src, dest in AGENT_FILES]
        return [*files, ("safefs.py", SAFEFS.read_bytes())]

    def _agent_path(self) -> str:
        """WORK_DIR/.runctl-agent/<digest of its files>: each runctl version its own."""
        if self._agent_dir is None:
            digest = hashlib.sha256(b"".join(n.encode() + d for n, d in self._agent_files())).hexdigest()[:20]
            self._agent_dir = posixpath.join(self.work_dir, ".runctl-agent", digest)
        return self._agent_dir

    def agent(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request to runctl's agent on this host (runctl/remote_agent.py): a JSON line to
        the agent process this connection keeps running, and its JSON line back."""
        with self.reconnecting(), ssh_errors(self.alias, f"asking runctl's agent ({request['op']})"):
            chan, reader = self._serving or self._start_agent()
            send_all(chan, json.dumps(request).encode() + b"\n")
            line = reader.readline()
        if not line:
            self.close()
            raise BackendUnreachable(f"{self.alias}: runctl's agent ended; set the target's python to a "
                                     f"Python >= 3.8 on that host if this repeats")
        answer = json.loads(line)
        if "error" in answer:
            raise StartError(f"{self.alias}: {request['op']}: {answer['error']}")
        return answer  # type: ignore[no-any-return]


INVENTORY_FRESH_S = 5.0  # the GPU list from check_job serves placement this long (busy is asked anew)
SMALL_OBJECT_BYTES = 256 << 10  # smaller objects travel batched inline to the agent
BATCH_BYTES = 8 << 20


class SSHTransport(Transport):
    def __init__(self, link: HostLink) -> None:
        self.link = link
        self._batch: list[list[str]] = []
        self._batch_bytes = 0
        self._made: set[str] = set()

    def missing(self, digests: list[str]) -> set[str]:
        return set(self.link.agent({"op": "missing", "cache": self.link.cache_dir, "digests": digests})["missing"])

    def send(self, digest: str, source: Path) -> None:
        """Upload into the cache: small objects batched into one agent request; large ones by
        SFTP, where a part left by a dropped connection is resumed, not re-sent."""
        size = source.stat().st_size
        if size <= SMALL_OBJECT_BYTES:
            self._batch.append([digest, base64.b64encode(source.read_bytes()).decode("ascii")])
            self._batch_bytes += size
            if self._batch_bytes >= BATCH_BYTES:
                self._flush()
            return
        with self.link.reconnecting():
            self._send(digest, source)

    def _flush(self) -> None:
        if self._batch:
            self.link.agent({"op": "put", "cache": self.link.cache_dir, "objects": self._batch})
            self.sent_bytes(self._batch_bytes)
            self._batch, self._batch_bytes = [], 0

    def _send(self, digest: str, source: Path) -> None:
        conn = self.link.conn
        final = posixpath.join(self.link.cache_dir, digest[:2], digest[2:])
        part = posixpath.join(self.link.cache_dir, digest[:2], f".part.{digest[2:]}")
        with ssh_errors(self.link.alias, f"uploading {source.name}"):
            if posixpath.dirname(final) not in self._made:
                self.link.mkdirs(posixpath.dirname(final))
                self._made.add(posixpath.dirname(final))
            try:
                have = conn.sftp.stat(part).st_size or 0
            except OSError:
                have = 0
            with open(source, "rb") as src, conn.sftp.open(part, "ab" if have else "wb") as dst:
                src.seek(have)
                dst.set_pipelined(True)
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    self.sent_bytes(len(chunk))
            conn.sftp.posix_rename(part, final)

    def materialize(self, run_dir: str, plan: StagePlan) -> None:
        self._flush()
        self.link.agent({"op": "materialize", "cache": self.link.cache_dir, "run_dir": run_dir,
                         "work_dir": self.link.work_dir, "spare": self.link.options.get("spare_copy", True),
                         "files": [list(f) for f in plan.files], "links": [list(link) for link in plan.links],
                         "inline": [[rel, base64.b64encode(data).decode()] for rel, data in plan.inline]})

    def discard(self, run_dir: str) -> None:
        self.link.agent({"op": "remove", "run_dir": run_dir})


class SSHBackend(Backend):
    name = "ssh"
    poll_interval_s = 0.1  # one request on a connection kept open: cheap for the host
    options_schema: ClassVar[dict[str, Any]] = {
        **Backend.options_schema,
        "hosts": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        "python": {"type": "string", "minLength": 1, "description": "the remote Python (default python3)"},
        "work_dir": {"type": "string", "minLength": 1, "description": "remote; default ~/.runctl"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "user": {"type": "string", "minLength": 1},
        "identity_file": {"type": "string", "minLength": 1},
        "known_hosts": {"type": "string", "minLength": 1},
        "ssh_config": {"type": "string", "minLength": 1},
        "connect_timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "command_timeout_s": {"type": "number", "exclusiveMinimum": 0,
                              "description": "a remote request that takes longer counts as a dropped link"},
        "keep_run_dirs": {"enum": ["failed", "all", "none"]},
        "gpus_per_run": {"type": "integer", "minimum": 0, "description": "GPUs a run gets unless resources.gpus says"},
        "nvidia_smi": {"type": "string", "minLength": 1, "description": "nvidia-smi on the hosts (default: on PATH)"},
        "gpu_busy_memory_mib": {"type": "number", "minimum": 0,
                                "description": "a GPU with more memory in use counts as busy (default 1024)"},
        "spare_copy": {"type": "boolean", "description": "keep one ready copy of the last code on each host, so "
                       "the next run of it starts without copying (default true; costs its size on disk)"},
        "queue_timeout_s": {"type": "number", "minimum": 0,
                            "description": "how long a submit waits for free GPUs (default 0: fail at once)"},
    }

    def __init__(self, target: str, options: dict[str, Any], store_dir: Path) -> None:
        super().__init__(target, options, store_dir)
        self.links = {alias: HostLink(alias, options) for alias in (options.get("hosts") or [target])}
        self.python = options.get("python", "python3")
        self._chosen: dict[str, tuple[HostLink, list[int]]] = {}  # run id -> (host, GPUs) placement chose

    def link(self, handle: Handle) -> HostLink:
        return self.links.get(handle.host or "") or next(iter(self.links.values()))

    def trust(self) -> list[str]:
        """`runctl compute trust`: every host's current key into known_hosts, if not there."""
        return [f"{link.alias}: {trust_host(link.settings)}" for link in self.links.values()]

    def close(self) -> None:
        for link in self.links.values():
            link.close()

    # -- the contract ------------------------------------------------------------------------
    def default_interpreter(self) -> str:
        return self.python

    def check_job(self, spec: LaunchSpec) -> None:
        """Before any run exists: connect (verifying host keys), and refuse a GPU count that no
        host has at all (how many are free is placement's business, in ``plan``)."""
        want = self.gpus_wanted(spec)
        errors, most = [], 0
        for link in self.links.values():
            try:
                _ = link.work_dir
                if want == 0:
                    return
                gpus = link.agent({"op": "inventory", "nvidia_smi": self.options.get("nvidia_smi", "nvidia-smi")})["gpus"]
                link.inventory = (time.monotonic(), gpus)  # placement reuses it a moment later
            except BackendUnreachable as e:
                errors.append(str(e))
                continue
            most = max(most, len(gpus))
            if len(gpus) >= want:
                return
        if errors and not most:
            raise BackendUnreachable("no host of this target answers: " + "; ".join(errors))
        raise InputError(f"resources.gpus: {want}, but no host of target {self.target!r} has that many GPUs "
                         f"(the most is {most}); ask for fewer, or add a host")

    def gpus_wanted(self, spec: LaunchSpec) -> int:
        gpus = (spec.resources or {}).get("gpus")
        if isinstance(gpus, int):
            return gpus
        if isinstance(gpus, list):
            return len(gpus)
        return int(self.options.get("gpus_per_run", 0))

    def _pick(self, spec: LaunchSpec) -> tuple[HostLink, list[int]]:
        """A host that answers and, if the run wants GPUs, has that many free (no process on
        them, no live run holding them): reserved there under a host-wide lock, so concurrent
        submits get disjoint GPUs. With none free, wait up to queue_timeout_s, else fail."""
        if spec.run_id in self._chosen:
            return self._chosen[spec.run_id]
        want = self.gpus_wanted(spec)
        deadline = time.monotonic() + float(self.options.get("queue_timeout_s", 0))
        queued = False
        while True:
            errors, seen = [], []
            for link in self.links.values():
                try:
                    run_dir = posixpath.join(link.work_dir, spec.run_id)
                    if want == 0:
                        self._chosen[spec.run_id] = (link, [])
                        return link, []
                    taken, inventory = link.inventory
                    got = link.agent({"op": "reserve", "work_dir": link.work_dir, "run_dir": run_dir, "count": want,
                                      "nvidia_smi": self.options.get("nvidia_smi", "nvidia-smi"),
                                      "busy_mib": self.options.get("gpu_busy_memory_mib", 1024),
                                      "inventory": inventory if time.monotonic() - taken < INVENTORY_FRESH_S else None})
                except BackendUnreachable as e:
                    errors.append(str(e))
                    continue
                if got["reserved"] is not None:
                    self._chosen[spec.run_id] = (link, got["reserved"])
                    return link, got["reserved"]
                seen.append(f"{link.alias}: {got['free']} of {got['total']} free")
            if not seen:
                raise BackendUnreachable("no host of this target answers: " + "; ".join(errors))
            if time.monotonic() >= deadline:
                raise StartError(f"no host has {want} free GPU(s) ({'; '.join(seen)}); wait for a run to end, "
                                 f"or set queue_timeout_s on the target to wait for them")
            if not queued:
                queued = True
                self.on_queued(spec, f"no host has {want} free GPU(s) ({'; '.join(seen)}); waiting up to "
                                     f"{self.options.get('queue_timeout_s', 0):g} s (queue_timeout_s) for them")
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))

    def plan(self, spec: LaunchSpec) -> Handle:
        link, gpus = self._pick(spec)
        return Handle(self.name, "", posixpath.join(link.work_dir, spec.run_id), host=link.alias,
                      extra={"gpus": gpus} if gpus else {})

    def transport(self, handle: Handle) -> Transport:
        return SSHTransport(self.link(handle))

    def submit(self, spec: LaunchSpec, handle: Handle) -> Handle:
        link = self.link(handle)
        variables = dict(spec.secret_env)  # launch-time variables travel with the secrets, in the request
        gpus = handle.extra.get("gpus") or self._chosen.get(spec.run_id, (link, []))[1]
        if gpus:
            variables["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
        started = link.agent({"op": "launch", "run_dir": handle.run_dir, "variables": variables})
        return Handle(self.name, str(started["pid"]), handle.run_dir, host=link.alias,
                      extra={"boot_id": started["boot_id"], "gpus": gpus})

    def status(self, handle: Handle) -> JobState:
        return self.status_many([handle])[0]

    def status_many(self, handles: list[Handle]) -> list[JobState]:
        """All of a host's runs in one remote request (one per host)."""
        by_host: dict[str, list[Handle]] = {}
        for h in handles:
            by_host.setdefault(self.link(h).alias, []).append(h)
        states: dict[str, JobState] = {}
        unreachable = []
        for alias, group in by_host.items():
            try:
                answer = self.links[alias].agent({"op": "status", "runs": [h.run_dir for h in group],
                                                  "abandon_pending": {h.run_dir: True for h in group if h.pending}})
            except BackendUnreachable as e:
                unreachable.append(str(e))
                continue
            for h in group:
                states[h.run_dir] = self._map(h, answer["runs"][h.run_dir], answer.get("boot_id"))
        if unreachable:  # never guessed: those runs keep their last state
            raise BackendUnreachable("; ".join(unreachable), answered=[states.get(h.run_dir) for h in handles])
        return [states[h.run_dir] for h in handles]

    @staticmethod
    def _map(handle: Handle, run: dict[str, Any], boot_id: str | None) -> JobState:
        st, alive, cancel = run["status"], run["alive"], run["cancel"]
        common = {"host": st.get("host"), "started_at": st.get("start_time"), "ended_at": st.get("end_time")}
        if st.get("state") == P.FINISHED:
            status, code, error = P.final_outcome(st, cancel)
            return JobState(RunStatus(status), exit_code=code, error=error, **common)
        booted = handle.extra.get("boot_id")
        if booted and boot_id and booted != boot_id:
            return JobState(RunStatus.FAILED, error="the host rebooted while the run was unfinished", **common)
        if not alive:
            return JobState(RunStatus.FAILED, error="the launcher exited without recording the end "
                                                    "(see RUN_DIR/.runctl/launcher.log on the host)", **common)
        if cancel:
            return JobState(RunStatus.CANCEL_REQUESTED, **common)
        return JobState(RunStatus.RUNNING if st.get("state") in (P.RUNNING, P.STOPPING) else RunStatus.STARTING,
                        **common)

    def read(self, handle: Handle, relpath: str, offset: int, max_bytes: int) -> bytes:
        out = bytearray()
        while len(out) < max_bytes:
            want = min(READ_CHUNK, max_bytes - len(out))
            answer = self.link(handle).agent({"op": "read", "run_dir": handle.run_dir, "path": relpath,
                                 "offset": offset + len(out), "max": want})
            data = base64.b64decode(answer["data"])
            out += data
            if len(data) < want:
                break
        return bytes(out)

    def list_files(self, handle: Handle, reldir: str) -> list[RunFile]:
        answer = self.link(handle).agent({"op": "list", "run_dir": handle.run_dir, "reldir": reldir})
        return [RunFile(*entry) for entry in answer["entries"]]

    def cancel(self, handle: Handle) -> None:
        self.link(handle).agent({"op": "cancel", "run_dir": handle.run_dir})

    def release(self, handle: Handle, state: JobState) -> None:
        link = self.link(handle)
        if handle.extra.get("gpus"):
            link.agent({"op": "release_gpus", "work_dir": link.work_dir, "run_dir": handle.run_dir})
        keep = self.options.get("keep_run_dirs", "failed")
        if keep == "all" or (keep == "failed" and state.status == RunStatus.FAILED):
            return
        self.link(handle).agent({"op": "remove", "run_dir": handle.run_dir})

    def check(self) -> list[str]:
        """Per host: reachable with a trusted key, its Python, free disk in work_dir."""
        lines: list[str] = []
        failed: list[RunctlError] = []
        for link in self.links.values():
            try:
                lines += self._check_host(link)
            except RunctlError as e:
                failed.append(e)
                lines.append(f"{link.alias}: NOT usable: {e}")
        if failed:  # the report, with the failures' exit code
            raise type(failed[0])("\n  ".join(["some hosts cannot run jobs:", *lines]))
        return lines

    def _check_host(self, link: HostLink) -> list[str]:
        info = link.agent({"op": "info", "work_dir": link.work_dir})
        lines = [f"{link.alias}: reachable, host key trusted ({link.settings.known_hosts})",
                  f"  python: {link.python} {info['python']}",
                  f"  work_dir: {link.work_dir} ({info['free_bytes'] / 2**30:.1f} GiB free)"]
        gpus = link.agent({"op": "gpus", "work_dir": link.work_dir,
                           "nvidia_smi": self.options.get("nvidia_smi", "nvidia-smi"),
                           "busy_mib": self.options.get("gpu_busy_memory_mib", 1024)})["gpus"]
        lines.append(f"  GPUs: {len(gpus) or 'none'}")
        for g in gpus:
            state = "reserved by runctl" if g["reserved"] else "busy" if g["busy"] else "free"
            lines.append(f"    {g['index']}: {g['name']}, {g['used_mib']:.0f}/{g['total_mib']:.0f} MiB, {state}")
        return lines
