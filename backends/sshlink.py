"""Reaching a host by SSH, shared by the backends that do (ssh, and slurm through a login
node): paramiko connections with ~/.ssh/config aliases and known_hosts verification that
never auto-accepts, runctl's stdlib agent on the host (runctl/remote_agent.py: safe reads of
run directories, status of many runs in one request, the launcher lock), and the transport
that stages RUN_DIR through the host's object cache.
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
from typing import Any, Iterator

from runctl.backends.base import RunFile
from runctl.backends.transport import CacheDamaged, StagePlan, Transport
from runctl.errors import BackendUnreachable, InputError, StartError
from runctl.job import package_files
from runctl.job import protocol as P

# How to reach a host: target options of every backend that uses SSH (JSON Schema properties).
SSH_OPTIONS: dict[str, Any] = {
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "user": {"type": "string", "minLength": 1},
    "identity_file": {"type": "string", "minLength": 1},
    "known_hosts": {"type": "string", "minLength": 1},
    "ssh_config": {"type": "string", "minLength": 1},
    "connect_timeout_s": {"type": "number", "exclusiveMinimum": 0},
    "command_timeout_s": {"type": "number", "exclusiveMinimum": 0,
                          "description": "a remote request that takes longer counts as a dropped link"},
    "retry_unanswered_s": {"type": "number", "minimum": 0,
                           "description": "after a host did not answer, `runctl list` within this long says so at "
                                          "once instead of waiting connect_timeout_s again (default 30; 0: always ask)"},
}


class Unanswered:
    """Hosts that did not answer a status request lately, kept in one small JSON file in the
    backend's state folder (``services.state_dir``), so that the next `runctl list` (another
    process) reports such a host at once instead of spending its connect_timeout_s on it again. A host is asked again
    ``retry_s`` after it last failed, at once by `runctl compute check`, and a second time
    within the same command (a `wait` retrying really asks)."""

    def __init__(self, path: Path, retry_s: float) -> None:
        self.path = path
        self.retry_s = retry_s
        self.looked: set[str] = set()  # aliases this command has looked up (once: later looks ask for real)
        self.listed: set[str] = set()  # of those, the ones the file held (or this command added)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except OSError:  # a hint only: never worth failing a command for
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def recent(self, alias: str) -> str | None:
        """Why ``alias`` is not asked now (it failed less than retry_s ago), or None. Only
        the command's first look reads the file: a second one (a `wait` retrying) asks."""
        if alias in self.looked:
            return None
        self.looked.add(alias)
        entry = self._read().get(alias)
        if not isinstance(entry, dict):
            return None
        self.listed.add(alias)
        ago = time.time() - float(entry.get("at", 0))
        if not self.retry_s or not 0 <= ago < self.retry_s:
            return None
        return (f"{alias}: did not answer {ago:.0f} s ago ({str(entry.get('error', ''))[:200]}); runctl asks it "
                f"again {self.retry_s - ago:.0f} s from now, `runctl compute check` asks now")

    def remember(self, alias: str, error: str) -> None:
        data = self._read()
        data[alias] = {"at": time.time(), "error": error}
        self._write(data)
        self.listed.add(alias)

    def forget(self, alias: str) -> None:
        """The host answered: clear its entry (no file I/O when this command's look found none)."""
        if alias in self.looked and alias not in self.listed:
            return
        self.listed.discard(alias)
        data = self._read()
        if alias in data:
            del data[alias]
            self._write(data)

AGENT_SKIPS = ("runctl_job/context/",)  # the run-context client: only jobs use it, from their RUN_DIR
READ_CHUNK = 4 << 20
# The agent's files sit in the host's work_dir, where a job (same user) could rewrite them,
# so runctl never runs them unchecked: this bootstrap, given on the command line each time
# (argv: its own source, the folder, {file: sha256}, then the agent's arguments), reads each
# file once without following links, compares it with runctl's own copy's digest, and runs
# what it read and checked, from memory: a finder first on sys.meta_path serves the package
# runctl_job from those bytes, and the agent is runctl_job.agent. A file missing or changed
# is asked for on stdin (one JSON line: {name: base64}) and installed afresh. Python >= 3.8,
# stdlib only.
AGENT_LOADER = "import sys;exec(sys.argv[1])"
AGENT_BOOTSTRAP = """
import base64, hashlib, importlib.util, json, os, shutil, sys
os.umask(0o077)
boot, dest, want, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4:]
def ok(name, data):
    return data is not None and hashlib.sha256(data).hexdigest() == want[name]
def load(name):
    try:
        fd = os.open(os.path.join(dest, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, 'rb') as f:
        return f.read(1 << 22) if os.fstat(f.fileno()).st_size < (1 << 22) else None
files = dict((n, load(n)) for n in want)
if not all(ok(n, d) for n, d in files.items()):
    if args:
        sys.exit(0)
    sys.stdout.write('{"install": true}\\n')
    sys.stdout.flush()
    sent = json.loads(sys.stdin.buffer.readline())
    files = dict((n, base64.b64decode(sent[n])) for n in want)
    if not all(ok(n, d) for n, d in files.items()):
        sys.stdout.write('{"error": "the agent files arrived damaged"}\\n')
        sys.exit(1)
    tmp = '%s.tmp%d' % (dest, os.getpid())
    for name, data in files.items():
        path = os.path.join(tmp, name)
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with open(path, 'wb') as f:
            f.write(data)
    if os.path.lexists(dest):
        old = '%s.bad%d' % (dest, os.getpid())
        try:
            os.rename(dest, old)
            shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    try:
        os.rename(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
modules = {}
for rel in files:
    name = rel[:-3].replace('/', '.')
    modules[name[:-9] if name.endswith('.__init__') else name] = rel
class Checked(object):
    def find_spec(self, name, path=None, target=None):
        rel = modules.get(name)
        if rel is None:
            return None
        return importlib.util.spec_from_loader(name, self, origin=os.path.join(dest, rel),
                                               is_package=rel.endswith('/__init__.py'))
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        rel = modules[module.__name__]
        module.__file__ = os.path.join(dest, rel)
        exec(compile(files[rel], module.__file__, 'exec'), module.__dict__)
sys.meta_path.insert(0, Checked())
import runctl_job.agent as agent
agent.HOME = dest
agent.RELAUNCH = [sys.executable, '-S', '-E', '-c', 'import sys;exec(sys.argv[1])', boot, dest, sys.argv[3]]
sys.exit(agent.main(args or ['--serve']))
"""


