"""The Slurm backend: the launcher as a batch job, on this machine's cluster or through a
login node reached by SSH.

Local mode (no ``login``): RUN_DIR under ``work_dir`` on a filesystem the nodes share,
staged with the local transport; sbatch/squeue/scancel run here. Remote mode: every
command and file access goes through runctl's agent on the login node (backends/sshlink.py),
RUN_DIR staged through that host's object cache. Either way this module is the sbatch
mapping (``batch_script``), the state mapping (``job_state``) and little else: the launcher
protocol, staging and polling are the contract's.

The job's Slurm name is its run id: squeue is asked by name, so a job id that Slurm hands
out again (a cluster whose state was reset) is never taken for an old run, and a job whose
submitter died before recording the id is still found.
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from runctl.backends.base import Backend, Handle, JobState, LaunchSpec, RunFile, Services
from runctl.backends.hostdir import environments_here, live_state, remove_environments_here
from runctl.backends.hostdir import times as times_of
from runctl.backends.localfs import LocalTransport
from runctl.backends.sshlink import SSH_OPTIONS
from runctl.backends.transport import Transport
from runctl.errors import BackendUnreachable, InputError, StartError
from runctl.job import ownership, safefs
from runctl.job import protocol as P
from runctl.job.ownership import abandon_unstarted, launcher_alive, read_status
from runctl.status import RunStatus

# squeue's states -> runctl's, for a job that has not ended (PENDING and the states of a job
# waiting to run again are Queued; a job that Slurm requeues stays the same run).
ACTIVE = {"PENDING": RunStatus.QUEUED, "REQUEUED": RunStatus.QUEUED, "REQUEUE_HOLD": RunStatus.QUEUED,
          "REQUEUE_FED": RunStatus.QUEUED, "RESV_DEL_HOLD": RunStatus.QUEUED, "SPECIAL_EXIT": RunStatus.QUEUED,
          "CONFIGURING": RunStatus.STARTING, "RUNNING": RunStatus.RUNNING, "SUSPENDED": RunStatus.RUNNING,
          "RESIZING": RunStatus.RUNNING, "SIGNALING": RunStatus.RUNNING, "STAGE_OUT": RunStatus.FINALIZING,
          "COMPLETING": RunStatus.FINALIZING}
# Slurm's word for how a job ended, where it says more than the launcher could write.
ENDED_BY_SLURM = {"TIMEOUT": "time limit: the Slurm job reached its --time",
                  "DEADLINE": "the Slurm job reached its --deadline",
                  "OUT_OF_MEMORY": "out of memory: the Slurm job exceeded its memory (--mem)",
                  "NODE_FAIL": "node failure: a node of the Slurm job failed",
                  "BOOT_FAIL": "node failure: a node of the Slurm job failed to boot",
                  "PREEMPTED": "preempted by Slurm (and not requeued)"}
SQUEUE_FORMAT = "%i|%j|%T|%r|%N"
TIME_MARGIN_S = 120  # --time beyond max_run_duration_seconds + grace: the launcher stops the job itself


def job_name(handle: Handle) -> str:
    """The Slurm job's name: the run id (plan: work_dir/<run_id>), or the sweep's for an
    element of a job array."""
    return str(handle.extra.get("job_name") or Path(handle.run_dir).name)


def tasks_per_node(spec: LaunchSpec) -> int:
    d = spec.distributed or {}
    if d.get("process_count_per_node"):
        return int(d["process_count_per_node"])
    if d.get("process_count"):
        return max(1, math.ceil(int(d["process_count"]) / max(1, spec.node_count)))
    return 1


def batch_script(spec: LaunchSpec, run_dir: str, options: dict[str, Any], python: str,
                 array: tuple[str, int | list[int], int | None] | None = None) -> str:
    """The sbatch script for ``spec``: every Slurm directive runctl derives, in one place.
    With ``array`` (name, size or indices, max parallel): one job array whose element i runs
    the run in ``<dirname of run_dir>/<name>_<i>`` (a sweep's children, or a batch of a
    tuning run's: indices 0..size-1, or the ones listed)."""
    q = shlex.quote
    nodes, per_node = max(1, spec.node_count), tasks_per_node(spec)
    res = spec.resources or {}
    if array is None:
        name, where, out = spec.run_id, q(run_dir), q(run_dir + "/" + P.LOGS_DIR + "/slurm-%j.txt")
        head = []
    else:
        name, size, at_once = array
        base = run_dir.rsplit("/", 1)[0]
        where, out = q(base), q(f"{base}/{name}_%a/{P.LOGS_DIR}/slurm-%A_%a.txt")
        indices = f"0-{size - 1}" if isinstance(size, int) else ",".join(str(i) for i in size)
        head = [f"#SBATCH --array={indices}" + (f"%{at_once}" if at_once else "")]
        run_dir = f"{base}/{name}_"
    lines = ["#!/bin/sh", f"#SBATCH --job-name={q(name)}", f"#SBATCH --chdir={where}", f"#SBATCH --output={out}",
             "#SBATCH --open-mode=append", *head, f"#SBATCH --nodes={nodes}", f"#SBATCH --ntasks-per-node={per_node}"]
    if res.get("cpus"):
        lines.append(f"#SBATCH --cpus-per-task={max(1, math.ceil(float(res['cpus']) / per_node))}")
    if res.get("memory"):
        lines.append(f"#SBATCH --mem={max(1, math.ceil(int(res['memory']) / 2**20))}M")
    gpus = res.get("gpus")
    gpus = len(gpus) if isinstance(gpus, list) else int(gpus or options.get("gpus_per_run", 0))
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}" if options.get("gpu_request") == "gres"
                     else f"#SBATCH --gpus-per-node={gpus}")
    if spec.timeout_s:
        minutes = math.ceil((spec.timeout_s + spec.grace_s + TIME_MARGIN_S) / 60)
        lines.append(f"#SBATCH --time={minutes}")
    for key in ("partition", "account", "qos"):
        if options.get(key):
            lines.append(f"#SBATCH --{key}={q(str(options[key]))}")
    for extra in options.get("sbatch_options") or []:
        lines.append(f"#SBATCH {extra}")
    lines += ["", "umask 077  # the run's files are private to its user (logs can hold secrets)"]
    if array is not None:  # this element's run: the common prefix, then the element's index
        lines.append(f'RUNCTL_ARRAY_RUN_DIR={q(run_dir)}"$SLURM_ARRAY_TASK_ID"')
    if nodes * per_node > 1:  # the launcher runs once; srun starts one task shim per process
        mpi = ["--mpi"] if (spec.distributed or {}).get("type") == "mpi" else []
        launch = ["srun", "--kill-on-bad-exit=1", "--ntasks-per-node", str(per_node), python,
                  f"{run_dir if array is None else '$RUNCTL_ARRAY_RUN_DIR'}/{P.LIB_DIR}/runctl_task.py", *mpi, "--"]
        if array is None:
            lines.append(f"{P.TASK_LAUNCH}={q(_json(launch))}; export {P.TASK_LAUNCH}")
        else:  # the shim's path depends on the element: JSON built by the shell, quoted by python
            lines.append(f'{P.TASK_LAUNCH}=$({q(python)} -c {q(_ARRAY_JSON)} {" ".join(q(a) for a in launch[:5])} '
                         f'"$RUNCTL_ARRAY_RUN_DIR/{P.LIB_DIR}/runctl_task.py" {" ".join(q(a) for a in launch[6:])}); '
                         f'export {P.TASK_LAUNCH}')
    if options.get("metrics_ranks") == "all":
        lines.append(f"{P.METRICS_RANKS}=all; export {P.METRICS_RANKS}")
    if array is None:
        lines.append(f"exec {q(python)} {q(run_dir + '/' + P.LAUNCHER_FILE)} {q(run_dir)}")
    else:
        lines.append(f'exec {q(python)} "$RUNCTL_ARRAY_RUN_DIR/{P.LAUNCHER_FILE}" "$RUNCTL_ARRAY_RUN_DIR"')
    return "\n".join(lines) + "\n"


