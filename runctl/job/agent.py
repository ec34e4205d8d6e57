"""runctl's agent on an SSH host: one JSON request on stdin, one JSON answer on stdout.
Stdlib only, Python >= 3.8. Part of the job-side package, which runctl ships as
WORK_DIR/.runctl-agent/<digest>/runctl_job/ and runs, checked, from memory (backends/sshlink.py's
bootstrap) over one SSH exec channel per connection. Everything under a RUN_DIR is read through safefs (no link is
followed); the launcher lock tells whether a launcher lives, as on a local host.
"""

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
import time

from . import launcher, ownership, safefs
from . import protocol as P
from .ownership import abandon_unstarted as abandon
from .ownership import launcher_alive, read_status

# The agent's own folder on the host (WORK_DIR/.runctl-agent/<digest>/, this package's parent):
# set by runctl's bootstrap, which runs the package from memory.
HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def op_status(req):
    out = {}
    for run_dir in req["runs"]:
        alive = launcher_alive(run_dir)
        st = read_status(run_dir)
        if not st and not alive and req.get("abandon_pending", {}).get(run_dir):
            st = abandon(run_dir) or read_status(run_dir)
        out[run_dir] = {"status": st, "alive": alive, "cancel": safefs.exists(run_dir, P.CANCEL_MARKER),
                        "exists": os.path.isdir(run_dir)}
    return {"runs": out, "boot_id": boot_id()}


def op_watch(req):
    """The follower's wait, done beside the run: up to timeout_s (at most 5 s) for its start,
    first output or end (safefs.watch)."""
    timeout = max(0.0, min(float(req.get("timeout_s") or 0), 5.0))
    return {"changed": safefs.watch(req["run_dir"], P.STATUS_FILE, P.LOG_FILE, timeout)}


def op_cancel(req):
    run_dir = req["run_dir"]
    try:
        safefs.touch(run_dir, P.CANCEL_MARKER)
    except OSError:
        pass
    st = read_status(run_dir)
    if launcher_alive(run_dir):
        pid = st.get("launcher_pid")
        if isinstance(pid, int) and launcher.process_alive(pid, st.get("launcher_start_ticks")):
            os.kill(pid, signal.SIGTERM)
            return {"signalled": pid}
    if not st:
        abandon(run_dir, canceled=True)
    return {"killed": launcher.kill_run_processes(run_dir, signal.SIGKILL)}


COPY_THREADS = 4  # file creation dominates on many disks; a few threads halve it


def _obj(cache, digest):
    return os.path.join(cache, P.object_relpath(digest))


# The object cache: one file per object (loose), and packs: small objects that arrived
# together, in one file (packs/N.pack, with N.idx: {digest: [offset, length]}), since
# creating thousands of files is what a cold upload waits for on many disks. A background
# process (make_spare) turns packs into loose objects later and removes them.


def _pack_indexes(cache):
    """[(pack path, {digest: [offset, length]})] of the packs there are now."""
    pack_dir = os.path.join(cache, "packs")
    try:
        names = sorted(n for n in os.listdir(pack_dir) if n.endswith(".idx"))
    except OSError:
        return []
    out = []
    for name in names:
        try:
            with open(os.path.join(pack_dir, name)) as f:
                out.append((os.path.join(pack_dir, name[:-4] + ".pack"), json.load(f)))
        except (OSError, ValueError):
            continue
    return out


def _packs(cache):
    """{digest: (pack path, offset, length)}."""
    return {digest: (pack, offset, length) for pack, index in _pack_indexes(cache)
            for digest, (offset, length) in index.items()}


class Damaged(Exception):
    """An object of the cache no longer has the content its name says (a job of the same user
    can write there): removed, so that the next submit sends it again."""


def _copy_object(cache, digest, target, packs):
    """Object ``digest`` to the new file ``target``: from its loose file, or its pack; its
    content is hashed on the way and must be what its name says."""
    try:
        _copy_checked(_obj(cache, digest), 0, None, target, digest)
        return
    except FileNotFoundError:
        if digest not in packs:
            raise
    pack, offset, length = packs[digest]
    try:
        _copy_checked(pack, offset, length, target, digest)
    except FileNotFoundError:  # unpacked meanwhile: it is loose now
        _copy_checked(_obj(cache, digest), 0, None, target, digest)


