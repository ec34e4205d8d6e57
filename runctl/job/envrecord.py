"""The environment record of a run (stdlib only, Python >= 3.8): what the job ran with, taken
by the launcher beside the job as it starts, and appended to events.jsonl as the run's
``runctl.environment`` property (a JSON object):

- ``python``: {"version", "executable"} of the job's interpreter, and ``packages``: name ->
  version of every distribution it can import (what ``pip freeze`` would say, read from the
  installed metadata by that interpreter itself);
- ``os`` and ``host``; ``image`` and ``image_digest`` on Docker (as the backend resolved them);
- on a host with ``nvidia-smi``: ``gpus`` (names), ``driver`` and ``cuda`` versions.

Nothing here may delay or fail the job: it runs in a thread, and what cannot be found is
left out. Probing an interpreter (start it, read every distribution's metadata) costs 0.1 s
or more, so the answer is cached per interpreter and environment in the user's cache
folder with the mtime of every folder on its sys.path (installing or removing a package
changes its folder's): the next run of an unchanged environment costs a few stat() calls.
The cache is the same user's, as the job is; the record is information, not a proof.
"""

import json
import os
import re
import socket
import subprocess
import threading
import time

from .sysmetrics import NVIDIA_SMI_ENV  # noqa: F401  (the same nvidia-smi for both)

PROPERTY = "runctl.environment"
IMAGE_ENV = "RUNCTL_IMAGE"  # set by a backend that runs the job in an image
IMAGE_DIGEST_ENV = "RUNCTL_IMAGE_DIGEST"  # and the digest it resolved that image to
PROBE = ("import json, sys\n"
         "try:\n    import importlib.metadata as m\nexcept ImportError:\n    m = None\n"
         "pk = {}\n"
         "for d in (m.distributions() if m else []):\n"
         "    name = d.metadata['Name']\n"
         "    if name and name not in pk:\n        pk[name] = d.version\n"
         "import os\n"
         "paths = {}\n"
         "for p in sys.path:\n"
         "    try:\n        paths[os.path.abspath(p or '.')] = os.stat(p or '.').st_mtime_ns\n"
         "    except OSError:\n        pass\n"
         "print(json.dumps({'version': sys.version.split()[0], 'executable': sys.executable, 'packages': pk,"
         " 'paths': paths}))\n")
TIMEOUT_S = 60


def python_of(argv):
    """The job's interpreter when its command is a Python one, else None."""
    return argv[0] if argv and re.match(r"^python[0-9.]*$", os.path.basename(argv[0])) else None


CACHE_VERSION = 1


def _outside(paths, run_dir):
    """``paths`` less those inside RUN_DIR (the job's code, runctl's lib/ and shim/: new for
    every run, and not where its packages are installed)."""
    inside = os.path.abspath(run_dir) + os.sep
    return [p for p in paths if not os.path.abspath(p or ".").startswith(inside)]


def cache_file(python, env, run_dir):
    """Where the probe of ``python`` in this environment is cached (None: no cache folder)."""
    base = env.get("XDG_CACHE_HOME") or (os.path.join(env["HOME"], ".cache") if env.get("HOME") else None)
    if not base:
        return None
    pythonpath = _outside((env.get("PYTHONPATH") or "").split(os.pathsep), run_dir)
    key = json.dumps([CACHE_VERSION, python, env.get("PATH"), pythonpath, env.get("VIRTUAL_ENV"),
                      env.get("PYTHONHOME"), env.get("CONDA_PREFIX")])
    import hashlib

    return os.path.join(base, "runctl", "envrecord", hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def cached_probe(python, env, cwd, run_dir):
    """``probe_python``, through the cache: reused while the interpreter's file and every
    folder on its sys.path (outside RUN_DIR) keep their mtimes."""
    path = cache_file(python, env, run_dir)
    if path:
        try:
            with open(path) as f:
                found = json.load(f)
            if all(os.stat(p).st_mtime_ns == m for p, m in found["paths"].items()) and \
                    os.stat(found["executable"]).st_mtime_ns == found["executable_mtime"]:
                return found
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    found = probe_python(python, env, cwd)
    if found:
        found["paths"] = {p: m for p, m in (found.get("paths") or {}).items() if _outside([p], run_dir)}
    if found and path:
        try:
            found["executable_mtime"] = os.stat(found["executable"]).st_mtime_ns
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            tmp = "%s.%d.tmp" % (path, os.getpid())
            with open(tmp, "w") as f:
                json.dump(found, f)
            os.replace(tmp, path)
        except (OSError, KeyError, TypeError):
            pass
    return found


def probe_python(python, env, cwd):
    # The job's environment less runctl's run variables: the probe is not a process of the run
    # (whatever finds a run's processes by RUNCTL_RUN_DIR, cancel included, must not count it).
    env = {k: v for k, v in env.items() if not k.startswith("RUNCTL_")}
    try:
        out = subprocess.run([python, "-c", PROBE], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S).stdout
        return json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def probe_gpus(nvidia_smi):
    try:
        rows = subprocess.run([nvidia_smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                              timeout=20).stdout.decode("utf-8", "replace").splitlines()
        head = subprocess.run([nvidia_smi], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, timeout=20).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return {}
    names = [r.split(",")[0].strip() for r in rows if r.strip()]
    out = {}
    if names:
        out["gpus"] = names
        out["driver"] = rows[0].split(",")[-1].strip()
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", head)
    if cuda:
        out["cuda"] = cuda.group(1)
    return out


def os_name():
    import platform

    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def take(argv, env, cwd, nvidia_smi, run_dir):
    """The record (a dict)."""
    import platform

    record = {"host": socket.gethostname(), "os": os_name(), "kernel": platform.release()}
    python = python_of(argv)
    if python:
        found = cached_probe(python, env, cwd, run_dir)
        if found:
            record["packages"] = found.get("packages") or {}
            record["python"] = {"version": found.get("version"), "executable": found.get("executable")}
    if env.get(IMAGE_ENV):
        record["image"] = env[IMAGE_ENV]
    if env.get(IMAGE_DIGEST_ENV):
        record["image_digest"] = env[IMAGE_DIGEST_ENV]
    record.update(probe_gpus(nvidia_smi))
    return record


def record_in_background(events_path, argv, env, cwd, nvidia_smi, run_dir):
    """Take the record in a thread and append it to events.jsonl as one property line."""
    def work():
        try:
            record = take(argv, env, cwd, nvidia_smi, run_dir)
            line = json.dumps({"k": "property", "n": PROPERTY, "v": json.dumps(record, sort_keys=True),
                               "t": time.time()}, separators=(",", ":")) + "\n"
            fd = os.open(events_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
        except Exception:  # the record is a courtesy: never the job's problem
            pass

    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t
