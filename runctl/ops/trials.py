"""A tuning run's trials as the store holds them (issue 24): each child's hyperparameters and
its reports of the primary metric, the best run, and the children sorted by the metric.
Read-only: what `runctl show`, `runctl metrics --children`, the portal and the Python API
(HyperDriveRun) show. The controller that makes the trials is runctl/ops/hyperdrive/."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from runctl.store.sqlite import RunRecord, Store

HYPERPARAMETERS = "hyperparameters"  # the child's property: its sample, as JSON (v1's name)
CONTROLLER = "controller"  # the parent's spec: where its controller runs ({host, pid, ...})


@dataclass
class Trial:
    record: RunRecord
    hyperparameters: dict[str, Any]
    values: list[float]  # the primary metric's reports, in order (finite numbers only)

    def best(self, goal: str) -> float | None:
        if not self.values:
            return None
        return max(self.values) if goal == "maximize" else min(self.values)


def tuning_of(record: RunRecord) -> dict[str, Any] | None:
    """The parent's ``hyperdrive`` section as stored (None for other runs)."""
    if record.kind != "hyperdrive":
        return None
    return (record.spec or {}).get("hyperdrive")


def reports(store: Store, run_id: str, name: str) -> list[float]:
    """A run's scalar reports of ``name``, in logging order; anything not a finite number is
    no report (a list or table logged under the name is skipped)."""
    out = []
    for kind, _, value in store.metric_events(run_id, name):
        if kind == "scalar" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            out.append(float(value))
    return out


def hyperparameters(store: Store, run_id: str) -> dict[str, Any]:
    try:
        value = json.loads(store.properties(run_id).get(HYPERPARAMETERS) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def trials(store: Store, parent: RunRecord) -> list[Trial]:
    """Every child of a tuning run, in the order they were sampled."""
    name = (tuning_of(parent) or {}).get("primary_metric_name", "")
    return as_trials(store, sorted(store.runs(parent_id=parent.id), key=lambda r: (r.created_at, child_index(r.id))),
                     name)


def as_trials(store: Store, children: list[RunRecord], primary_metric_name: str) -> list[Trial]:
    return [Trial(k, hyperparameters(store, k.id), reports(store, k.id, primary_metric_name)) for k in children]


def child_index(run_id: str) -> int:
    """A tuning run's child's number: ``PARENT_i`` -> i."""
    tail = run_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def sorted_trials(store: Store, parent: RunRecord) -> list[Trial]:
    """Best first by the primary metric; trials with no report last, in sampling order."""
    goal = (tuning_of(parent) or {}).get("primary_metric_goal", "maximize")
    all_ = trials(store, parent)
    scored = [t for t in all_ if t.values]
    scored.sort(key=lambda t: t.best(goal) or 0.0, reverse=(goal == "maximize"))
    return scored + [t for t in all_ if not t.values]


def best_run(store: Store, parent: RunRecord) -> dict[str, Any] | None:
    """``{id, primary_metric: {name, goal, value}, hyperparameters, status}`` of the best
    child so far, or None while no child has reported the primary metric."""
    tuning = tuning_of(parent)
    if tuning is None:
        return None
    ranked = sorted_trials(store, parent)
    if not ranked or not ranked[0].values:
        return None
    best = ranked[0]
    goal = tuning["primary_metric_goal"]
    return {"id": best.record.id, "status": best.record.status.value,
            "primary_metric": {"name": tuning["primary_metric_name"], "goal": goal, "value": best.best(goal)},
            "hyperparameters": best.hyperparameters}


def table(store: Store, parent: RunRecord) -> list[dict[str, Any]]:
    """One row per trial, best first: id, status, the best and last report, how many reports,
    the hyperparameters and why it ended early (if it did)."""
    goal = (tuning_of(parent) or {}).get("primary_metric_goal", "maximize")
    return [{"id": t.record.id, "status": t.record.status.value, "best": t.best(goal),
             "last": t.values[-1] if t.values else None, "reports": len(t.values),
             "hyperparameters": t.hyperparameters, "error": t.record.error}
            for t in sorted_trials(store, parent)]