def _copy_checked(source, offset, length, target, digest):
    h = hashlib.sha256()
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as src, open(target, "wb") as out:
        src.seek(offset)
        left = length
        while left is None or left > 0:
            chunk = src.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            out.write(chunk)
            if left is not None:
                left -= len(chunk)
    if h.hexdigest() != digest:
        os.unlink(target)
        if length is None:  # a loose object: drop it (a damaged pack is left to gc)
            with contextlib.suppress(OSError):
                os.unlink(source)
        raise Damaged("object %s in the host's cache was changed after runctl stored it (removed now); submit "
                      "again to send it anew" % digest[:12])


def op_run(req):
    """A command (argv, no shell) with extra environment variables (secrets travel here, in
    the request, never on a command line) and stdin: the Slurm backend's sbatch, squeue..."""
    import subprocess

    env = dict(os.environ)
    env.update(req.get("env") or {})
    try:
        p = subprocess.run(req["argv"], input=(req.get("stdin") or "").encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=req.get("timeout", 120))
    except FileNotFoundError:
        return {"missing": True}
    return {"rc": p.returncode, "out": p.stdout.decode("utf-8", "replace"), "err": p.stderr.decode("utf-8", "replace")}


def op_mark_cancel(req):
    """The cancel marker, and an "abandoned" record if no launcher ever started (the job's
    own launcher, wherever it runs, then refuses to start): no signal from here."""
    ownership.mark_cancel(req["run_dir"])
    return {}


def op_missing(req):
    """The digests the cache lacks; the ones it has are touched, so that `runctl gc`, which
    removes objects unused for days, leaves alone what a submit is about to use."""
    cache = req["cache"]
    packed = _packs(cache)
    missing = []
    for d in req["digests"]:
        if d in packed:
            continue
        try:
            os.utime(_obj(cache, d))
        except OSError:
            missing.append(d)
    return {"missing": missing}


def _du(path):
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            return safefs.tree_size(path)
        return os.lstat(path).st_size
    except OSError:
        return 0


def op_gc(req):
    """`runctl gc` on this host: the run directories runctl's store says are finished and
    synced (``runs``), cache objects unused for ``older_than_s``, ready copies as old, other
    versions of this agent. Never a run directory the store did not name (another store
    may share this work_dir)."""
    work, old_s, dry = req["work_dir"], float(req["older_than_s"]), bool(req.get("dry_run"))
    if not (0 <= old_s < float("inf")):  # nan would make every age "old"
        raise ValueError("older_than_s must be a finite number >= 0, not %r" % (req["older_than_s"],))
    now, removed = time.time(), []

    def remove(path, age_s):
        try:
            if now - os.lstat(path).st_mtime <= age_s:  # (looked at again right before: a submit may use it)
                return
        except OSError:
            return
        removed.append([path, _du(path)])
        if dry:
            return
        if os.path.isdir(path) and not os.path.islink(path):
            safefs.remove_tree(path)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)

    for run_dir in req.get("runs") or []:
        if os.path.dirname(os.path.normpath(run_dir)) == os.path.normpath(work) and not launcher_alive(run_dir):
            remove(run_dir, 0)
    cache = os.path.join(work, ".objects")
    for sub in sorted(os.listdir(cache)) if os.path.isdir(cache) else []:
        if len(sub) == 2 and os.path.isdir(os.path.join(cache, sub)):
            for name in sorted(os.listdir(os.path.join(cache, sub))):
                remove(os.path.join(cache, sub, name), old_s)
    spares = os.path.join(work, ".spare")
    for name in sorted(os.listdir(spares)) if os.path.isdir(spares) else []:
        if name.startswith("ready-"):
            remove(os.path.join(spares, name), old_s)
    agents = os.path.join(work, ".runctl-agent")
    here = HOME
    for name in sorted(os.listdir(agents)) if os.path.isdir(agents) else []:
        if os.path.join(agents, name) != here:
            remove(os.path.join(agents, name), 3600)
    return {"removed": removed}


def op_put(req):
    """Small objects, sent inline in one request, into one new pack."""
    pack_dir = os.path.join(req["cache"], "packs")
    os.makedirs(pack_dir, exist_ok=True)
    name = os.path.join(pack_dir, "%d-%d-%s" % (time.time_ns(), os.getpid(), req["objects"][0][0][:12]))
    index, offset = {}, 0
    with open(name + ".pack.tmp", "wb") as f:
        for digest, data in req["objects"]:
            raw = base64.b64decode(data)
            f.write(raw)
            index[digest] = [offset, len(raw)]
            offset += len(raw)
    os.replace(name + ".pack.tmp", name + ".pack")
    with open(name + ".idx.tmp", "w") as f:
        json.dump(index, f)
    os.replace(name + ".idx.tmp", name + ".idx")  # the pack counts from here on
    return {}


