"""runctl's agent on an SSH host: one JSON request on stdin, one JSON answer on stdout.
Stdlib only, Python >= 3.8. Shipped beside safefs.py, launcher.py and lib/runctl_protocol.py
into WORK_DIR/.runctl-agent/<digest>/ and run as ``python3 remote_agent.py`` over one SSH
exec channel per request. Everything under a RUN_DIR is read through safefs (no link is
followed); the launcher lock tells whether a launcher lives, as on a local host.
"""

import base64
import fcntl
import json
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import launcher  # noqa: E402  (beside this file; it loads lib/runctl_protocol.py)
import safefs  # noqa: E402

P = launcher.P


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def lock_free(run_dir, then):
    """``then()`` while holding RUN_DIR's launcher lock if no launcher holds it; "held" otherwise."""
    try:
        dfd = safefs.open_dir(run_dir, P.CONTROL_DIR)
    except OSError:
        return then()
    try:
        fd = os.open(os.path.basename(P.LOCK_FILE), os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644, dir_fd=dfd)
    except OSError:
        return then()
    finally:
        os.close(dfd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "held"
        return then()
    finally:
        os.close(fd)


def abandon(run_dir, canceled=False):
    def decide():
        st = safefs.read_json(run_dir, P.STATUS_FILE)
        if st or safefs.exists(run_dir, P.STATUS_FILE):
            return st
        st = {"state": P.FINISHED, "reason": P.ABANDONED, "exit_code": None, "end_time": time.time(),
              "error": "canceled before it started" if canceled else P.ABANDONED_ERROR}
        if os.path.isdir(run_dir):
            launcher.write_status(run_dir, st)
        return st

    result = lock_free(run_dir, decide)
    return None if result == "held" else result


def op_status(req):
    out = {}
    for run_dir in req["runs"]:
        alive = lock_free(run_dir, lambda: False) == "held"
        st = safefs.read_json(run_dir, P.STATUS_FILE)
        if not st and not alive and req.get("abandon_pending", {}).get(run_dir):
            st = abandon(run_dir) or safefs.read_json(run_dir, P.STATUS_FILE)
        out[run_dir] = {"status": st, "alive": alive, "cancel": safefs.exists(run_dir, P.CANCEL_MARKER),
                        "exists": os.path.isdir(run_dir)}
    return {"runs": out, "boot_id": boot_id()}


def op_cancel(req):
    run_dir = req["run_dir"]
    try:
        safefs.touch(run_dir, P.CANCEL_MARKER)
    except OSError:
        pass
    st = safefs.read_json(run_dir, P.STATUS_FILE)
    if lock_free(run_dir, lambda: False) == "held":
        pid = st.get("launcher_pid")
        if isinstance(pid, int) and launcher.process_alive(pid, st.get("launcher_start_ticks")):
            os.kill(pid, signal.SIGTERM)
            return {"signalled": pid}
    if not st:
        abandon(run_dir, canceled=True)
    return {"killed": launcher.kill_run_processes(run_dir, signal.SIGKILL)}


def op_missing(req):
    cache = req["cache"]
    return {"missing": [d for d in req["digests"] if not os.path.isfile(os.path.join(cache, d[:2], d[2:]))]}


def op_put(req):
    """Small objects, sent inline in one request (many small files cost one round trip)."""
    cache = req["cache"]
    for digest, data in req["objects"]:
        final = os.path.join(cache, digest[:2], digest[2:])
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = "%s.put.%d" % (final, os.getpid())
        with open(tmp, "wb") as f:
            f.write(base64.b64decode(data))
        os.chmod(tmp, 0o400)
        os.replace(tmp, final)
    return {}


def op_materialize(req):
    cache, root = req["cache"], req["run_dir"]
    os.makedirs(os.path.dirname(root), exist_ok=True)
    os.mkdir(root)
    for rel, digest, mode in req["files"]:
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(cache, digest[:2], digest[2:]), target)
        os.chmod(target, mode | 0o200)
    for rel, link in req["links"]:
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(link, target)
    for rel, data in req.get("inline", []):
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(base64.b64decode(data))
    return {}


def op_read(req):
    data = safefs.read_file(req["run_dir"], req["path"], req["offset"], req["max"])
    return {"data": base64.b64encode(data).decode("ascii")}


def op_list(req):
    return {"entries": list(safefs.walk(req["run_dir"], req["reldir"]))}


def op_remove(req):
    shutil.rmtree(req["run_dir"], ignore_errors=True)
    return {}


