"""Operations on existing runs: refresh, wait, follow logs, cancel, metrics, outputs."""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable

from runctl.errors import BackendUnreachable, ConfigError, ExitCode, NotFinished, RunctlError
from runctl.job import protocol
from runctl.ops.session import Session
from runctl.ops.sync import store_log_path, sync_run
from runctl.status import RunStatus
from runctl.store.sqlite import RunRecord

POLL_MIN_S = 0.05
POLL_MAX_S = 2.0


def refresh(session: Session, record: RunRecord, blocking: bool = False,
            after_logs: Callable[[], None] | None = None) -> RunRecord:
    """Sync an unfinished run from its backend; a finished, synced run is returned as is."""
    if record.synced or session.store.full:
        return record  # a store on a full disk shows what it holds; sync resumes once there is room
    if record.kind == "sweep":
        return refresh_parent(session, record)
    if record.kind == "hyperdrive":  # its controller keeps it; one killed is restarted here
        from runctl.ops import detached

        detached.ensure(session, record)
        return session.store.get(record.id)
    if record.handle is None:
        return _reconcile_in_process_run(session, record)
    if not record.handle.get("native_id") and not _submitter_gone(record):
        return record  # `runctl submit` is still handing it to its backend
    return sync_run(session.store, session.backend_for(record), record, blocking=blocking, after_logs=after_logs,
                    outputs_max_bytes=int(session.ws.outputs_max_mb * 2**20))


def _submitter_gone(record: RunRecord) -> bool:
    from runctl.job.launcher import process_gone  # (launcher.py imports subprocess, threading: only when needed)

    spec = record.spec or {}
    return bool(spec.get("handed_over")) or process_gone(spec.get("submitter"))


def _reconcile_in_process_run(session: Session, record: RunRecord) -> RunRecord:
    """A run with no backend handle whose owner process is gone is marked Failed: an
    interactive run whose Python exited without complete(), or a submitted run whose
    `runctl submit` was killed before the backend had it."""
    from runctl.job.launcher import process_gone
    if record.status.is_terminal:
        return record
    interactive = record.kind in ("interactive", "offline")
    owner = record.spec if interactive else (record.spec or {}).get("submitter")
    if not process_gone(owner):
        return record
    if record.parent_id and session.store.get(record.parent_id).kind == "hyperdrive":
        return record  # a tuning run's controller starts what its killed predecessor recorded
    pid = (owner or {}).get("pid")
    error = (f"the process that started it (pid {pid}) exited without run.complete()" if interactive else
             f"runctl submit (pid {pid}) was interrupted before the run was handed to its backend; the job never "
             f"ran (submit it again)")
    session.store.update(record.id, status=RunStatus.FAILED, ended_at=time.time(), synced=True, error=error)
    return session.store.get(record.id)


def refresh_many(session: Session, records: list[RunRecord],
                 on_error: Callable[[str, RunctlError], None] | None = None) -> list[RunRecord]:
    """``refresh`` for many runs with ONE status call per backend (``status_many``). With
    ``on_error``, a backend that cannot be asked (unreachable, no longer configured) is
    reported once and its runs are returned as stored."""
    out = list(records)
    by_target: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if not r.synced and r.handle is not None and not session.store.full and (
                r.handle.get("native_id") or _submitter_gone(r)):
            by_target.setdefault(r.compute_target or "local", []).append(i)
        else:
            out[i] = refresh(session, r)
    if by_target:
        from runctl.backends.base import Handle
    for target, idx in by_target.items():
        try:
            backend = session.backend(target)
            states = backend.status_many([Handle.from_dict(records[i].handle or {}) for i in idx])
        except (BackendUnreachable, ConfigError) as e:
            if on_error is None:
                raise
            on_error(target, e)  # the runs it could not ask about keep their last state
            states = getattr(e, "answered", None) or []
        for i, state in zip(idx, states):
            if state is not None:
                out[i] = sync_run(session.store, backend, records[i], state=state,
                                  outputs_max_bytes=int(session.ws.outputs_max_mb * 2**20))
    return out