def agent_files() -> list[tuple[str, bytes]]:
    """(path in the agent's folder, content) of every file runctl's agent is made of: the
    job-side package, runctl/job/, as runctl_job/ (less what only jobs use)."""
    return [(rel, Path(src).read_bytes()) for src, rel in package_files() if not rel.startswith(AGENT_SKIPS)]


@contextlib.contextmanager
def ssh_errors(host: str, what: str) -> Iterator[None]:
    """paramiko and socket errors -> runctl's, naming the host and what was being done."""
    import paramiko

    try:
        yield
    except paramiko.BadHostKeyException as e:
        name = getattr(e, "hostname", None) or host  # as known_hosts names it (HostName, [host]:port)
        raise InputError(f"{host}: the host key CHANGED (now {fingerprint(e.key)}, known_hosts has "
                         f"{fingerprint(e.expected_key)}); if the host was reinstalled, check the new key with its "
                         f"administrator, remove the old line (ssh-keygen -R {shlex.quote(name)}) and run "
                         f"`runctl compute trust`") from e
    except paramiko.AuthenticationException as e:
        raise InputError(f"{host}: authentication failed ({e}); check User and IdentityFile in ~/.ssh/config, "
                         f"or that ssh-agent holds the key") from e
    except (OSError, EOFError, paramiko.SSHException) as e:
        raise BackendUnreachable(f"{host}: {what}: {str(e).strip() or type(e).__name__}; check that it is up and "
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
        import logging

        import paramiko

        # paramiko logs a cut link with a traceback from its own thread; runctl says it once, as
        # an error of its own (with the retry it makes), so paramiko's log goes nowhere.
        logging.getLogger("paramiko").addHandler(logging.NullHandler())
        logging.getLogger("paramiko").propagate = False
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
                         f"TARGET` (or add it to {self.settings.known_hosts} as {self.settings.key_name})")


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
    entries = known.lookup(settings.key_name) or {}
    have = entries.get(key.get_name())
    if have is not None and have.asbytes() == key.asbytes():
        return f"already trusted {fingerprint(key)}"
    if have is None and entries:  # a key of another type is known: the host now shows a new one
        have = next(iter(entries.values()))
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
        """Start the agent on one channel through AGENT_BOOTSTRAP, which checks the host's copy
        against runctl's own and runs only what it checked (installing it first when missing
        or changed: no extra round trip, no SFTP). The agent says {"ready": true} when it serves."""
        python = shlex.quote(self.python)
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in self._agent_files()}
        transport = self.conn.client.get_transport()
        chan = transport.open_session(timeout=self.settings.timeout_s)
        chan.settimeout(self.settings.command_timeout_s)
        chan.exec_command(" ".join([python, "-S", "-E", "-c", shlex.quote(AGENT_LOADER), shlex.quote(AGENT_BOOTSTRAP),
                                    shlex.quote(self._agent_path()), shlex.quote(json.dumps(digests))]))
        reader = LineReader(chan)
        hello = reader.readline()
        if hello.startswith(b'{"install"'):
            files = {name: base64.b64encode(data).decode() for name, data in self._agent_files()}
            send_all(chan, json.dumps(files).encode() + b"\n")
            hello = reader.readline()
        if not hello.startswith(b'{"ready"'):
            err, code = b"", -1
            with contextlib.suppress(Exception):
                deadline = time.monotonic() + 2
                while not chan.exit_status_ready() and time.monotonic() < deadline:
                    time.sleep(0.01)
                if chan.exit_status_ready():
                    code = chan.recv_exit_status()
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(4096)
            chan.close()
            said = (hello[:300] or err[-300:]).decode(errors="replace").strip()
            why = (f"{self.alias}: runctl's agent did not start with python {self.python!r}: {said or 'no answer'}; "
                   f"set the target's python to a Python >= 3.8 on that host")
            if code >= 0:  # the host answered: the interpreter is missing or wrong, not the link
                raise InputError(why)
            raise BackendUnreachable(why)
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
        rc, _, err = self.conn.run(f"umask 077 && mkdir -p {shlex.quote(path)}")
        if rc != 0:
            raise StartError(f"{self.alias}: cannot make {path}: {err.decode(errors='replace').strip()}")

    def _agent_files(self) -> list[tuple[str, bytes]]:
        return agent_files()

    def _agent_path(self) -> str:
        """WORK_DIR/.runctl-agent/<digest of its files>: each runctl version its own."""
        if self._agent_dir is None:
            digest = hashlib.sha256(b"".join(n.encode() + d for n, d in self._agent_files())).hexdigest()[:20]
            self._agent_dir = posixpath.join(self.work_dir, ".runctl-agent", digest)
        return self._agent_dir

    def environments(self, env_root: str | None) -> list[dict[str, Any]]:
        from runctl.backends.hostdir import checked_environments

        return checked_environments(self.agent({"op": "envs", "root": env_root}).get("envs"), self.alias)

    def remove_environments(self, env_root: str | None, key: str | None, older_than_s: float | None,
                            dry_run: bool) -> list[tuple[str, int]]:
        answer = self.agent({"op": "env_rm", "root": env_root, "key": key, "older_than_s": older_than_s,
                             "dry_run": dry_run})
        return [(f"{self.alias}:{p}", n) for p, n in answer.get("removed") or []
                if isinstance(p, str) and type(n) is int]

    def ensure_agent(self) -> None:
        """Start runctl's agent now if it does not serve yet (a wrong python is found before a
        run exists)."""
        with self.reconnecting(), ssh_errors(self.alias, "starting runctl's agent"):
            _ = self._serving or self._start_agent()

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
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):  # (what a job that rewrote the agent could say: never acted on)
            self.close()
            raise BackendUnreachable(f"{self.alias}: runctl's agent gave an answer that is not one ({request['op']})")
        if "error" in answer:  # the host refused: only while starting a run is that a start failure (exit 3)
            refused = StartError if request["op"] in START_OPS else InputError
            raise refused(f"{self.alias}: {request['op']}: {str(answer['error'])[:2000]}")
        return answer


    # -- run directories on the host, through the agent (never following a job's links) ----
    def read(self, run_dir: str, relpath: str, offset: int, max_bytes: int) -> bytes:
        out = bytearray()
        while len(out) < max_bytes:
            want = min(READ_CHUNK, max_bytes - len(out))
            answer = self.agent({"op": "read", "run_dir": run_dir, "path": relpath, "offset": offset + len(out),
                                 "max": want})
            data = base64.b64decode(answer["data"])
            out += data
            if len(data) < want:
                break
        return bytes(out)

    def list_files(self, run_dir: str, reldir: str) -> list[RunFile]:
        return [RunFile(*entry) for entry in self.agent({"op": "list", "run_dir": run_dir, "reldir": reldir})["entries"]]

    def gc(self, run_dirs: list[str], older_than_s: float, dry_run: bool) -> list[tuple[str, int]]:
        """runctl's agent removes ``run_dirs`` and what its cache has not used for ``older_than_s``."""
        answer = self.agent({"op": "gc", "work_dir": self.work_dir, "runs": run_dirs, "older_than_s": older_than_s,
                             "dry_run": dry_run})
        return [(f"{self.alias}:{path}", int(size)) for path, size in answer["removed"]]

    def statuses(self, run_dirs: list[str], pending: set[str]) -> dict[str, Any]:
        """status.json, launcher alive, cancel marker of each run (one request); a ``pending``
        run that no launcher ever started is recorded abandoned, so none ever will."""
        return self.agent({"op": "status", "runs": run_dirs, "abandon_pending": {d: True for d in pending}})


# Agent requests that start a run (or stage it): a refusal there is a start that failed.
START_OPS = frozenset({"launch", "materialize", "put", "missing", "reserve", "run"})
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
        final = posixpath.join(self.link.cache_dir, P.object_relpath(digest))
        part = posixpath.join(self.link.cache_dir, P.object_relpath(digest, ".part."))
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
        try:
            self._materialize(run_dir, plan)
        except StartError as e:
            if "Damaged:" in str(e):
                raise CacheDamaged(str(e)) from e
            raise

    def _materialize(self, run_dir: str, plan: StagePlan) -> None:
        self.link.agent({"op": "materialize", "cache": self.link.cache_dir, "run_dir": run_dir,
                         "work_dir": self.link.work_dir, "spare": self.link.options.get("spare_copy", True),
                         "files": [list(f) for f in plan.files], "links": [list(link) for link in plan.links],
                         "inline": [[rel, base64.b64encode(data).decode()] for rel, data in plan.inline]})

    def discard(self, run_dir: str) -> None:
        self.link.agent({"op": "remove", "run_dir": run_dir})