def op_info(req):
    work = req["work_dir"]
    os.makedirs(work, exist_ok=True)
    st = os.statvfs(work)
    return {"python": sys.version.split()[0], "free_bytes": st.f_bavail * st.f_frsize, "boot_id": boot_id()}


def query_gpus(nvidia_smi, busy_mib):
    """[{index, uuid, name, used_mib, total_mib, busy}] from nvidia-smi; [] without it."""
    import subprocess

    def query(*args):
        try:
            out = subprocess.run([nvidia_smi] + list(args), capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    gpus = query("--query-gpu=index,uuid,name,memory.used,memory.total", "--format=csv,noheader,nounits")
    if gpus is None:
        return []
    apps = query("--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader") or ""
    used_by_apps = {line.split(",")[0].strip() for line in apps.splitlines() if line.strip()}
    out = []
    for line in gpus.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            continue
        index, uuid, name, used, total = parts[:5]
        used_mib = float(used) if used.replace(".", "", 1).isdigit() else 0.0
        out.append({"index": int(index), "uuid": uuid, "name": name, "used_mib": used_mib,
                    "total_mib": float(total) if total.replace(".", "", 1).isdigit() else 0.0,
                    "busy": uuid in used_by_apps or used_mib > busy_mib})
    return out


RESERVATION_GRACE_S = 120  # a reservation whose run has not started by then is stale


def _reservation_live(path):
    """Is the GPU reservation file at ``path`` held by a run that lives (or is starting)?"""
    try:
        with open(path) as f:
            run_dir = f.read().strip()
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        return False
    if lock_free(run_dir, lambda: False) == "held":
        return True
    st = safefs.read_json(run_dir, P.STATUS_FILE)
    return not st and age < RESERVATION_GRACE_S


def op_gpus(req):
    gpus = query_gpus(req.get("nvidia_smi", "nvidia-smi"), req.get("busy_mib", 1024))
    res_dir = os.path.join(req["work_dir"], ".gpus")
    for g in gpus:
        g["reserved"] = _reservation_live(os.path.join(res_dir, str(g["index"])))
    return {"gpus": gpus}


def op_reserve(req):
    """Reserve ``count`` GPUs that no process uses and no live run holds, for ``run_dir``:
    one host-wide lock makes concurrent submits pick disjoint GPUs."""
    res_dir = os.path.join(req["work_dir"], ".gpus")
    os.makedirs(res_dir, exist_ok=True)
    fd = os.open(os.path.join(res_dir, ".lock"), os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        gpus = op_gpus(req)["gpus"]
        free = [g["index"] for g in gpus if not g["busy"] and not g["reserved"]]
        if len(free) < req["count"]:
            return {"reserved": None, "free": len(free), "total": len(gpus)}
        chosen = free[: req["count"]]
        for index in chosen:
            tmp = os.path.join(res_dir, ".%d.tmp" % index)
            with open(tmp, "w") as f:
                f.write(req["run_dir"])
            os.replace(tmp, os.path.join(res_dir, str(index)))
        return {"reserved": chosen}
    finally:
        os.close(fd)


def op_release_gpus(req):
    res_dir = os.path.join(req["work_dir"], ".gpus")
    for name in os.listdir(res_dir) if os.path.isdir(res_dir) else []:
        path = os.path.join(res_dir, name)
        try:
            with open(path) as f:
                if f.read().strip() == req["run_dir"]:
                    os.unlink(path)
        except OSError:
            continue
    return {}


OPS = {"status": op_status, "cancel": op_cancel, "missing": op_missing, "materialize": op_materialize,
       "read": op_read, "list": op_list, "remove": op_remove, "info": op_info, "gpus": op_gpus,
       "reserve": op_reserve, "release_gpus": op_release_gpus, "put": op_put}


MAX_LIFETIME_S = 600  # a request whose SSH session died (a cut link) must not leave the agent waiting forever


def answer(req):
    try:
        return OPS[req["op"]](req)
    except Exception as e:  # the caller maps this to a runctl error
        return {"error": "%s: %s" % (type(e).__name__, e)}


def main(argv):
    """One request from stdin; or, with --serve, one JSON request per line until stdin closes
    (one agent process per SSH connection: no Python start-up per request)."""
    if "--serve" not in argv:
        signal.alarm(MAX_LIFETIME_S)
        sys.stdout.write(json.dumps(answer(json.loads(sys.stdin.read()))))
        return 0
    for line in sys.stdin:
        signal.alarm(MAX_LIFETIME_S)  # idle that long (a dead session): exit
        sys.stdout.write(json.dumps(answer(json.loads(line))) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