UNREACHABLE_PATIENCE_S = float(os.environ.get("RUNCTL_UNREACHABLE_PATIENCE_S", "120"))


def _patient(fn: Callable[..., Any]) -> Callable[..., Any]:
    """While waiting, a backend that stops answering (a daemon restart, a dropped link) is
    retried with back-off for a while before the error reaches the user."""
    import tenacity

    def warn(state: tenacity.RetryCallState) -> None:
        if state.attempt_number == 1 and state.outcome is not None:
            print(f"runctl: {state.outcome.exception()}; retrying for up to {UNREACHABLE_PATIENCE_S:g} s",
                  file=sys.stderr)

    return tenacity.retry(
        retry=tenacity.retry_if_exception_type(BackendUnreachable),
        wait=tenacity.wait_exponential(multiplier=0.5, max=10),
        stop=tenacity.stop_after_delay(UNREACHABLE_PATIENCE_S),
        before_sleep=warn,
        reraise=True,
    )(fn)


FAST_POLL_FOR_S = 3.0


def _poll_delays(minimum_s: float = POLL_MIN_S) -> Any:
    """Every 50 ms (or the backend's minimum) for the first seconds, so short jobs end
    promptly, then backing off to 2 s (or that minimum, if longer)."""
    start = time.monotonic()
    delay = max(POLL_MIN_S, minimum_s)
    while True:
        yield delay
        if time.monotonic() - start > FAST_POLL_FOR_S:
            delay = max(minimum_s, min(POLL_MAX_S, delay * 1.3))


def _min_interval(session: Session, records: list[RunRecord]) -> float:
    targets = {r.compute_target or "local" for r in records if r.handle is not None and not r.synced}
    return max([session.backend(t).poll_interval_s for t in targets], default=POLL_MIN_S)


def wait_many(session: Session, records: list[RunRecord], timeout_s: float | None = None) -> list[RunRecord]:
    """Block until every run is finished and synced; one status call per backend per interval."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    patient = _patient(refresh_many)
    for delay in _poll_delays(_min_interval(session, records)):
        records = patient(session, records)
        if all(r.synced or (r.status.is_terminal and r.handle is None) for r in records):
            return records
        if deadline is not None and time.monotonic() >= deadline:
            left = [r.id for r in records if not r.synced]
            raise NotFinished(f"runs still unfinished after {timeout_s:g} s: {', '.join(left)}")
        time.sleep(delay)
    raise AssertionError("unreachable")


def wait(session: Session, record: RunRecord, timeout_s: float | None = None,
         on_tick: Callable[[RunRecord], None] | None = None) -> RunRecord:
    """Block until the run is finished and fully synced (or ``timeout_s`` passes)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    patient_refresh = _patient(refresh)
    for delay in _poll_delays(_min_interval(session, [record])):
        early = functools.partial(on_tick, record) if on_tick is not None else None
        record = patient_refresh(session, record, blocking=True, after_logs=early)
        if on_tick is not None:
            on_tick(record)
        if record.synced or (record.status.is_terminal and record.handle is None):
            return record
        if deadline is not None and time.monotonic() >= deadline:
            raise NotFinished(f"run {record.id} is still {record.status} after {timeout_s:g} s")
        _until_change(session, record, delay)
    raise AssertionError("unreachable")


def _until_change(session: Session, record: RunRecord, delay: float) -> None:
    """Sleep ``delay``, or less if the backend sees the run start, print or end first."""
    from runctl.backends.base import Handle

    if record.handle and record.handle.get("native_id"):
        session.backend_for(record).wait_for_change(Handle.from_dict(record.handle), delay)
    else:
        time.sleep(delay)


FOLLOW_CHUNK_BYTES = 1 << 20


def follow(session: Session, record: RunRecord, out: IO[bytes], name: str = protocol.LOG_FILE) -> RunRecord:
    """Stream a run's log to ``out`` until the run ends; returns the final record."""
    offset = 0

    def emit(r: RunRecord) -> None:
        nonlocal offset
        path = store_log_path(session.store, r.id, name)
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                while data := f.read(FOLLOW_CHUNK_BYTES):  # bounded memory, whatever the job printed
                    out.write(data)
                    offset += len(data)
            out.flush()

    return wait(session, record, on_tick=emit)


