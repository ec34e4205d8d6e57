"""The runctl launcher: runs one job inside its run directory. Stdlib only, Python >= 3.8.

Shipped by every backend into RUN_DIR/.runctl/launcher.py and started there as
``python3 launcher.py [--detach] [--secrets-stdin] RUN_DIR``. It reads
RUN_DIR/.runctl/spec.json (and, with ``--secrets-stdin``, a JSON object of secret
variables from its standard input: never argv, a file or another process's environment),
starts the job in its own process group with the run environment, sends stdout+stderr to
RUN_DIR/logs/std_log.txt, enforces the time limit, turns SIGTERM into a graceful stop
(SIGTERM to the job, then SIGKILL after the grace period), and keeps RUN_DIR/status.json
(written atomically) up to date. It outlives whatever started it. Names, states and
reasons are runctl_protocol's (runctl/protocol.py).

Ownership: the launcher holds an exclusive lock on RUN_DIR/.runctl/launcher.lock for its
whole life, and starts the job only if no status.json exists yet. Whoever takes that lock
without waiting knows that no launcher is alive; if it then writes the "abandoned" record,
no launcher can start the job afterwards. That is how a run whose submitter was killed
before it learnt the launcher's pid is found again, or stopped for good.

A multi-process launch (one per rank) reuses the steps: ``claim``, ``start_job`` with its
own log file, ``supervise``, ``finish``.
"""

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from . import envrecord, sysmetrics  # (before the job starts: after, RUN_DIR/.runctl is the job's to replace)
from . import protocol as P
from .linux import PR_SET_CHILD_SUBREAPER, die_with_parent, prctl  # noqa: F401  (prctl: for callers)

CHECK_S = 0.1  # how often the time limit and a stop signal are checked