def unpack(cache):
    """Each pack's objects into loose files, then the pack removed (background, at leisure;
    a reader that finds a pack gone finds its objects loose)."""
    for pack, index in _pack_indexes(cache):
        with open(pack, "rb") as src:
            for digest, (offset, length) in sorted(index.items(), key=lambda kv: kv[1]):
                final = _obj(cache, digest)
                if os.path.isfile(final):
                    continue
                os.makedirs(os.path.dirname(final), exist_ok=True)
                src.seek(offset)
                tmp = "%s.unpack.%d" % (final, os.getpid())
                with open(tmp, "wb") as f:
                    f.write(src.read(length))
                os.chmod(tmp, 0o400)
                os.replace(tmp, final)
        os.unlink(pack[:-5] + ".idx")
        with contextlib.suppress(OSError):
            os.unlink(pack)


def _lay_files(cache, root, files):
    """Copy ``files`` ([rel, digest, mode]) from the cache under ``root``, a few at a time."""
    from concurrent.futures import ThreadPoolExecutor

    for d in sorted({os.path.dirname(os.path.join(root, rel)) for rel, _, _ in files}):
        os.makedirs(d, exist_ok=True)

    packs = _packs(cache)

    def copy(entry):
        rel, digest, mode = entry
        target = os.path.join(root, rel)
        _copy_object(cache, digest, target, packs)
        os.chmod(target, mode | 0o200)

    with ThreadPoolExecutor(COPY_THREADS) as pool:
        list(pool.map(copy, files))


def _lay_links(root, links):
    for rel, link in links:
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(link, target)


SPARE_MANIFEST = ".runctl-spare.json"  # inside a spare: the files and links it holds


def _spare_dir(work_dir):
    return os.path.join(work_dir, ".spare")


def _take_spare(work_dir, root):
    """Move the ready copy (if any) to ``root`` (one rename: concurrent takers cannot both get
    it); its manifest, or None."""
    spares = _spare_dir(work_dir)
    try:
        ready = [n for n in os.listdir(spares) if n.startswith("ready-")]
    except OSError:
        return None
    for name in ready:
        try:
            os.rename(os.path.join(spares, name), root)
        except OSError:
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(root, SPARE_MANIFEST))  # (written by the builder; not trusted)
        found = _tree_as_it_is(root)
        if found is None:
            safefs.remove_tree(root)
        return found
    return None


def _tree_as_it_is(root):
    """What a ready copy really holds, read and hashed here: {"files": [[rel, sha256, mode]],
    "links": [[rel, target]]}; None if it holds anything else. A job of the same user could
    have changed a ready copy (its files, modes, links, its manifest): only what is verified
    now is kept, and what differs from the wanted tree is laid again."""
    files, links = [], []
    for entry in safefs.walk(root, "", _hashed):
        rel, kind = entry[0], entry[2]
        if kind == "symlink":
            links.append([rel, os.readlink(os.path.join(root, rel))])
        elif kind == "file" and entry[3] is not None:
            files.append([rel, *entry[3]])
        else:
            return None
    return {"files": files, "links": links}