def wait_exit_code(record: RunRecord) -> int:
    """The exit code ``runctl wait`` and ``submit --wait`` return for a finished run."""
    if record.status == RunStatus.COMPLETED:
        return ExitCode.OK
    if record.status == RunStatus.CANCELED:
        return ExitCode.CANCELED
    if record.exit_code is not None and record.exit_code != 0:
        return max(1, min(255, record.exit_code))
    return ExitCode.START_FAILED if record.handle is None else ExitCode.ERROR


def cancel(session: Session, record: RunRecord, reason: str | None = None) -> RunRecord:
    """Stop a run. On a finished run the backend's cancel still runs (it is idempotent): the
    processes of a job whose launcher was killed are stopped whatever the record says.
    ``reason`` (an early-termination policy's comparison) is kept as the run's error."""
    from runctl.backends.base import Handle

    if record.kind == "hyperdrive":
        return _cancel_tuning(session, record)
    record = refresh(session, record)
    if record.kind == "sweep":  # every run of the sweep
        for child in session.store.runs(parent_id=record.id):
            cancel(session, child)
        return refresh(session, session.store.get(record.id))
    if record.handle is None:
        if not record.status.is_terminal:
            session.store.update(record.id, status=RunStatus.CANCELED, synced=True, ended_at=time.time(),
                                 error=reason or "canceled before it started")
        return session.store.get(record.id)
    if not record.status.is_terminal:
        session.store.update(record.id, status=RunStatus.CANCEL_REQUESTED,
                             **({"error": reason} if reason else {}))
    session.backend_for(record).cancel(Handle.from_dict(record.handle))
    return refresh(session, session.store.get(record.id))


def _cancel_tuning(session: Session, parent: RunRecord) -> RunRecord:
    """A tuning run: its controller is stopped (one on another machine sees the request and
    stops itself), then every child, then the parent is recorded Canceled."""
    from runctl.ops import detached

    if parent.status.is_terminal:
        return parent
    session.store.update(parent.id, status=RunStatus.CANCEL_REQUESTED)
    detached.stop(session, session.store.get(parent.id))
    for child in session.store.runs(parent_id=parent.id):
        if not child.status.is_terminal:
            cancel(session, child, reason="the tuning run was canceled")
    if not session.store.get(parent.id).status.is_terminal:
        session.store.update(parent.id, status=RunStatus.CANCELED, error="canceled", ended_at=time.time(),
                             synced=True)
        detached.record(session, parent.id, None)
    detached.forget(session, parent.id)
    return session.store.get(parent.id)


def mark_from_outside(session: Session, record: RunRecord, status: RunStatus, error: str | None) -> RunRecord:
    """``run.complete()`` / ``run.fail()`` on a submitted run, from the submitting side (v1):
    the job is stopped if it still runs (its logs and metrics synced up to then), and the
    run recorded with ``status``. A run already finished keeps the state it ended in."""
    record = refresh(session, record)
    if record.status.is_terminal:
        return record
    if record.kind in ("sweep", "hyperdrive"):
        if record.kind == "hyperdrive":
            record = cancel(session, record)  # no more children, then the state asked for
        for child in session.store.runs(parent_id=record.id):
            mark_from_outside(session, child, status, error)
        if record.kind == "sweep":
            return refresh(session, session.store.get(record.id))
        session.store.update(record.id, status=status, error=error, exit_code=0 if status == RunStatus.COMPLETED else 1)
        return session.store.get(record.id)
    if record.handle is not None:
        record = cancel(session, record)
        record = wait(session, record)
    session.store.update(record.id, status=status, error=error, synced=True,
                         exit_code=0 if status == RunStatus.COMPLETED else record.exit_code,
                         ended_at=record.ended_at or time.time())
    return session.store.get(record.id)


