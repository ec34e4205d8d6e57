"""A job's Python environment, built once per host and cached by content (stdlib only,
Python >= 3.8). The launcher calls ``ensure`` before it starts the job.

The environment is a virtual environment in ``<root>/<key>``, where ``key`` hashes what
defines it: the base interpreter (its real path and that file's mtime), the requirement
lines (a requirements file's content is in them) and the installer's options. The first
run that needs it builds it under a host-wide lock (``<key>.lock``, flock), aside in
``<key>.building-<pid>``, and renames it into place once the installer succeeded, so a
killed build or a full disk never leaves a half-built environment where a run would use
it; every later run finds the folder and costs a stat(). ``uv`` builds it when it is on
PATH (or named by RUNCTL_UV), else ``python -m venv`` and pip. The installer's output goes
to the run's logs/environment.txt; its credentials for a private index come from its own
configuration (pip.conf, uv.toml, netrc, keyring), never from runctl.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time

from . import safefs

ROOT_ENV = "RUNCTL_ENV_ROOT"  # where environments live (default: ~/.cache/runctl/envs)
UV_ENV = "RUNCTL_UV"
MARKER = ".runctl-env.json"  # in a finished environment: what defines it; its mtime: last used
TAIL_LINES = 15  # of the installer's output, in the run's error when a build fails


class BuildFailed(Exception):
    pass


class Canceled(Exception):
    pass


def root(environ, explicit=None):
    """Where environments live on this host: the target's ``env_root``, else RUNCTL_ENV_ROOT,
    else ~/.cache/runctl/envs."""
    if explicit:
        return os.path.expanduser(explicit)
    if environ.get(ROOT_ENV):
        return environ[ROOT_ENV]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or "/tmp", ".cache")
    return os.path.join(base, "runctl", "envs")


def find_executable(name, environ):
    for d in (environ.get("PATH") or os.defpath).split(os.pathsep):
        p = os.path.join(d or ".", name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def env_key(definition, base):
    """The folder name: the definition's hash, with the base interpreter's real path and mtime."""
    real = os.path.realpath(base)
    defining = {k: v for k, v in definition.items() if k != "root"}  # (where it lives does not define it)
    h = hashlib.sha256(json.dumps(defining, sort_keys=True).encode())
    h.update(("%s\0%d" % (real, os.stat(real).st_mtime_ns)).encode())
    return h.hexdigest()[:24]


def env_python(env_dir):
    return os.path.join(env_dir, "bin", "python")


def ensure(definition, environ, log, stop):
    """The environment's python, built first if needed. ``definition``: {"base": interpreter,
    "requirements": [lines], "installer_options": [args]}; ``log``: a binary file the
    installer's output goes to; ``stop()``: whether to give up (the run was canceled).
    Raises BuildFailed (its message: what failed and the installer's last lines) or Canceled."""
    base = definition.get("base") or "python3"
    if os.sep not in base:
        base = find_executable(base, environ) or base
    if not os.path.exists(base):
        raise BuildFailed("the base interpreter %s does not exist on this host; set environment.python."
                          "interpreter_path (or the target's python) to one that does" % base)
    where = root(environ, definition.get("root"))
    os.makedirs(where, mode=0o700, exist_ok=True)
    key = env_key(definition, base)
    final = os.path.join(where, key)
    if os.path.isdir(final):
        return _used(final, log, "reusing the environment %s" % final)
    import fcntl

    lock = os.open(final + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _say(log, "waiting for the host's lock on environment %s" % key)
        while True:  # wait for the lock, but never past a cancel
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop():
                    raise Canceled() from None
                time.sleep(0.2)
        if os.path.isdir(final):  # another run built it while this one waited
            return _used(final, log, "reusing the environment %s (built by another run meanwhile)" % final)
        for name in os.listdir(where):  # what a killed build left (this lock is held by every build of it)
            if name.startswith(key + ".building-"):
                shutil.rmtree(os.path.join(where, name), ignore_errors=True)
        aside = "%s.building-%d" % (final, os.getpid())
        try:
            _build(definition, base, aside, environ, log, stop)
            with open(os.path.join(aside, MARKER), "w") as f:
                json.dump({"definition": definition, "base": os.path.realpath(base), "built": time.time()}, f)
            os.rename(aside, final)
        except BaseException:
            shutil.rmtree(aside, ignore_errors=True)  # never a half-built environment
            raise
        _say(log, "built the environment %s" % final)
        return env_python(final)
    finally:
        os.close(lock)


def _used(final, log, what):
    _say(log, what)
    try:
        os.utime(os.path.join(final, MARKER))  # last used, for `runctl env list` and gc
    except OSError:
        pass
    return env_python(final)


def _say(log, text):
    log.write(("runctl: %s\n" % text).encode())
    log.flush()


def _copy(pipe, log):
    """The installer's output, as it comes, to ``log`` (a Tee: the run's environment.txt and its
    main log, so `runctl logs --follow` shows the build)."""
    for chunk in iter(lambda: pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536), b""):
        log.write(chunk)
        log.flush()


class Tee(object):
    """A binary file that writes to two (the first one's name and offset are its own)."""

    def __init__(self, first, second):
        self.first, self.second = first, second
        self.name = getattr(first, "name", None)

    def write(self, data):
        self.first.write(data)
        try:
            self.second.write(data)
        except OSError:
            pass

    def flush(self):
        self.first.flush()
        try:
            self.second.flush()
        except OSError:
            pass

    def tell(self):
        return self.first.tell()


CONDA_TOOLS = ("micromamba", "mamba", "conda")


def _build(definition, base, aside, environ, log, stop):
    if definition.get("conda_file") is not None:
        return _build_conda(definition, aside, environ, log, stop)
    requirements = [str(r) for r in definition.get("requirements") or []]
    options = [str(o) for o in definition.get("installer_options") or []]
    uv = find_uv(base, environ)
    reqs = aside + ".requirements.txt"
    with open(reqs, "w") as f:
        f.write("\n".join(requirements) + "\n")
    try:
        if uv:
            _say(log, "building the environment with uv: %s" % ", ".join(requirements))
            _run(uv + ["venv", "--python", base, aside], environ, log, stop)
            steps = [uv + ["pip", "install", "--python", env_python(aside)] + options + ["-r", reqs]]
        else:
            _say(log, "building the environment with venv and pip: %s" % ", ".join(requirements))
            _run([base, "-m", "venv", aside], environ, log, stop)
            steps = [[env_python(aside), "-m", "pip", "install", "--disable-pip-version-check",
                      "--no-input"] + options + ["-r", reqs]]
        for argv in steps if requirements else []:
            _run(argv, environ, log, stop)
    finally:
        try:
            os.unlink(reqs)
        except OSError:
            pass


def _build_conda(definition, aside, environ, log, stop):
    """A conda environment file, with the host's micromamba, mamba or conda (in that order)."""
    tool = next((t for t in (find_executable(n, environ) for n in CONDA_TOOLS) if t), None)
    if tool is None:
        raise BuildFailed("environment.python.conda_dependencies_file needs micromamba, mamba or conda on the host "
                          "the job runs on, and it has none on its PATH; install micromamba there "
                          "(https://mamba.readthedocs.io), or list pip packages in environment.python.pip_packages")
    spec = aside + ".environment.yml"
    with open(spec, "w") as f:
        f.write(definition["conda_file"])
    try:
        _say(log, "building the environment with %s from %s" % (os.path.basename(tool), definition.get("conda_name")))
        _run([tool, "env", "create", "--yes", "--prefix", aside, "--file", spec] if os.path.basename(tool) == "conda"
             else [tool, "create", "--yes", "--prefix", aside, "--file", spec], environ, log, stop)
    finally:
        try:
            os.unlink(spec)
        except OSError:
            pass


def find_uv(base, environ):
    """uv's command: RUNCTL_UV, else ``uv`` on PATH, else the base interpreter's own uv module
    (``pip install uv`` into it, or a wheel of it: uv ships as one); None: venv + pip."""
    named = environ.get(UV_ENV) or find_executable("uv", environ)
    if named:
        return [named]
    try:
        found = subprocess.run([base, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('uv') is None)"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        found = False
    return [base, "-m", "uv"] if found else None


def _run(argv, environ, log, stop):
    """Run one installer step, its output to ``log``; kill it when ``stop()`` says so."""
    env = dict(environ)
    env.pop("PYTHONPATH", None)  # (runctl's job-side lib is the job's, not the installer's)
    out_path = getattr(log, "name", None)
    start = log.tell() if hasattr(log, "tell") else 0
    from .linux import die_with_parent

    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True, preexec_fn=die_with_parent)  # (a killed launcher: the build too)
    except OSError as e:
        raise BuildFailed("%s: %s" % (argv[0], e)) from None
    copier = threading.Thread(target=_copy, args=(p.stdout, log), daemon=True)
    copier.start()
    while p.poll() is None:
        if stop():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
            copier.join(5)
            raise Canceled()
        time.sleep(0.1)
    copier.join(30)
    if p.returncode != 0:
        tail = ""
        if isinstance(out_path, str):
            try:
                with open(out_path, "rb") as f:
                    f.seek(start)
                    tail = "\n".join(f.read().decode("utf-8", "replace").splitlines()[-TAIL_LINES:])
            except OSError:
                pass
        raise BuildFailed("building the environment failed (%s exited %d):\n%s"
                          % (os.path.basename(argv[0]), p.returncode, tail))


def in_use(env_dir):
    """Does a process on this host run from ``env_dir`` (its command starts with the path)?"""
    prefix = (os.path.abspath(env_dir) + os.sep).encode()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if f.read().split(b"\0", 1)[0].startswith(prefix):
                    return True
        except OSError:
            continue
    return False


def inventory(environ, explicit_root=None):
    """The environments built on this host: [{key, path, bytes, built, last_used, requirements,
    in_use}], newest use first."""
    where = root(environ, explicit_root)
    out = []
    for name in sorted(os.listdir(where)) if os.path.isdir(where) else []:
        path = os.path.join(where, name)
        marker = os.path.join(path, MARKER)
        if "." in name or not os.path.isfile(marker):
            continue  # (locks, builds in progress)
        try:
            with open(marker) as f:
                info = json.load(f)
            last = os.stat(marker).st_mtime
        except (OSError, ValueError):
            continue
        out.append({"key": name, "path": path, "bytes": safefs.tree_size(path), "built": info.get("built"), "last_used": last,
                    "requirements": (info.get("definition") or {}).get("requirements") or [], "in_use": in_use(path)})
    return sorted(out, key=lambda e: -e["last_used"])


def remove(environ, key, older_than_s=None, dry_run=False, explicit_root=None):
    """Remove environment ``key`` (all unused ones older than ``older_than_s`` when key is None)
    unless a job runs from it or it is being built; [(path, bytes)] removed (or, dry, to be)."""
    import fcntl

    removed = []
    for env in inventory(environ, explicit_root):
        if key is not None and env["key"] != key:
            continue
        if key is None and (older_than_s is None or time.time() - env["last_used"] <= older_than_s):
            continue
        if env["in_use"]:
            continue
        lock = os.open(env["path"] + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a run is waiting on it or building it
            removed.append((env["path"], env["bytes"]))
            if not dry_run:
                gone = "%s.removing-%d" % (env["path"], os.getpid())
                os.rename(env["path"], gone)  # (no run can find it half removed)
                shutil.rmtree(gone, ignore_errors=True)
        finally:
            os.close(lock)
    return removed