_ARRAY_JSON = "import json, sys; print(json.dumps(sys.argv[1:]))"


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


IN_SERVICE = ("idle", "mixed", "allocated", "completing")  # sinfo %T of nodes that take jobs now


def job_state(slurm: tuple[str, str] | None, st: dict[str, Any], cancel: bool, pending: bool) -> JobState:
    """The ONE mapping to a run's state: the Slurm job's (state, reason) as squeue or sacct
    last saw it (None: Slurm no longer knows the job), and the launcher's status.json, which
    is the truth for how the job itself ended."""
    times = times_of(st)
    state, reason = slurm or ("", "")
    state = state.split()[0].rstrip("+") if state else ""  # sacct: "CANCELLED by 0"
    if state in ENDED_BY_SLURM and not (st.get("reason") == P.EXIT and st.get("exit_code") == 0):
        return JobState(RunStatus.FAILED, exit_code=st.get("exit_code"), error=ENDED_BY_SLURM[state], **times)
    if st.get("state") == P.FINISHED:
        status, code, error = P.final_outcome(st, cancel)
        return JobState(RunStatus(status), exit_code=code, error=error, **times)
    if state in ACTIVE:
        status = ACTIVE[state]
        if status == RunStatus.RUNNING:  # the allocation runs: the launcher's word, as on every backend
            return live_state(st, True, cancel)
        if cancel and not status.is_terminal:
            status = RunStatus.CANCEL_REQUESTED
        return JobState(status, error=f"Slurm: {reason}" if status == RunStatus.QUEUED and reason not in
                        ("", "None") else None, **times)
    if state == "CANCELLED":
        if cancel:
            return JobState(RunStatus.CANCELED, error="canceled" if st else "canceled before it started", **times)
        return JobState(RunStatus.FAILED, error="the Slurm job was cancelled outside runctl (scancel, an "
                                                "administrator)", **times)
    if pending and not state:
        return JobState(RunStatus.FAILED, error=P.ABANDONED_ERROR, **times)
    what = f"ended ({state})" if state else "is gone from the queue"
    return JobState(RunStatus.FAILED, error=f"the Slurm job {what} without the launcher recording the end "
                                            f"(see logs/slurm-*.txt and .runctl/launcher.log)", **times)


