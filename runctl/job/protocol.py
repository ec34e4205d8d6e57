"""The launcher protocol: what runctl, the launcher and the job agree on. Stdlib only, Python >= 3.8.

It ships to the compute side as RUN_DIR/.runctl/lib/runctl_protocol.py, so the launcher
and the run-context client import the very same table that core and every backend
import here as ``runctl.job.protocol``. No name, state or path below is written anywhere else.
"""

import os

# -- RUN_DIR layout ----------------------------------------------------------------------
CODE_DIR = "code"
OUTPUTS_DIR = "outputs"
LOGS_DIR = "logs"
EVENTS_FILE = "events.jsonl"
STATUS_FILE = "status.json"
LOG_FILE = LOGS_DIR + "/std_log.txt"
CONTROL_DIR = ".runctl"
SPEC_FILE = CONTROL_DIR + "/spec.json"
LAUNCHER_FILE = CONTROL_DIR + "/launcher.py"
LAUNCHER_LOG = CONTROL_DIR + "/launcher.log"
LOCK_FILE = CONTROL_DIR + "/launcher.lock"  # held by the launcher for its whole life
CANCEL_MARKER = CONTROL_DIR + "/cancel-requested"  # runctl asked for the stop (else it came from outside)
LIB_DIR = CONTROL_DIR + "/lib"  # on the job's PYTHONPATH: runctl_context/, runctl_protocol.py, sitecustomize.py
SHIM_DIR = CONTROL_DIR + "/shim"  # azureml/ for jobs without the real SDK

# -- object caches (the store's objects/, an SSH host's work_dir/.objects) -----------------
def object_relpath(digest, prefix=""):
    """Where object ``digest`` (sha256 hex) lives under a cache: two characters of fan-out,
    then the rest of the name (``prefix`` before it: ".part." for an upload in progress)."""
    return "%s/%s%s" % (digest[:2], prefix, digest[2:])


# -- the environment the job sees (submitit's JobEnvironment idea: one table) ------------
RUN_ID = "RUNCTL_RUN_ID"
RUN_DIR = "RUNCTL_RUN_DIR"
EXPERIMENT = "RUNCTL_EXPERIMENT"
RUN_NUMBER = "RUNCTL_RUN_NUMBER"
OUTPUTS = "RUNCTL_OUTPUTS_DIR"
SHIM = "RUNCTL_SHIM_DIR"
FLUSH_INTERVAL = "RUNCTL_FLUSH_INTERVAL_S"
OFFLINE = "RUNCTL_OFFLINE"
PORTAL = "RUNCTL_UI_URL"  # the portal's address (`runctl ui`), for run.get_portal_url() in the job

# Jobs of several processes (the Slurm backend): the launcher starts the job through
# TASK_LAUNCH (a JSON list put before the job's argv: srun and the task shim), and the task
# shim (LIB_DIR/runctl_task.py) gives each process its rank variables.
TASK_LAUNCH = "RUNCTL_TASK_LAUNCH"
TASK_RANK = "RUNCTL_TASK_RANK"  # this process's rank; the Run API logs metrics from rank 0 only...
METRICS_RANKS = "RUNCTL_METRICS_RANKS"  # ...unless this is "all"

JOB_ENVIRONMENT = {
    RUN_ID: "the run's id",
    RUN_DIR: "absolute path of RUN_DIR as the job sees it (it also tags the run's processes)",
    EXPERIMENT: "the experiment's name",
    RUN_NUMBER: "the run's number within its experiment (set by core in the spec's env)",
    OUTPUTS: "RUN_DIR/outputs: files written here become the run's outputs",
    SHIM: "RUN_DIR/.runctl/shim: the azureml shim (sitecustomize adds it when azureml is absent)",
    FLUSH_INTERVAL: "seconds between the event writer's flushes (default 0.5)",
    PORTAL: "the portal's address when the run was submitted (run.get_portal_url())",
    "PYTHONPATH": "RUN_DIR/.runctl/lib first, then the job's own",
    "PYTHONUNBUFFERED": "1 unless the job sets it",
    TASK_RANK: "in a job of several processes, the process's rank (with RANK, LOCAL_RANK, WORLD_SIZE, "
               "NODE_RANK, MASTER_ADDR, MASTER_PORT and Azure ML's AZ_BATCH_* names)",
    METRICS_RANKS: "'all': every rank's run.log() reaches the run (default: rank 0's only)",
}


def logs_metrics(environ):
    """Does this process's Run API write metrics? Every process of a one-process job; in a
    job of several, rank 0 (or every rank with METRICS_RANKS=all)."""
    return environ.get(TASK_RANK, "0") == "0" or environ.get(METRICS_RANKS) == "all"


