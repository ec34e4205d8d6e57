"""System metrics of a running job, sampled by the launcher (stdlib only, Python >= 3.8).

Every ``interval_s`` seconds a thread of the launcher reads /proc for the job's processes
(its session: the job and what it started, unless they left it) and appends to
events.jsonl, as ordinary metric records:

- ``system/cpu_percent``: CPU time the processes used in the interval, in % of one core;
- ``system/memory_rss_mb``: their resident memory, summed (MiB);
- per GPU the job can see (CUDA_VISIBLE_DEVICES, numbered as the job numbers them):
  ``system/gpu<i>/utilization_percent`` and ``system/gpu<i>/memory_used_mb``, from one
  ``nvidia-smi --loop-ms`` process started once (no process start per sample).

Readers keep them apart from what the script logged (``is_system``): ``get_metrics()`` and
``runctl metrics`` leave them out unless asked.
"""

import os
import subprocess
import threading
import time

from .events import encode_line

PREFIX = "system/"
DEFAULT_INTERVAL_S = 10.0
NVIDIA_SMI_ENV = "RUNCTL_NVIDIA_SMI"  # the nvidia-smi to run (default: the one on PATH)
GPU_QUERY = "index,uuid,utilization.gpu,memory.used"


def is_system(name):
    return isinstance(name, str) and name.startswith(PREFIX)


def session_usage(sid, proc="/proc"):
    """{pid: (cpu ticks, rss pages)} of the processes whose session is ``sid``."""
    out = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("%s/%s/stat" % (proc, name), "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        # after the name: state ppid pgrp session ... utime(11) stime(12) ... rss(21)
        if int(fields[3]) == sid:
            out[int(name)] = (int(fields[11]) + int(fields[12]), int(fields[21]))
    return out


def visible_gpus(environ):
    """The GPUs the job sees, in its order: a list of indices or UUIDs (None: all of them)."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip() and v.strip() != "-1"]


class GpuReader:
    """One ``nvidia-smi --query-gpu ... --loop-ms`` process; its latest line per GPU."""

    def __init__(self, nvidia_smi, interval_s, visible):
        self.latest = {}
        self.visible = visible
        try:
            self.proc = subprocess.Popen(
                [nvidia_smi, "--query-gpu=" + GPU_QUERY, "--format=csv,noheader,nounits",
                 "--loop-ms=%d" % max(100, int(interval_s * 1000))],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        except OSError:  # no nvidia-smi: no GPU metrics
            self.proc = None
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            parts = [p.strip() for p in raw.decode("utf-8", "replace").split(",")]
            if len(parts) != 4:
                continue
            index, uuid, util, used = parts
            try:
                self.latest[index] = (uuid, float(util), float(used))
            except ValueError:
                continue  # "[N/A]"

    def samples(self):
        """[(the job's GPU number, utilization %, memory used MiB)] from the latest lines."""
        rows = sorted(self.latest.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)
        if self.visible is None:
            return [(n, util, used) for n, (_index, (_uuid, util, used)) in enumerate(rows)]
        out = []
        for n, want in enumerate(self.visible):
            for index, (uuid, util, used) in rows:
                if want in (index, uuid):
                    out.append((n, util, used))
        return out

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Sampler:
    """Samples session ``sid`` into events.jsonl every ``interval_s`` until ``stop()``."""

    def __init__(self, events_path, sid, interval_s, environ):
        self.events_path = events_path
        self.sid = sid
        self.interval_s = interval_s
        self.environ = environ
        self._stop = threading.Event()
        self._thread = None
        self.gpus = None

    def start(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.gpus is not None:
            self.gpus.stop()

    def _loop(self):
        tick_s = 1.0 / os.sysconf("SC_CLK_TCK")
        page_mb = os.sysconf("SC_PAGE_SIZE") / 1048576.0
        prev, prev_t = {}, time.monotonic()  # the job has just started: everything it uses is new
        if self._stop.wait(min(0.5, self.interval_s / 2)):  # (nothing while the job starts up)
            return
        self.gpus = GpuReader(self.environ.get(NVIDIA_SMI_ENV) or "nvidia-smi", self.interval_s,
                              visible_gpus(self.environ))
        if self._stop.wait(self.interval_s - min(0.5, self.interval_s / 2)):
            return
        while True:
            usage, now = session_usage(self.sid), time.monotonic()
            used = sum(ticks - prev.get(pid, (0, 0))[0] for pid, (ticks, _rss) in usage.items()
                       if ticks >= prev.get(pid, (0, 0))[0])
            cpu = 100.0 * used * tick_s / max(now - prev_t, 1e-6)
            rss = sum(r for _ticks, r in usage.values()) * page_mb
            prev, prev_t = usage, now
            t = time.time()
            lines = [encode_line(("scalar", PREFIX + "cpu_percent", round(cpu, 1), None, t, None)),
                     encode_line(("scalar", PREFIX + "memory_rss_mb", round(rss, 1), None, t, None))]
            for n, util, mem in self.gpus.samples():
                lines.append(encode_line(("scalar", "%sgpu%d/utilization_percent" % (PREFIX, n), util, None, t, None)))
                lines.append(encode_line(("scalar", "%sgpu%d/memory_used_mb" % (PREFIX, n), mem, None, t, None)))
            self._append("\n".join(lines) + "\n")
            if self._stop.wait(self.interval_s):
                return

    def _append(self, text):
        """One write() with O_APPEND: whole lines, never interleaved with the job's writer's; never
        through a link the job put in events.jsonl's place (RUN_DIR is the job's to change)."""
        try:
            fd = os.open(self.events_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        except OSError:
            return
        try:
            os.write(fd, text.encode("utf-8"))
        except OSError:
            pass  # a full disk must not stop the job
        finally:
            os.close(fd)


def start(run_dir, spec, sid, environ, events_file):
    """A started Sampler for the job whose session is ``sid``, or None when switched off."""
    interval = spec.get("system_metrics_interval_s", DEFAULT_INTERVAL_S)
    if not interval or interval <= 0:
        return None
    return Sampler(os.path.join(run_dir, events_file), sid, float(interval), environ).start()
