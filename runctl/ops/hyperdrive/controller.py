"""The controller of a tuning run: a detached process (runctl/ops/detached.py starts it and
owns its lock) that samples the parameter space, starts children while fewer than
``max_concurrent_runs`` are unfinished, syncs them, applies the early-termination policy to
their reports of the primary metric, and ends the parent when the budget of runs is spent
(or ``max_duration_minutes`` has passed, or the parent is canceled).

Everything it knows is in the store, so a controller killed at any instant is replaced
by the next command that looks at the parent, and the new one goes on exactly there:

- child ``i`` has the id ``PARENT_i`` and is recorded (with its sample) before it is
  started, so the count of children is the count of samples drawn;
- a child recorded but not yet handed to its backend is started by the new controller
  (it never ran); one placed on its backend is adopted or recorded as never started by
  the usual sync (runctl/ops/runs.py), as after a killed ``runctl submit``;
- grid and random samples depend only on the seed and the index; a Bayesian sample on
  the trials stored when it is drawn.

What it decides it prints, one line each, to the parent's log (``runctl logs PARENT``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from runctl.config import hyperdrive as hd
from runctl.errors import RunctlError
from runctl.ops import detached, runs, trials
from runctl.ops.hyperdrive import policy as policies
from runctl.ops.hyperdrive import space
from runctl.ops.session import Session
from runctl.ops.submit import new_run, prepare, start_failures
from runctl.status import RunStatus
from runctl.store.sqlite import RunRecord

POLL_S = 0.1  # between rounds (or the backend's poll_interval_s where longer: Slurm's); RUNCTL_TUNING_POLL_S sets it


class Controller:
    def __init__(self, session: Session, parent_id: str) -> None:
        from runctl.config.jobconfig import job_from_document

        self.session, self.store = session, session.store
        parent = self.store.get(parent_id)
        self.parent_id = parent_id
        self.tuning = hd.parse((parent.spec or {})["hyperdrive"])
        job = job_from_document({k: v for k, v in parent.spec["job"].items() if k != "hyperdrive"}, session.ws)  # type: ignore[index]
        self.job = replace(job, display_name=None)
        self.snapshot_id = parent.snapshot_id or ""
        self.backend = session.backend(job.compute_target)
        self.deadline = (parent.started_at or parent.created_at) + self.tuning.max_duration_minutes * 60
        self.evaluated: dict[str, int] = {}  # child -> reports already judged
        self.git = {k: v for k, v in self.store.properties(parent_id).items() if "git" in k}
        self.stopping = False

    def say(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        t = self.tuning
        self.say(f"tuning {self.parent_id}: {t.sampling} sampling, up to {t.max_total_runs} runs, "
                 f"{t.max_concurrent_runs} at a time, {t.primary_metric_goal} {t.primary_metric_name}, "
                 f"policy {t.policy.kind} (controller pid {os.getpid()})")
        poll_s = float(os.environ.get("RUNCTL_TUNING_POLL_S") or max(POLL_S, self.backend.poll_interval_s))
        while not self.stopping and self.step():
            time.sleep(poll_s)

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def step(self) -> bool:
        """One round; False once the parent has ended."""
        if not self.store.dir.is_dir():
            self.say(f"stopped: the store {self.store.dir} is gone")
            return False
        parent = self.store.get(self.parent_id)
        if parent.status.is_terminal:
            return False
        kids = self.children()
        if parent.status == RunStatus.CANCEL_REQUESTED:
            self.cancel_all(kids, "the tuning run was canceled")
            self.finish(RunStatus.CANCELED, "canceled")
            return False
        kids = self.start_orphans(kids)
        kids = runs.refresh_many(self.session, kids, on_error=lambda target, e: self.say(f"{target}: {e}"))
        kids = self.apply_policy(kids)
        live = [k for k in kids if not k.status.is_terminal]
        if time.time() >= self.deadline:
            self.say(f"max_duration_minutes ({self.tuning.max_duration_minutes:g}) reached: no more runs")
            self.cancel_all(live, f"max_duration_minutes ({self.tuning.max_duration_minutes:g}) of the tuning run "
                                  f"reached")
            self.end(kids)
            return False
        room = min(self.tuning.max_concurrent_runs - len(live), self.tuning.max_total_runs - len(kids))
        if room > 0 and not self.stopping:
            self.launch(list(range(len(kids), len(kids) + room)), kids)
            return True
        if len(kids) >= self.tuning.max_total_runs and not live:
            self.end(kids)
            return False
        return True

    def children(self) -> list[RunRecord]:
        return sorted(self.store.runs(parent_id=self.parent_id), key=lambda r: trials.child_index(r.id))

    # -- starting children ---------------------------------------------------------------
    def sample(self, index: int, kids: list[RunRecord]) -> dict[str, Any]:
        t = self.tuning
        if t.sampling != "bayesian":
            return space.nth(t.space, t.sampling, t.seed, index)
        from runctl.ops.hyperdrive.bayes import suggest

        history = [(tr.hyperparameters, tr.best(t.primary_metric_goal), tr.record.status.is_terminal)
                   for tr in trials.as_trials(self.store, kids, t.primary_metric_name)]
        return suggest(t.space, t.primary_metric_goal, history, t.seed, index, t.max_total_runs)

    def launch(self, indices: list[int], kids: list[RunRecord]) -> None:
        made: list[tuple[Any, RunRecord]] = []
        for i in indices:
            sample = self.sample(i, kids)
            child_job = self.child_job(sample)
            record, _ = new_run(self.session, child_job, self.backend, self.snapshot_id, run_id=f"{self.parent_id}_{i}",
                                parent_id=self.parent_id, tags={k.lstrip("-"): _text(v) for k, v in sample.items()},
                                properties={**self.git, trials.HYPERPARAMETERS: json.dumps(sample)})
            made.append((child_job, record))
            self.say(f"run {record.id}: {' '.join(space.arguments(sample))}")
        self.submit(made)

    def child_job(self, sample: dict[str, Any]) -> Any:
        """The job with the sample's arguments after its own (and so in its stored definition)."""
        args = [*self.job.arguments, *space.arguments(sample)]
        return replace(self.job, arguments=args, document={**self.job.document, "arguments": args})

    def submit(self, made: list[tuple[Any, RunRecord]]) -> None:
        """Hand the children to the backend: as one job array where it has them (grid and
        random samples are known up front), else one by one."""
        try:
            if self.backend.supports_arrays and len(made) > 1:
                with start_failures(self.session, [r.id for _, r in made]):
                    prepared = [prepare(self.session, j, self.backend, r, self.snapshot_id) for j, r in made]
                    handles = self.backend.submit_array(prepared, None)
                for (_, record), handle in zip(made, handles):
                    self.store.update(record.id, handle=handle.to_dict(), status=RunStatus.STARTING, host=handle.host)
                return
            for job, record in made:
                with start_failures(self.session, [record.id]):
                    spec, plan = prepare(self.session, job, self.backend, record, self.snapshot_id)
                    handle = self.backend.submit(spec, plan)
                self.store.update(record.id, handle=handle.to_dict(), status=RunStatus.STARTING, host=handle.host)
        except RunctlError as e:
            self.say(f"not started: {e}")

    def start_orphans(self, kids: list[RunRecord]) -> list[RunRecord]:
        """Children recorded by a controller killed before it handed them to the backend:
        they never ran, so they are started now, with their own sample."""
        orphans = [k for k in kids if k.handle is None and not k.status.is_terminal]
        if not orphans:
            return kids
        made = []
        for k in orphans:
            sample = trials.hyperparameters(self.store, k.id)
            made.append((self.child_job(sample), k))
            self.say(f"run {k.id}: recorded by a controller that stopped before starting it; starting it now")
        self.submit(made)
        return self.children()

    # -- judging them --------------------------------------------------------------------
    def apply_policy(self, kids: list[RunRecord]) -> list[RunRecord]:
        t = self.tuning
        if t.policy.kind == "none":
            return kids
        reports = {k.id: trials.reports(self.store, k.id, t.primary_metric_name) for k in kids}
        finished = {k.id for k in kids if k.status.is_terminal}
        out = []
        for k in kids:
            values = reports[k.id]
            if not k.status.is_terminal and k.status != RunStatus.CANCEL_REQUESTED:
                for n in range(self.evaluated.get(k.id, 0) + 1, len(values) + 1):
                    if not policies.evaluates_at(t.policy, n):
                        continue
                    cut = policies.decide(t.policy, t.primary_metric_goal, reports, finished, at=n, only=k.id)
                    if cut:
                        self.say(f"run {k.id}: canceled by the {cut[k.id]}")
                        k = runs.cancel(self.session, k, reason=f"canceled by the {cut[k.id]}")
                        break
            self.evaluated[k.id] = len(values)
            out.append(k)
        return out

    def cancel_all(self, kids: list[RunRecord], reason: str) -> None:
        for k in kids:
            if not k.status.is_terminal:
                runs.cancel(self.session, k, reason=reason)

    # -- ending ----------------------------------------------------------------------------
    def end(self, kids: list[RunRecord]) -> None:
        """Wait for the children canceled last to be synced, then end the parent: Completed
        when a child reported the primary metric or completed, else Failed."""
        try:
            kids = runs.wait_many(self.session, self.children(), timeout_s=120)
        except RunctlError as e:
            self.say(f"children not all synced: {e}")
            kids = self.children()
        failed = [k for k in kids if k.status == RunStatus.FAILED]
        good = [k for k in kids if k.status == RunStatus.COMPLETED
                or trials.reports(self.store, k.id, self.tuning.primary_metric_name)]
        best = trials.best_run(self.store, self.store.get(self.parent_id))
        if best:
            pm = best["primary_metric"]
            self.say(f"best run {best['id']}: {pm['name']} {pm['value']:g} with "
                     f"{' '.join(space.arguments(best['hyperparameters']))}")
        if good:
            self.finish(RunStatus.COMPLETED, f"{len(failed)} of {len(kids)} runs failed" if failed else None)
        else:
            self.finish(RunStatus.FAILED, f"none of the {len(kids)} runs completed or reported "
                                          f"{self.tuning.primary_metric_name}")

    def finish(self, status: RunStatus, error: str | None) -> None:
        self.store.update(self.parent_id, status=status, error=error, ended_at=time.time(), synced=True,
                          exit_code={RunStatus.COMPLETED: 0, RunStatus.FAILED: 1}.get(status))
        detached.record(self.session, self.parent_id, None)
        detached.forget(self.session, self.parent_id)
        self.say(f"tuning {self.parent_id}: {status.value}{f' ({error})' if error else ''}")


def _text(value: Any) -> str:
    return format(value, ".10g") if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    from runctl.config.workspace import load_workspace
    from runctl.errors import InputError

    parser = argparse.ArgumentParser(prog="runctl-tuning-controller")
    parser.add_argument("parent_id")
    parser.add_argument("--store", required=True)
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    ws = load_workspace(config_path=Path(args.config) if args.config else None)
    ws.store_dir = Path(args.store)
    with Session(ws) as session:
        fd_text = os.environ.pop(detached.LOCK_FD_ENV, None)
        lock = int(fd_text) if fd_text else detached.take_lock(detached.lock_path(session, args.parent_id))
        if lock is None:
            print(f"runctl: a controller of {args.parent_id} already runs", file=sys.stderr)
            return 0
        try:
            Controller(session, args.parent_id).run()
        except InputError as e:  # the job no longer checks (a target removed from the config...)
            print(f"{time.strftime('%H:%M:%S')} stopped: {e}", flush=True)
            session.store.update(args.parent_id, status=RunStatus.FAILED, error=str(e), ended_at=time.time(),
                                 synced=True, exit_code=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