class _Here:
    """Local mode: commands on this machine, RUN_DIR on a filesystem the nodes share."""

    def __init__(self, backend: SlurmBackend) -> None:
        self.backend = backend
        self.work_dir = str(Path(os.path.expanduser(backend.options.get("work_dir") or
                                                    backend.services.work_root)).absolute())

    def run(self, argv: list[str], env: dict[str, str] | None = None, stdin: bytes = b"") -> tuple[int, str, str]:
        try:
            p = subprocess.run(argv, input=stdin, capture_output=True, timeout=self.backend.command_timeout_s,
                               env={**os.environ, **(env or {})})
        except FileNotFoundError:
            raise InputError(f"{argv[0]}: not found on this machine; install Slurm's client commands, set the "
                             f"target's slurm_bin, or give a login node (login: HOST)") from None
        except subprocess.TimeoutExpired:
            raise BackendUnreachable(f"{argv[0]} did not answer in {self.backend.command_timeout_s:g} s") from None
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def transport(self) -> Transport:
        return LocalTransport(self.backend.services.objects)

    def make_logs_dir(self, run_dir: str) -> None:
        os.makedirs(os.path.join(run_dir, P.LOGS_DIR), mode=0o700, exist_ok=True)

    def read(self, run_dir: str, rel: str, offset: int, max_bytes: int) -> bytes:
        return safefs.read_file(run_dir, rel, offset, max_bytes)

    def list_files(self, run_dir: str, reldir: str) -> list[RunFile]:
        return [RunFile(*entry) for entry in safefs.walk(run_dir, reldir)]

    def move_file(self, run_dir: str, rel: str, dest: Path) -> bool:
        return safefs.move_out(run_dir, rel, str(dest))

    def statuses(self, run_dirs: list[str], pending: set[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for run_dir in run_dirs:
            st = read_status(run_dir)
            if not st and run_dir in pending and not launcher_alive(run_dir):
                st = abandon_unstarted(run_dir) or read_status(run_dir)
            out[run_dir] = {"status": st, "cancel": safefs.exists(run_dir, P.CANCEL_MARKER)}
        return out

    def mark_cancel(self, run_dir: str) -> None:
        ownership.mark_cancel(run_dir)

    def remove(self, run_dir: str) -> None:
        safefs.remove_tree(run_dir)

    def close(self) -> None:
        pass


class _Login:
    """Remote mode: everything through runctl's agent on the login node."""

    def __init__(self, backend: SlurmBackend) -> None:
        from runctl.backends.sshlink import HostLink

        self.link = HostLink(backend.options["login"], {**backend.options,
                                                        "work_dir": backend.options.get("work_dir", "~/.runctl")})

    @property
    def work_dir(self) -> str:
        return self.link.work_dir

    def run(self, argv: list[str], env: dict[str, str] | None = None, stdin: bytes = b"") -> tuple[int, str, str]:
        answer = self.link.agent({"op": "run", "argv": argv, "env": env or {}, "stdin": stdin.decode()})
        if answer.get("missing"):
            raise InputError(f"{self.link.alias}: {argv[0]}: not found on the login node; set the target's "
                             f"slurm_bin to where Slurm's commands are")
        return answer["rc"], answer["out"], answer["err"]

    def transport(self) -> Transport:
        from runctl.backends.sshlink import SSHTransport

        return SSHTransport(self.link)

    def make_logs_dir(self, run_dir: str) -> None:
        self.link.mkdirs(f"{run_dir}/{P.LOGS_DIR}")

    def read(self, run_dir: str, rel: str, offset: int, max_bytes: int) -> bytes:
        return self.link.read(run_dir, rel, offset, max_bytes)

    def list_files(self, run_dir: str, reldir: str) -> list[RunFile]:
        return self.link.list_files(run_dir, reldir)

    def move_file(self, run_dir: str, rel: str, dest: Path) -> bool:
        return False

    def statuses(self, run_dirs: list[str], pending: set[str]) -> dict[str, dict[str, Any]]:
        return self.link.statuses(run_dirs, pending)["runs"]  # type: ignore[no-any-return]

    def mark_cancel(self, run_dir: str) -> None:
        self.link.agent({"op": "mark_cancel", "run_dir": run_dir})

    def remove(self, run_dir: str) -> None:
        self.link.agent({"op": "remove", "run_dir": run_dir})

    def close(self) -> None:
        self.link.close()


class SlurmBackend(Backend):
    name = "slurm"
    max_nodes = 1 << 16
    poll_interval_s = 0.5  # one squeue per poll for all of a target's runs, however many: gentle on slurmctld
    supports_arrays = True
    options_schema: ClassVar[dict[str, Any]] = {
        **Backend.options_schema,
        "login": {"type": "string", "minLength": 1, "description": "ssh alias of a login node; omit to run "
                                                                    "sbatch on this machine"},
        "work_dir": {"type": "string", "minLength": 1, "description": "on a filesystem the nodes share"},
        "python": {"type": "string", "minLength": 1, "description": "Python on the nodes (default python3)"},
        "partition": {"type": "string", "minLength": 1},
        "account": {"type": "string", "minLength": 1},
        "qos": {"type": "string", "minLength": 1},
        "gpu_request": {"enum": ["gpus-per-node", "gres"], "description": "how GPUs are asked for"},
        "gpus_per_run": {"type": "integer", "minimum": 0},
        "sbatch_options": {"type": "array", "items": {"type": "string", "pattern": "^--?[A-Za-z][^\\n\\r]*$"},
                           "description": "more #SBATCH lines, e.g. --constraint=a100"},
        "metrics_ranks": {"enum": ["0", "all"], "description": "whose run.log() reaches the run (default rank 0)"},
        "slurm_bin": {"type": "string", "minLength": 1, "description": "directory of sbatch, squeue, scancel"},
        "slurm_conf": {"type": "string", "minLength": 1,
                       "description": "the cluster's slurm.conf, where it is not the default (SLURM_CONF for every command)"},
        "keep_run_dirs": {"enum": ["failed", "all", "none"]},
        **SSH_OPTIONS,  # with login: how to reach it, as for ssh targets (command_timeout_s: for every command)
    }

    def __init__(self, target: str, options: dict[str, Any], services: Services) -> None:
        super().__init__(target, options, services)
        self.python = options.get("python", "python3")
        self.command_timeout_s = float(options.get("command_timeout_s", 60))
        self.site: _Here | _Login = _Login(self) if options.get("login") else _Here(self)

    # -- commands ------------------------------------------------------------------------------
    def _cmd(self, name: str) -> str:
        return f"{self.options['slurm_bin'].rstrip('/')}/{name}" if self.options.get("slurm_bin") else name

    def slurm(self, name: str, *args: str, env: dict[str, str] | None = None, stdin: bytes = b"",
              check: bool = True) -> tuple[int, str, str]:
        if self.options.get("slurm_conf"):  # (sbatch passes it on to the job, so srun there finds it too)
            env = {**(env or {}), "SLURM_CONF": self.options["slurm_conf"]}
        rc, out, err = self.site.run([self._cmd(name), *args], env, stdin)
        if check and rc != 0:
            text = (err or out).strip()
            if any(s in text for s in ("Unable to contact slurm controller", "Socket timed out",
                                       "Connection refused", "Zero Bytes were transmitted")):
                raise BackendUnreachable(f"{name}: Slurm's controller does not answer: {text[-300:]}")
            raise StartError(f"{name} failed (exit {rc}): {text[-500:]}")
        return rc, out, err

    # -- the contract ----------------------------------------------------------------------------
    def default_interpreter(self) -> str:
        return self.python

    def trust_hosts(self) -> list[str] | None:
        """The login node's key (local mode connects to nothing)."""
        if not isinstance(self.site, _Login):
            return None
        from runctl.backends.sshlink import trust_host

        return [f"{self.site.link.alias}: {trust_host(self.site.link.settings)}"]

    def check_job(self, spec: LaunchSpec) -> None:
        """sbatch --test-only with the very directives of the run: a partition, account,
        GPU count or time the cluster refuses is bad input, before any run exists."""
        script = batch_script(spec, f"{self.site.work_dir}/check", self.options, self.python)
        rc, out, err = self.slurm("sbatch", "--test-only", stdin=script.encode(), check=False)
        text = (err + out).strip()
        if rc != 0:
            if "controller" in text or "timed out" in text:
                raise BackendUnreachable(f"sbatch: Slurm's controller does not answer: {text[-300:]}")
            if "not available" in text and self._nodes_out_of_service():
                return  # "not available now" (drained, down nodes): plain sbatch queues it, so the run waits Queued
            raise InputError(f"target {self.target!r}: Slurm refuses this job: {text[-500:]}; change the job's "
                             f"resources, node_count or max_run_duration_seconds, or the target's partition/"
                             f"account/qos")

    def _nodes_out_of_service(self) -> bool:
        """Is a node of the job's partition out of service now (drained, down, not responding)?
        Then --test-only's "not available" may mean "not now" rather than "never"."""
        rc, out, _ = self.slurm("sinfo", "-h", "-o", "%P|%T", check=False)
        wanted = self.options.get("partition")
        for line in out.splitlines() if rc == 0 else []:
            part, _, state = line.strip().partition("|")
            if (part.rstrip("*") == wanted) if wanted else part.endswith("*"):
                if state not in IN_SERVICE:
                    return True
        return False

    def plan(self, spec: LaunchSpec) -> Handle:
        return Handle(self.name, "", f"{self.site.work_dir}/{spec.run_id}", host=self.options.get("login"))

    def transport(self, handle: Handle) -> Transport:
        return self.site.transport()

    def submit(self, spec: LaunchSpec, handle: Handle) -> Handle:
        script = batch_script(spec, handle.run_dir, self.options, self.python)
        self.site.make_logs_dir(handle.run_dir)  # Slurm opens its output file there before the launcher runs
        # Secrets reach the job through sbatch's environment (exported to the job), never a file
        # runctl writes or a command line.
        _, out, _ = self.slurm("sbatch", "--parsable", env=dict(spec.secret_env), stdin=script.encode())
        job_id = out.strip().split(";")[0]
        if not job_id:
            raise StartError(f"sbatch gave no job id: {out!r}")
        return Handle(self.name, job_id, handle.run_dir, host=handle.host, extra={"job_name": spec.run_id})

    def submit_array(self, runs: list[tuple[LaunchSpec, Handle]], max_parallel: int | None) -> list[Handle]:
        """A sweep's runs (staged, in ``work_dir/<sweep id>_<i>``) as ONE Slurm job array whose
        element indices are the runs' own ``i`` (a tuning run's later batches start past 0)."""
        spec, first = runs[0]
        name = spec.run_id.rsplit("_", 1)[0]
        indices = [int(s.run_id.rsplit("_", 1)[1]) for s, _ in runs]
        size: int | list[int] = len(runs) if indices == list(range(len(runs))) else indices
        script = batch_script(spec, first.run_dir, self.options, self.python, array=(name, size, max_parallel))
        for _, handle in runs:
            self.site.make_logs_dir(handle.run_dir)
        _, out, _ = self.slurm("sbatch", "--parsable", env=dict(spec.secret_env), stdin=script.encode())
        job_id = out.strip().split(";")[0]
        if not job_id:
            raise StartError(f"sbatch gave no job id: {out!r}")
        return [Handle(self.name, f"{job_id}_{i}", handle.run_dir, host=handle.host, extra={"job_name": name})
                for i, (_, handle) in zip(indices, runs)]

    def status(self, handle: Handle) -> JobState:
        return self.status_many([handle])[0]

    def status_many(self, handles: list[Handle]) -> list[JobState]:
        """ONE squeue for all the runs (by job name = run id), one read of their status.json
        (one agent request in remote mode), and one sacct only for runs that left the queue
        without a final status.json (skipped where accounting is off)."""
        if not handles:
            return []
        names = sorted({job_name(h) for h in handles})
        _, out, _ = self.slurm("squeue", "--noheader", "--array", "--states=all", f"--name={','.join(names)}",
                               f"--format={SQUEUE_FORMAT}")
        queue: dict[str, list[tuple[str, str, str]]] = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) >= 4:
                queue.setdefault(parts[1], []).append((parts[0], parts[2], parts[3]))
        # A run recorded before sbatch whose submitter died: adopted if Slurm has its job, else
        # recorded as never run (so that no launcher can start it later).
        unsubmitted = {h.run_dir for h in handles if h.pending and job_name(h) not in queue}
        dirs = self.site.statuses([h.run_dir for h in handles], unsubmitted)
        seen: dict[str, tuple[str, str] | None] = {}
        for h in handles:
            jobs = queue.get(job_name(h), [])
            mine = [j for j in jobs if not h.native_id or j[0] == h.native_id]
            if not mine and "_" not in h.native_id:
                mine = jobs  # this run's own name, under another id: its id was handed out again
            seen[h.run_dir] = (mine[-1][1], mine[-1][2]) if mine else None
        gone = [h for h in handles if seen[h.run_dir] is None and h.native_id
                and (dirs.get(h.run_dir, {}).get("status") or {}).get("state") != P.FINISHED]
        if gone:
            seen.update(self._accounting(gone))
        return [job_state(seen[h.run_dir], (dirs.get(h.run_dir) or {}).get("status") or {},
                          bool((dirs.get(h.run_dir) or {}).get("cancel")), h.run_dir in unsubmitted)
                for h in handles]

    def _accounting(self, handles: list[Handle]) -> dict[str, tuple[str, str]]:
        """sacct's word on jobs squeue forgot (after MinJobAge); nothing where accounting is off."""
        rc, out, _ = self.slurm("sacct", "--noheader", "--parsable2", "--allocations",
                                f"--jobs={','.join(h.native_id for h in handles)}",
                                "--format=JobID,JobName,State,Reason", check=False)
        if rc != 0:
            return {}
        found = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) >= 3:
                found[(parts[0], parts[1])] = (parts[2], parts[3] if len(parts) > 3 else "")
        return {h.run_dir: found[(h.native_id, job_name(h))] for h in handles if (h.native_id, job_name(h)) in found}

    def read(self, handle: Handle, relpath: str, offset: int, max_bytes: int) -> bytes:
        return self.site.read(handle.run_dir, relpath, offset, max_bytes)

    def list_files(self, handle: Handle, reldir: str) -> list[RunFile]:
        return self.site.list_files(handle.run_dir, reldir)

    def move_file(self, handle: Handle, relpath: str, dest: Path) -> bool:
        return self.site.move_file(handle.run_dir, relpath, dest)

    def cancel(self, handle: Handle) -> None:
        """The cancel marker, then: a pending job is removed from the queue; a running one
        gets SIGTERM in its batch step (the launcher, which stops the job gracefully and
        records it); ``status`` kills it outright if it outlives the grace period."""
        self.site.mark_cancel(handle.run_dir)
        which = [handle.native_id] if handle.native_id else [f"--name={job_name(handle)}"]
        self.slurm("scancel", "--state=PENDING", *which, check=False)
        self.slurm("scancel", "--batch", "--signal=TERM", "--state=RUNNING", *which, check=False)

    def release(self, handle: Handle, state: JobState) -> None:
        keep = self.options.get("keep_run_dirs", "failed")
        if keep == "all" or (keep == "failed" and state.status == RunStatus.FAILED):
            return
        self.site.remove(handle.run_dir)

    def environments(self) -> list[dict[str, Any]] | None:
        """Built where the batch step runs: on the shared filesystem (HOME), seen from here or
        from the login node."""
        if isinstance(self.site, _Login):
            return self.site.link.environments(self.options.get("env_root"))
        return environments_here(self.options.get("env_root"))

    def remove_environments(self, key: str | None, older_than_s: float | None = None,
                            dry_run: bool = False) -> list[tuple[str, int]]:
        if isinstance(self.site, _Login):
            return self.site.link.remove_environments(self.options.get("env_root"), key, older_than_s, dry_run)
        return remove_environments_here(self.options.get("env_root"), key, older_than_s, dry_run)

    def gc(self, finished: list[Handle], older_than_s: float, dry_run: bool) -> list[tuple[str, int]]:
        """Through the login node: its object cache, ready copy, and the finished runs' dirs.
        (Local mode stages from this machine's object cache: nothing more to collect here.)"""
        if isinstance(self.site, _Login):
            return self.site.link.gc([h.run_dir for h in finished], older_than_s, dry_run)
        return []

    def check(self) -> list[str]:
        """The controller answers; partitions with CPUs, GPUs and idle nodes; the account."""
        _, out, _ = self.slurm("sinfo", "--noheader", "--format=%P|%a|%D|%C|%G|%t")
        lines = [f"slurm: {'login node ' + self.options['login'] if self.options.get('login') else 'this machine'}, "
                 f"work_dir {self.site.work_dir}"]
        for line in out.splitlines():
            part, avail, nodes, cpus, gres, state = (line.split("|") + [""] * 6)[:6]
            alloc, idle, _other, total = (cpus.split("/") + ["?"] * 4)[:4]
            lines.append(f"  partition {part}: {avail}, {nodes} node(s) {state}, CPUs {idle} idle of {total}, "
                         f"GPUs {gres if gres not in ('', '(null)') else 'none'}")
        if self.options.get("account"):
            rc, out, err = self.slurm("sacctmgr", "--noheader", "--parsable2", "show", "assoc",
                                      f"account={self.options['account']}", "format=Account", check=False)
            if rc != 0:
                lines.append(f"  account {self.options['account']}: not checked (no accounting: {err.strip()[:120]})")
            elif not out.strip():
                raise InputError(f"account {self.options['account']!r} is not known to Slurm; fix the target's account")
            else:
                lines.append(f"  account {self.options['account']}: valid")
        return lines

    def close(self) -> None:
        self.site.close()
