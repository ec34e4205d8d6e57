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
import time

ROOT_ENV = "RUNCTL_ENV_ROOT"  # where environments live (default: ~/.cache/runctl/envs)
UV_ENV = "RUNCTL_UV"
MARKER = ".runctl-env.json"  # in a finished environment: what defines it; its mtime: last used
TAIL_LINES = 15  # of the installer's output, in the run's error when a build fails


class BuildFailed(Exception):
    pass


class Canceled(Exception):
    pass


def root(environ):
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
    h = hashlib.sha256(json.dumps(definition, sort_keys=True).encode())
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
    where = root(environ)
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
        aside = "%s.building-%d" % (final, os.getpid())
        shutil.rmtree(aside, ignore_errors=True)
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


def _build(definition, base, aside, environ, log, stop):
    requirements = [str(r) for r in definition.get("requirements") or []]
    options = [str(o) for o in definition.get("installer_options") or []]
    uv = environ.get(UV_ENV) or find_executable("uv", environ)
    reqs = aside + ".requirements.txt"
    with open(reqs, "w") as f:
        f.write("\n".join(requirements) + "\n")
    try:
        if uv:
            _say(log, "building the environment with uv: %s" % ", ".join(requirements))
            _run([uv, "venv", "--python", base, aside], environ, log, stop)
            steps = [[uv, "pip", "install", "--python", env_python(aside)] + options + ["-r", reqs]]
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


def _run(argv, environ, log, stop):
    """Run one installer step, its output to ``log``; kill it when ``stop()`` says so."""
    env = dict(environ)
    env.pop("PYTHONPATH", None)  # (runctl's job-side lib is the job's, not the installer's)
    out_path = getattr(log, "name", None)
    start = log.tell() if hasattr(log, "tell") else 0
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
    except OSError as e:
        raise BuildFailed("%s: %s" % (argv[0], e)) from None
    while p.poll() is None:
        if stop():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
            raise Canceled()
        time.sleep(0.1)
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