def job_environment(run_dir, spec, base):
    """The job's environment: ``base`` (the launcher's own), the spec's env, then the table above."""
    env = dict(base)
    env.update({k: str(v) for k, v in spec.get("env", {}).items()})
    lib = os.path.join(run_dir, LIB_DIR)
    env["PYTHONPATH"] = lib + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[RUN_ID] = spec["run_id"]
    env[RUN_DIR] = run_dir
    env[EXPERIMENT] = spec.get("experiment", "")
    env[OUTPUTS] = os.path.join(run_dir, OUTPUTS_DIR)
    env[SHIM] = os.path.join(run_dir, SHIM_DIR)
    env["PYTHONUNBUFFERED"] = env.get("PYTHONUNBUFFERED", "1")
    env.pop(TASK_LAUNCH, None)
    return env


# -- status.json ----------------------------------------------------------------------------
# Fields: state, reason, host, launcher_pid, launcher_start_ticks, pid, pgid, start_time,
# end_time, exit_code, signal, error, warning.
STARTING, RUNNING, STOPPING, FINISHED = "starting", "running", "stopping", "finished"
PREPARING = "preparing"  # building the job's Python environment (pyenv.py), before the job starts
EXIT, CANCELED, TIMEOUT, START_FAILED, LAUNCHER_ERROR, ABANDONED = (
    "exit", "canceled", "timeout", "start_failed", "launcher_error", "abandoned")
ENVIRONMENT_FAILED = "environment_failed"  # the environment could not be built: the job never ran
ENVIRONMENT_FAILED_EXIT = 3  # (runctl's "could not start")
ENV_LOG_FILE = LOGS_DIR + "/environment.txt"  # the environment build's output
ABANDONED_ERROR = "runctl submit was interrupted before the job started; the job never ran (submit it again)"

# Run statuses as strings (runctl.status.RunStatus values; this module cannot import it).
COMPLETED_STATUS, FAILED_STATUS, CANCELED_STATUS = "Completed", "Failed", "Canceled"
STOPPED_OUTSIDE_ERROR = "stopped by a signal from outside runctl (e.g. docker stop, a daemon restart, kill)"


def final_outcome(st, cancel_requested):
    """The one mapping from a finished status.json to (run status, exit code, error).

    A stop that runctl did not ask for (``docker stop``, a daemon restart, a stray kill)
    is a failure, not a cancel: ``cancel_requested`` says whether the cancel marker exists."""
    reason, code = st.get("reason"), st.get("exit_code")
    if reason == ABANDONED:
        if cancel_requested:
            return CANCELED_STATUS, None, "canceled before it started"
        return FAILED_STATUS, None, str(st.get("error") or ABANDONED_ERROR)
    if reason == CANCELED:
        if cancel_requested:
            return CANCELED_STATUS, code, "canceled"
        return FAILED_STATUS, code, STOPPED_OUTSIDE_ERROR
    if reason == TIMEOUT:
        return FAILED_STATUS, 124, "stopped after max_run_duration_seconds"
    if reason == EXIT and code == 0:
        return COMPLETED_STATUS, 0, None
    error = st.get("error") or ("killed by signal %s" % st["signal"] if st.get("signal") else "exit code %s" % code)
    return FAILED_STATUS, code, str(error)


# What each status.json field may hold. The file is the job's to change (a hostile or broken
# job can write anything there), so every reader passes it through ``checked_status``.
_INT_FIELDS = {"launcher_pid": (1, 1 << 31), "pid": (1, 1 << 31), "pgid": (1, 1 << 31),
               "launcher_start_ticks": (0, 1 << 62), "exit_code": (-(1 << 31), 1 << 31), "signal": (1, 128)}
_TIME_FIELDS = ("start_time", "end_time")
_TEXT_FIELDS = {"host": 255, "error": 4000, "warning": 4000}
MAX_TIME_S = 1e11  # year 5138: a later time is not a time the launcher wrote


def checked_status(st):
    """status.json as read (a dict) -> the same with every field of the wrong type or out of
    range dropped; what was dropped is said in its ``warning``. Never raises."""
    if not isinstance(st, dict):
        return {}
    out, dropped = {}, []
    for key, value in st.items():
        if key in _INT_FIELDS:
            lo, hi = _INT_FIELDS[key]
            ok = value is None or (type(value) is int and lo <= value < hi)
        elif key in _TIME_FIELDS:
            ok = value is None or (type(value) in (int, float) and 0 <= value < MAX_TIME_S)
        elif key in _TEXT_FIELDS:
            ok = value is None or isinstance(value, str)
            if ok and value is not None and len(value) > _TEXT_FIELDS[key]:
                value = value[:_TEXT_FIELDS[key]] + "..."
        elif key == "state":
            ok = value in (STARTING, PREPARING, RUNNING, STOPPING, FINISHED)
        elif key == "reason":
            ok = value is None or value in (EXIT, CANCELED, TIMEOUT, START_FAILED, LAUNCHER_ERROR, ABANDONED,
                                            ENVIRONMENT_FAILED)
        else:
            continue  # a field this version does not know: ignored
        if ok:
            out[key] = value
        else:
            dropped.append(key)
    if dropped:
        note = "status.json had unusable values (%s), ignored" % ", ".join(sorted(dropped))
        out["warning"] = "%s; %s" % (out["warning"], note) if out.get("warning") else note
    return out
