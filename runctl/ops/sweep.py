"""Sweeps: ``runctl submit job.yaml --sweep lr=0.1,0.01 --sweep bs=32,64`` makes one parent
run and a child run per combination (the product of the lists), each child getting
``--lr 0.1 --bs 32`` after the job's own arguments (HyperDrive's convention) and the values
as tags. A backend that has job arrays (``Backend.submit_array``, Slurm) starts all the
children as ONE array job, ``--max-parallel`` at a time; others get them one by one, the
submit waiting while ``--max-parallel`` children are unfinished.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from runctl.errors import InputError
from runctl.ops.submit import check, job_document, make_snapshot, new_run, prepare, start_failures
from runctl.status import RunStatus
from runctl.store.sqlite import RunRecord

if TYPE_CHECKING:
    from runctl.config.jobconfig import JobConfig
    from runctl.ops.session import Session

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
MAX_RUNS = 1000


def grid(items: list[str]) -> list[dict[str, str]]:
    """``["lr=0.1,0.01", "bs=32"]`` -> every combination, in order."""
    axes: list[tuple[str, list[str]]] = []
    for item in items:
        name, sep, values = item.partition("=")
        vals = [v.strip() for v in values.split(",")]
        if not sep or not NAME.match(name) or not all(vals):
            raise InputError(f"--sweep {item!r}: write NAME=V1,V2,... (a name of letters, digits, _ . -; no empty "
                             f"value)")
        if name in (n for n, _ in axes):
            raise InputError(f"--sweep {name}: given twice; list all its values in one --sweep")
        axes.append((name, vals))
    count = math.prod(len(v) for _, v in axes)  # counted before any is made: 4 x 100 values is 10^8
    if count > MAX_RUNS:
        raise InputError(f"--sweep: {count} combinations ({' x '.join(str(len(v)) for _, v in axes)}); at most "
                         f"{MAX_RUNS} in one sweep: give fewer values")
    return [dict(zip([n for n, _ in axes], c)) for c in itertools.product(*(v for _, v in axes))]


def submit_sweep(session: Session, job: JobConfig, combos: list[dict[str, str]],
                 max_parallel: int | None = None) -> RunRecord:
    """The parent run and its children, started; returns the parent."""
    if job.script is None:
        raise InputError(f"{job.job_file or 'the job'}: --sweep passes its values as arguments to the script; "
                         f"this job has a command instead (use script:)")
    store = session.store
    backend = check(session, job)
    snapshot_id = make_snapshot(session, job.source_directory, script=job.script)
    parent, _ = store.create_run(job.experiment, kind="sweep", status=RunStatus.RUNNING, display_name=job.display_name,
                                 compute_target=job.compute_target, backend=backend.name, snapshot_id=snapshot_id,
                                 spec={**job_document(job), "sweep": combos, "max_parallel": max_parallel},
                                 started_at=time.time())
    store.set_tags(parent.id, {**job.tags, "runctl.sweep": " x ".join(sorted(combos[0]))})
    children = []
    for i, combo in enumerate(combos):
        child_job = replace(job, arguments=[*job.arguments, *(a for k, v in combo.items() for a in (f"--{k}", v))])
        record, _ = new_run(session, child_job, backend, snapshot_id, run_id=f"{parent.id}_{i}", parent_id=parent.id,
                            tags=combo)
        children.append((child_job, record))
    if backend.supports_arrays:
        ids = [r.id for _, r in children]
        with start_failures(session, ids):
            prepared = [prepare(session, j, backend, r, snapshot_id) for j, r in children]
            handles = backend.submit_array(prepared, max_parallel)
        for (_, record), handle in zip(children, handles):
            store.update(record.id, handle=handle.to_dict(), status=RunStatus.STARTING, host=handle.host)
        return store.get(parent.id)
    for child_job, record in children:
        if max_parallel:
            _wait_for_room(session, parent.id, max_parallel)
        with start_failures(session, [record.id]):
            spec, plan = prepare(session, child_job, backend, record, snapshot_id)
            handle = backend.submit(spec, plan)
        store.update(record.id, handle=handle.to_dict(), status=RunStatus.STARTING, host=handle.host)
    return store.get(parent.id)


def _wait_for_room(session: Session, parent_id: str, max_parallel: int) -> None:
    from runctl.ops.runs import refresh_many

    while True:
        started = [r for r in session.store.runs(parent_id=parent_id) if r.handle is not None]
        if sum(not r.status.is_terminal for r in refresh_many(session, started)) < max_parallel:
            return
        time.sleep(0.5)