def _hashed(dir_fd, name):
    """(sha256, mode) of the regular file ``name`` in ``dir_fd`` (no link followed); None if it is not one now."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000):
            return None
        h = hashlib.sha256()
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
        return h.hexdigest(), st.st_mode & 0o7777


def _fix_up(cache, root, have, files, links):
    """Make the tree at ``root`` (holding ``have``) exactly ``files`` + ``links``."""
    want = {rel: (digest, mode) for rel, digest, mode in files}
    want_links = dict((rel, link) for rel, link in links)
    # (a file laid from the cache has its wanted mode plus the owner's write bit)
    old = {rel: want[rel] if rel in want and want[rel][0] == digest and want[rel][1] | 0o200 == mode
           else (digest, mode) for rel, digest, mode in have["files"]}
    old_links = dict((rel, link) for rel, link in have["links"])
    for rel in set(old) | set(old_links):
        if want.get(rel) != old.get(rel) or want_links.get(rel) != old_links.get(rel):
            os.unlink(os.path.join(root, rel))
    needed = set()
    for rel in list(want) + list(want_links):
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            needed.add("/".join(parts[:i]))
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        rel = os.path.relpath(dirpath, root)
        if rel != "." and rel not in needed:
            os.rmdir(dirpath)  # empty by now: every entry in it was unwanted
    _lay_files(cache, root, [[rel, d, m] for rel, (d, m) in want.items() if old.get(rel) != (d, m)])
    _lay_links(root, [[rel, ln] for rel, ln in want_links.items() if old_links.get(rel) != ln])


def op_materialize(req):
    """RUN_DIR from the cache: a ready copy of the last code (the spare) moved into place and
    corrected where the wanted tree differs; else copied file by file."""
    cache, root = req["cache"], req["run_dir"]
    os.makedirs(os.path.dirname(root), exist_ok=True)
    have = _take_spare(req["work_dir"], root) if req.get("spare") else None
    if have is None:
        os.mkdir(root)
        _lay_files(cache, root, req["files"])
        _lay_links(root, req["links"])
    else:
        _fix_up(cache, root, have, req["files"], req["links"])
    for rel, data in req.get("inline", []):
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(base64.b64decode(data))
    _start_background(req)
    return {"from_spare": have is not None}


def _start_background(req):
    """A detached process unpacks the packs and prepares the next ready copy (if asked);
    the caller does not wait for it."""
    import subprocess

    spares = _spare_dir(req["work_dir"])
    os.makedirs(spares, exist_ok=True)
    todo = os.path.join(spares, "next.%d.json" % os.getpid())
    with open(todo, "w") as f:
        json.dump({"cache": req["cache"], "files": req["files"], "links": req["links"],
                   "spare": bool(req.get("spare"))}, f)
    os.replace(todo, os.path.join(spares, "next.json"))
    with open(os.devnull, "r+b") as null:
        subprocess.Popen(RELAUNCH + ["--spare", spares],
                         stdin=null, stdout=null, stderr=null, start_new_session=True, close_fds=True)


def make_spare(spares):
    """Unpack the cache's packs, then build the ready copy that next.json asks for; one
    builder at a time, at low priority; the previous ready copy (other code) is dropped."""
    fd = os.open(os.path.join(spares, ".lock"), os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # a builder runs; it reads next.json when done with what it builds
    os.nice(10)
    while True:
        try:
            with open(os.path.join(spares, "next.json")) as f:
                job = json.load(f)
            os.unlink(os.path.join(spares, "next.json"))
        except (OSError, ValueError):
            return 0
        unpack(job["cache"])
        if not job.get("spare"):
            continue
        manifest = {"files": job["files"], "links": job["links"]}
        key = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:24]
        for name in os.listdir(spares):
            if name == "ready-" + key:
                continue
            if name.startswith("ready-"):  # moved aside first: a taker may be renaming it right now
                trash = os.path.join(spares, "trash-%s" % name)
                try:
                    os.rename(os.path.join(spares, name), trash)
                except OSError:
                    continue
                shutil.rmtree(trash, ignore_errors=True)
            elif name.startswith(("build-", "trash-")):  # a builder killed midway (we hold the lock)
                shutil.rmtree(os.path.join(spares, name), ignore_errors=True)
        if os.path.isdir(os.path.join(spares, "ready-" + key)):
            continue  # that copy is ready already
        build = os.path.join(spares, "build-%d" % os.getpid())
        try:
            os.mkdir(build)
            _lay_files(job["cache"], build, job["files"])
            _lay_links(build, job["links"])
            with open(os.path.join(build, SPARE_MANIFEST), "w") as f:
                json.dump(manifest, f)
            os.rename(build, os.path.join(spares, "ready-" + key))
        except OSError:
            shutil.rmtree(build, ignore_errors=True)


def op_launch(req):
    """Start RUN_DIR's launcher detached, from this process (no second Python start): its pid.
    Secrets and launch-time variables come in the request, never on a command line."""
    variables = req.get("variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise ValueError("variables must be a JSON object of strings")
    pid = launcher.launch_detached(req["run_dir"], variables)
    if pid is None:
        raise RuntimeError("the launcher did not start (see RUN_DIR/.runctl/launcher.log)")
    return {"pid": pid, "boot_id": boot_id()}


def op_read(req):
    data = safefs.read_file(req["run_dir"], req["path"], req["offset"], req["max"])
    return {"data": base64.b64encode(data).decode("ascii")}


def op_list(req):
    return {"entries": list(safefs.walk(req["run_dir"], req["reldir"]))}


def op_remove(req):
    safefs.remove_tree(req["run_dir"])
    return {}


def op_info(req):
    work = req["work_dir"]
    os.makedirs(work, exist_ok=True)
    st = os.statvfs(work)
    return {"python": sys.version.split()[0], "free_bytes": st.f_bavail * st.f_frsize, "boot_id": boot_id()}


def _smi(nvidia_smi, *args):
    import subprocess

    try:
        out = subprocess.run([nvidia_smi] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def gpu_inventory(nvidia_smi):
    """[{index, uuid, name, used_mib, total_mib}] from one nvidia-smi call; [] without it."""
    gpus = _smi(nvidia_smi, "--query-gpu=index,uuid,name,memory.used,memory.total", "--format=csv,noheader,nounits")
    out = []
    for line in (gpus or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            continue
        index, uuid, name, used, total = parts[:5]
        out.append({"index": int(index), "uuid": uuid, "name": name,
                    "used_mib": float(used) if used.replace(".", "", 1).isdigit() else 0.0,
                    "total_mib": float(total) if total.replace(".", "", 1).isdigit() else 0.0})
    return out


def query_gpus(nvidia_smi, busy_mib, inventory=None):
    """The inventory (queried now unless given, a moment old) with "busy": a compute process on
    the GPU (anyone's), or more than ``busy_mib`` of its memory in use."""
    gpus = gpu_inventory(nvidia_smi) if inventory is None else [dict(g) for g in inventory]
    if not gpus:
        return []
    apps = _smi(nvidia_smi, "--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader") or ""
    used_by_apps = {line.split(",")[0].strip() for line in apps.splitlines() if line.strip()}
    for g in gpus:
        g["busy"] = g["uuid"] in used_by_apps or g["used_mib"] > busy_mib
    return gpus


RESERVATION_GRACE_S = 120  # a reservation whose run has not started by then is stale


def _reservation_live(path):
    """Is the GPU reservation file at ``path`` held by a run that lives (or is starting)?"""
    try:
        with open(path) as f:
            run_dir = f.read().strip()
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        return False
    if launcher_alive(run_dir):
        return True
    st = read_status(run_dir)
    return not st and age < RESERVATION_GRACE_S


def op_inventory(req):
    return {"gpus": gpu_inventory(req.get("nvidia_smi", "nvidia-smi"))}


def op_gpus(req):
    gpus = query_gpus(req.get("nvidia_smi", "nvidia-smi"), req.get("busy_mib", 1024), req.get("inventory"))
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


def op_envs(req):
    """The Python environments built on this host (pyenv.inventory)."""
    from . import pyenv

    return {"envs": pyenv.inventory(os.environ, req.get("root"))}


def op_env_rm(req):
    """Remove one environment (``key``), or every unused one older than ``older_than_s``."""
    from . import pyenv

    old = req.get("older_than_s")
    return {"removed": pyenv.remove(os.environ, req.get("key"), None if old is None else float(old),
                                    bool(req.get("dry_run")), req.get("root"))}


OPS = {"status": op_status, "watch": op_watch, "cancel": op_cancel, "missing": op_missing, "materialize": op_materialize,
       "read": op_read, "list": op_list, "remove": op_remove, "info": op_info, "gpus": op_gpus,
       "reserve": op_reserve, "release_gpus": op_release_gpus, "put": op_put, "launch": op_launch,
       "run": op_run, "mark_cancel": op_mark_cancel, "gc": op_gc,
       "inventory": op_inventory, "envs": op_envs, "env_rm": op_env_rm}


# How to start this agent again (the background builder): set by runctl's bootstrap, which
# runs only a copy it checked against runctl's own; ``python -m runctl_job.agent`` from the
# agent's folder runs it as is.
RELAUNCH = [sys.executable, "-S", "-E", "-m", "runctl_job.agent"]

MAX_LIFETIME_S = 600  # a request whose SSH session died (a cut link) must not leave the agent waiting forever


def answer(req):
    try:
        return OPS[req["op"]](req)
    except Exception as e:  # the caller maps this to a runctl error
        return {"error": "%s: %s" % (type(e).__name__, e)}


def main(argv):
    """One request from stdin; or, with --serve, one JSON request per line until stdin closes
    (one agent process per SSH connection: no Python start-up per request)."""
    if argv[:1] == ["--spare"]:
        os.umask(0o077)
        return make_spare(argv[1])
    os.umask(0o077)  # what runctl makes on a shared host is private to its user (the job inherits this too)
    if "--serve" not in argv:
        signal.alarm(MAX_LIFETIME_S)
        sys.stdout.write(json.dumps(answer(json.loads(sys.stdin.read()))))
        return 0
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        signal.alarm(MAX_LIFETIME_S)  # idle that long (a dead session): exit
        sys.stdout.write(json.dumps(answer(json.loads(line))) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