def proc_start_ticks(pid):
    """Start time of a process in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[19])


def process_alive(pid, start_ticks):
    """Is ``pid`` still the process that had ``start_ticks``? Without /proc (macOS) the start
    time is unknown (None) and only existence can be checked."""
    if start_ticks is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return proc_start_ticks(pid) == start_ticks


def process_gone(owner):
    """Is the process described by ``owner`` (a this_process() dict) gone? Unknown (no pid,
    another host) is not gone."""
    if not owner or "pid" not in owner:
        return False
    if owner.get("host") not in (None, socket.gethostname()):
        return False
    return not process_alive(int(owner["pid"]), owner.get("start_ticks"))


def this_process():
    """Who is running: enough for process_alive() to tell later whether it still is."""
    return {"pid": os.getpid(), "start_ticks": proc_start_ticks(os.getpid()), "host": socket.gethostname()}


def write_status(run_dir, status, name=P.STATUS_FILE):
    path = os.path.join(run_dir, name)
    tmp = path + ".tmp.%d" % os.getpid()
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(status, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def link_if_absent(code_dir, name):
    link = os.path.join(code_dir, name)
    if not os.path.lexists(link):
        os.symlink(os.path.join("..", name), link)


class Stop:
    requested = False


def on_stop_signal(signum, frame):
    Stop.requested = True


def collect_outputs(run_dir, code_dir):
    """A snapshot that shipped its own outputs/ dir kept it; copy what the job wrote there."""
    src = os.path.join(code_dir, P.OUTPUTS_DIR)
    if os.path.islink(src) or not os.path.isdir(src):
        return
    shutil.copytree(src, os.path.join(run_dir, P.OUTPUTS_DIR), symlinks=True, dirs_exist_ok=True)


def take_lock(run_dir, wait=True):
    """The launcher lock's descriptor (held until the process exits), or None if another holds it."""
    fd = os.open(os.path.join(run_dir, P.LOCK_FILE), os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def read_secrets(stream):
    """The secret variables runctl sends on stdin: one JSON object of strings."""
    data = stream.read()
    if not data.strip():
        return {}
    secrets = json.loads(data)
    if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
        raise ValueError("secrets on stdin must be a JSON object of strings")
    return secrets


def claim(run_dir):
    """Take the launcher lock (held until exit); False if the run already has a status
    (started before, or abandoned by a reconciler): then nothing may start."""
    take_lock(run_dir)
    if os.path.lexists(os.path.join(run_dir, P.STATUS_FILE)):
        sys.stderr.write("runctl launcher: %s already has a status (started before, or abandoned); "
                         "not starting the job again\n" % run_dir)
        return False
    return True


def start_job(run_dir, spec, secrets, status, log_name=P.LOG_FILE):
    """Start the job (its own session, dies with the launcher); None if it cannot start
    (then ``status`` says why)."""
    code_dir = os.path.join(run_dir, spec.get("cwd", P.CODE_DIR))
    for name in (P.OUTPUTS_DIR, P.LOGS_DIR):
        os.makedirs(os.path.join(run_dir, name), mode=0o700, exist_ok=True)
        link_if_absent(code_dir, name)
    env = P.job_environment(run_dir, spec, os.environ)
    env.update(secrets)
    log_fd = os.open(os.path.join(run_dir, log_name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        argv = json.loads(os.environ[P.TASK_LAUNCH]) + spec["argv"] if os.environ.get(P.TASK_LAUNCH) else spec["argv"]
        return subprocess.Popen(argv, cwd=code_dir, env=env, stdin=subprocess.DEVNULL, stdout=log_fd,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=die_with_parent)  # the job does not outlive a killed launcher
    except OSError as e:
        os.write(log_fd, ("runctl: cannot start %r: %s\n" % (spec["argv"][0], e)).encode())
        status.update(state=P.FINISHED, reason=P.START_FAILED, exit_code=127, end_time=time.time(), error=str(e))
        return None
    finally:
        os.close(log_fd)


def supervise(run_dir, child, spec, status, status_name=P.STATUS_FILE):
    """Wait for the job, enforcing the time limit and a stop signal; returns (rc, reason)."""
    timeout_s = spec.get("timeout_s")
    grace_s = float(spec.get("grace_s", 10))
    deadline = status["start_time"] + timeout_s if timeout_s else None
    reason, kill_at = P.EXIT, None
    # A thread blocks in waitpid, so the end of the job is noticed at once; the main
    # thread wakes every CHECK_S for the time limit and for a stop signal.
    ended = threading.Event()
    threading.Thread(target=lambda: (child.wait(), ended.set()), daemon=True).start()
    while not ended.wait(CHECK_S):
        now = time.time()
        if kill_at is None and (Stop.requested or (deadline is not None and now >= deadline)):
            reason = P.CANCELED if Stop.requested else P.TIMEOUT
            signal_group(child.pid, signal.SIGTERM)
            kill_at = now + grace_s
            status.update(state=P.STOPPING, reason=reason)
            write_status(run_dir, status, status_name)
        elif kill_at is not None and now >= kill_at:
            signal_group(child.pid, signal.SIGKILL)
            kill_at = float("inf")
    return child.returncode, reason


def finish(run_dir, child, rc, reason, status, status_name=P.STATUS_FILE):
    """Stop whatever the job left running, collect code/outputs, record the end."""
    # Its group, and anything that left the group (setsid, double fork) but still carries
    # the run's environment, or that this launcher adopted as a subreaper.
    signal_group(child.pid, signal.SIGKILL)
    kill_run_processes(run_dir, signal.SIGKILL, adopted=True)
    exit_code = rc if rc >= 0 else 128 - rc
    if rc == -signal.SIGKILL and oom_kills() > OOM_AT_START[0]:
        status["error"] = "out of memory (the kernel killed the job at its memory limit)"
    try:
        collect_outputs(run_dir, os.path.join(run_dir, P.CODE_DIR))
    except OSError as e:
        status["warning"] = "could not collect code/outputs: %s" % e
    status.update(state=P.FINISHED, reason=reason, exit_code=exit_code, end_time=time.time())
    if rc < 0:
        status["signal"] = -rc
    write_status(run_dir, status, status_name)
    return exit_code


def run(run_dir, secrets=None, started=None):
    """Run the job of RUN_DIR; ``started()`` is called once status.json says "starting"."""
    run_dir = os.path.abspath(run_dir)
    if not claim(run_dir):
        if started is not None:
            started()
        return 0
    with open(os.path.join(run_dir, P.SPEC_FILE)) as f:
        spec = json.load(f)
    status = {"state": P.STARTING, "host": socket.gethostname(), "launcher_pid": os.getpid(),
              "launcher_start_ticks": proc_start_ticks(os.getpid()), "start_time": time.time()}
    write_status(run_dir, status)
    if started is not None:
        started()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_stop_signal)
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # what the job daemonises stays our descendant
    if spec.get("python_env") and not prepare_environment(run_dir, spec, status):
        write_status(run_dir, status)
        return status["exit_code"]
    child = start_job(run_dir, spec, secrets or {}, status)
    if child is None:
        write_status(run_dir, status)
        return 127
    status.update(state=P.RUNNING, pid=child.pid, pgid=child.pid)
    write_status(run_dir, status)
    OOM_AT_START[0] = oom_kills()  # (finish() compares: a kill since is the job's)
    sampler = start_sampling(run_dir, spec, child.pid)
    recorder = start_record(run_dir, spec)
    try:
        rc, reason = supervise(run_dir, child, spec, status)
    finally:
        if sampler is not None:
            sampler.stop()  # the job has ended: so does its sampling
        if recorder is not None:
            recorder.join(RECORD_WAIT_S)  # the record goes in before the end is recorded
    return finish(run_dir, child, rc, reason, status)


RECORD_WAIT_S = 15.0


def start_record(run_dir, spec):
    """The run's environment record (envrecord.py), taken in a thread beside the job."""
    try:
        env = P.job_environment(run_dir, spec, os.environ)
        return envrecord.record_in_background(os.path.join(run_dir, P.EVENTS_FILE), spec.get("argv") or [], env,
                                              os.path.join(run_dir, spec.get("cwd", P.CODE_DIR)),
                                              env.get(envrecord.NVIDIA_SMI_ENV) or "nvidia-smi", run_dir)
    except Exception:  # a courtesy: never the job's problem
        return None


def prepare_environment(run_dir, spec, status):
    """Build (or find) the job's Python environment (pyenv.py) and point the job's argv at its
    python; False (and ``status`` says why) if it cannot be had or the run was canceled."""
    from . import pyenv

    status.update(state=P.PREPARING)
    write_status(run_dir, status)
    os.makedirs(os.path.join(run_dir, P.LOGS_DIR), mode=0o700, exist_ok=True)
    log_path = os.path.join(run_dir, P.ENV_LOG_FILE)
    std = os.open(os.path.join(run_dir, P.LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(std, b"runctl: preparing the Python environment (its installer's output is also in %s)\n"
                 % P.ENV_LOG_FILE.encode())
        with open(log_path, "ab") as log, os.fdopen(os.dup(std), "ab") as main_log:
            python = pyenv.ensure(spec["python_env"], P.job_environment(run_dir, spec, os.environ),
                                  pyenv.Tee(log, main_log), lambda: Stop.requested)
    except pyenv.Canceled:
        status.update(state=P.FINISHED, reason=P.CANCELED, exit_code=128 + signal.SIGTERM, end_time=time.time())
        return False
    except (pyenv.BuildFailed, OSError) as e:
        os.write(std, ("runctl: %s\n" % e).encode("utf-8", "replace"))
        status.update(state=P.FINISHED, reason=P.ENVIRONMENT_FAILED, exit_code=P.ENVIRONMENT_FAILED_EXIT,
                      error=str(e), end_time=time.time())
        return False
    finally:
        os.close(std)
    argv = list(spec["argv"])
    argv[0] = python
    spec["argv"] = argv
    status.update(state=P.STARTING)
    return True


def start_sampling(run_dir, spec, sid):
    """The job's system metrics (sysmetrics.py), sampled beside it; None when switched off or
    on a rank that does not log metrics."""
    env = dict(os.environ)
    env.update(spec.get("env") or {})
    if not P.logs_metrics(env) or not spec.get("system_metrics_interval_s", 10):
        return None
    try:
        return sysmetrics.start(run_dir, spec, sid, env, P.EVENTS_FILE)
    except Exception as e:  # sampling must never cost the job its run
        sys.stderr.write("runctl launcher: no system metrics: %s: %s\n" % (type(e).__name__, e))
        return None


OOM_AT_START = [0]


OOM_COUNTS = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")  # cgroup v2, v1


def oom_kills(paths=OOM_COUNTS):
    """How many processes the kernel has killed for memory in this cgroup (0 when unknown): a
    job killed by SIGKILL while the count grew died of its memory limit."""
    for path in paths:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return 0


def signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_processes(run_dir, adopted=False):
    """Pids of the run's processes: those that carry its RUNCTL_RUN_DIR in their environment
    (the job and everything it started, even what called setsid() or outlived the launcher),
    and with ``adopted``, the calling launcher's children (orphans it adopted as a subreaper)."""
    marker = ("%s=%s" % (P.RUN_DIR, os.path.abspath(run_dir))).encode()
    me = os.getpid()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                env = f.read()
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        if (adopted and ppid == me) or marker in env.split(b"\0"):
            found.append(int(name))
    return found


def kill_run_processes(run_dir, sig, adopted=False):
    """Signal every process of the run (see run_processes); returns how many were signalled."""
    pids = run_processes(run_dir, adopted)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    return len(pids)


def launch_detached(run_dir, secrets):
    """Start the launcher for RUN_DIR in a new session, detached from the caller (double
    fork: nobody has to reap it); return its pid once status.json exists (or it died first).
    Used by ``--detach`` and by runctl's agent on SSH hosts (no second Python start)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - (runs in the forked processes)
        code = 1
        try:
            os.close(r)
            os.setsid()
            if os.fork():
                os._exit(0)
            os.write(w, b"%d\n" % os.getpid())
            log = os.open(os.path.join(run_dir, P.LAUNCHER_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(devnull)
            os.close(log)

            def started():
                os.close(w)  # the caller's read ends: status.json exists

            code = run_recorded(run_dir, secrets, started)
        finally:
            os._exit(code or 0)
    os.close(w)
    os.waitpid(child, 0)
    data = b""
    while True:
        piece = os.read(r, 64)
        if not piece:
            break
        data += piece
    os.close(r)
    return int(data) if data.strip() else None


def run_recorded(run_dir, secrets, started=None):
    """``run``; whatever goes wrong in the launcher itself ends up in status.json."""
    try:
        return run(run_dir, secrets, started)
    except Exception as e:  # the record must say why, whatever happened
        try:
            write_status(run_dir, {"state": P.FINISHED, "reason": P.LAUNCHER_ERROR, "exit_code": 1,
                                   "error": "launcher: %s: %s" % (type(e).__name__, e), "end_time": time.time()})
        finally:
            raise


def main(argv):
    flags = {a for a in argv if a.startswith("--")}
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1 or flags - {"--detach", "--secrets-stdin"}:
        sys.stderr.write("usage: launcher.py [--detach] [--secrets-stdin] RUN_DIR\n")
        return 2
    run_dir = os.path.abspath(args[0])
    secrets = read_secrets(sys.stdin) if "--secrets-stdin" in flags else {}
    if "--detach" not in flags:
        return run_recorded(run_dir, secrets)
    pid = launch_detached(run_dir, secrets)
    if pid is None:
        sys.stderr.write("launcher: the detached launcher did not start\n")
        return 1
    sys.stdout.write("%d\n" % pid)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