def metrics(session: Session, record: RunRecord, name: str | None = None, system: bool = False) -> dict[str, Any]:
    """Azure ML's ``get_metrics()`` shape for one run: what the script logged; with ``system``,
    the launcher's system/* samples instead (a name asked for is given whichever it is)."""
    from runctl.job.context._shape import shape_metrics
    from runctl.job.sysmetrics import is_system

    def keep(n: str) -> bool:
        return is_system(n) == system

    events = (e for e in session.store.metric_events(record.id, name, None if name is not None else keep)
              if e[0] not in ("error",))
    return shape_metrics(events)


def copy_outputs(session: Session, record: RunRecord, dest: Path) -> list[Path]:
    record = refresh(session, record)
    if not record.status.is_terminal:
        raise NotFinished(f"run {record.id} is {record.status}; outputs are collected when it ends "
                          f"(`runctl wait {record.id}` first)")
    src = session.store.run_dir(record.id) / "outputs"
    copied: list[Path] = []
    if not src.is_dir():
        return copied
    for p in sorted(src.rglob("*")):
        if p.is_file():
            target = dest / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)
            copied.append(target)
    return copied


ENVIRONMENT_PROPERTY = "runctl.environment"  # (runctl.job.envrecord.PROPERTY)


def environment_record(props: dict[str, str]) -> dict[str, Any] | None:
    """The run's environment record (runctl/job/envrecord.py), or None when it has none."""
    import json

    try:
        record = json.loads(props[ENVIRONMENT_PROPERTY])
    except (KeyError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def details(session: Session, record: RunRecord) -> dict[str, Any]:
    """Azure ML's ``get_details()`` keys, plus runctl's own."""
    from runctl.ops.portal import portal_url
    from runctl.store.sqlite import _iso

    store = session.store
    props = store.properties(record.id)
    logs_root = store.run_dir(record.id)
    log_files = {p.relative_to(logs_root).as_posix(): str(p) for p in sorted((logs_root / "logs").rglob("*")) if p.is_file()}
    out: dict[str, Any] = {
        "runId": record.id,
        "experiment": record.experiment,
        "number": record.number,
        "displayName": record.display_name,
        "target": record.compute_target,
        "status": record.status.value,
        "startTimeUtc": _iso(record.started_at),
        "endTimeUtc": _iso(record.ended_at),
        "properties": {k: v for k, v in props.items() if k != ENVIRONMENT_PROPERTY},
        "environment_record": environment_record(props),
        "tags": store.tags(record.id),
        "runDefinition": (record.spec or {}).get("job"),
        "logFiles": log_files,
        "exitCode": record.exit_code,
        "host": record.host,
        "snapshotId": record.snapshot_id,
        "portal_url": portal_url(record.id, store.dir),
    }
    if record.error:
        out["error"] = {"message": record.error}
    if record.parent_id:
        out["parentRunId"] = record.parent_id
    if record.kind == "hyperdrive":
        from runctl.ops import detached, trials

        out["hyperdrive"] = (record.spec or {}).get("hyperdrive")
        out["controller"] = detached.where(session, record)
        out["best_run"] = trials.best_run(store, record)
    children = [c.id for c in reversed(store.runs(parent_id=record.id))]
    if children:
        out["children"] = children
    return {k: v for k, v in out.items() if v is not None}


def refresh_parent(session: Session, parent: RunRecord) -> RunRecord:
    """A sweep's state is its children's: refreshed together (one status call per backend);
    it ends when they all have: Completed if all completed, else Failed (Canceled if any was
    canceled and none failed)."""
    if parent.status.is_terminal:
        return parent
    kids = refresh_many(session, session.store.runs(parent_id=parent.id))
    if not kids or not all(k.status.is_terminal for k in kids):
        return parent
    statuses = {k.status for k in kids}
    status = (RunStatus.COMPLETED if statuses == {RunStatus.COMPLETED} else
              RunStatus.FAILED if RunStatus.FAILED in statuses else RunStatus.CANCELED)
    failed = sum(k.status != RunStatus.COMPLETED for k in kids)
    session.store.update(parent.id, status=status, ended_at=max(k.ended_at or 0 for k in kids) or time.time(),
                         exit_code=0 if status == RunStatus.COMPLETED else 1, synced=True,
                         error=None if failed == 0 else f"{failed} of {len(kids)} runs of the sweep did not complete")
    return session.store.get(parent.id)
