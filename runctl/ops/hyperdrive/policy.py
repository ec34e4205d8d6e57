"""Early termination, as Azure ML v1's HyperDrive policies define it. Each policy looks at the
children's reports of the primary metric (their values in order, one per report) at an
evaluation point, and names the children to cancel, each with the comparison that failed.

An evaluation happens at report counts ``delay_evaluation + k * evaluation_interval``
(k >= 1 for v1's delay semantics: nothing before the delay). A child is judged on its best
value so far (bandit, median stopping) or its value at that report (truncation).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from runctl.errors import InputError


@dataclass(frozen=True)
class Policy:
    kind: str  # bandit | median_stopping | truncation_selection | none
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    slack_factor: float | None = None
    slack_amount: float | None = None
    truncation_percentage: int | None = None
    exclude_finished: bool = False


def parse(doc: Any, where: str = "hyperdrive.policy") -> Policy:
    """The job file's ``policy`` ({bandit: {...}} | {median_stopping: {...}} |
    {truncation_selection: {...}} | none) -> Policy, with v1's rules (InputError otherwise)."""
    if doc in (None, "none") or doc == {"none": None} or doc == {"none": {}}:
        return Policy("none")
    if not isinstance(doc, dict) or len(doc) != 1:
        raise InputError(f"{where}: one of {{bandit: {{...}}}}, {{median_stopping: {{...}}}}, "
                         f"{{truncation_selection: {{...}}}} or none")
    [(kind, opts)] = doc.items()
    opts = dict(opts or {})
    known = {"bandit": {"slack_factor", "slack_amount"}, "median_stopping": set(),
             "truncation_selection": {"truncation_percentage", "exclude_finished_jobs"}}
    if kind not in known:
        raise InputError(f"{where}: unknown policy {kind!r}; one of bandit, median_stopping, truncation_selection, none")
    extra = set(opts) - known[kind] - {"evaluation_interval", "delay_evaluation"}
    if extra:
        raise InputError(f"{where}.{kind}: unknown field(s) {', '.join(sorted(extra))}")
    interval, delay = opts.get("evaluation_interval", 1), opts.get("delay_evaluation", 0)
    if not (isinstance(interval, int) and interval >= 1) or not (isinstance(delay, int) and delay >= 0):
        raise InputError(f"{where}.{kind}: evaluation_interval is an integer >= 1 and delay_evaluation >= 0")
    if kind == "bandit":
        factor, amount = opts.get("slack_factor"), opts.get("slack_amount")
        if (factor is None) == (amount is None):
            raise InputError(f"{where}.bandit: give slack_factor or slack_amount (one of them, as v1)")
        for name, value in (("slack_factor", factor), ("slack_amount", amount)):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise InputError(f"{where}.bandit.{name}: a number > 0")
        return Policy("bandit", interval, delay, slack_factor=factor, slack_amount=amount)
    if kind == "truncation_selection":
        pct = opts.get("truncation_percentage")
        if not (isinstance(pct, int) and 1 <= pct <= 99):
            raise InputError(f"{where}.truncation_selection.truncation_percentage: an integer from 1 to 99")
        return Policy("truncation_selection", interval, delay, truncation_percentage=pct,
                      exclude_finished=bool(opts.get("exclude_finished_jobs", False)))
    return Policy("median_stopping", interval, delay)


def evaluates_at(policy: Policy, reports: int) -> bool:
    """Is a child's ``reports``-th report of the primary metric an evaluation point?"""
    if policy.kind == "none" or reports <= policy.delay_evaluation:
        return False
    return (reports - policy.delay_evaluation) % policy.evaluation_interval == 0


def _better(goal: str, a: float, b: float) -> bool:
    return a > b if goal == "maximize" else a < b


def _best(goal: str, values: list[float]) -> float:
    return max(values) if goal == "maximize" else min(values)


def decide(policy: Policy, goal: str, reports: dict[str, list[float]], finished: set[str] | None = None,
           at: int | None = None) -> dict[str, str]:
    """The children to cancel now -> why (the comparison that failed, as text). ``reports``:
    child id -> its primary metric values in report order (only finite numbers count).
    ``at``: the report count being evaluated (default: each running child's own count)."""
    finished = finished or set()
    clean = {c: [v for v in vs if isinstance(v, (int, float)) and math.isfinite(v)] for c, vs in reports.items()}
    out: dict[str, str] = {}
    if policy.kind == "none":
        return out
    for child, values in clean.items():
        if child in finished or not values:
            continue
        n = at if at is not None else len(values)
        if n > len(values) or not evaluates_at(policy, n):
            continue
        # the others as they were at the same report count
        peers = {c: vs[:n] for c, vs in clean.items() if len(vs) >= n}
        if policy.kind == "bandit":
            best = _best(goal, [_best(goal, vs) for vs in peers.values()])
            mine = _best(goal, values[:n])
            if policy.slack_factor is not None:
                bound = best / (1 + policy.slack_factor) if goal == "maximize" else best * (1 + policy.slack_factor)
                rule = f"slack_factor {policy.slack_factor:g}"
            else:
                bound = best - policy.slack_amount if goal == "maximize" else best + policy.slack_amount  # type: ignore[operator]
                rule = f"slack_amount {policy.slack_amount:g}"
            if _better(goal, bound, mine):
                op = "<" if goal == "maximize" else ">"
                out[child] = (f"bandit policy ({rule}) at report {n}: its best {mine:g} {op} {bound:g}, "
                              f"the best run's {best:g} with the slack")
        elif policy.kind == "median_stopping":
            averages = [statistics.fmean(vs) for c, vs in peers.items() if c != child]
            if not averages:
                continue
            median, mine = statistics.median(averages), _best(goal, values[:n])
            if _better(goal, median, mine):
                op = "<" if goal == "maximize" else ">"
                out[child] = (f"median stopping policy at report {n}: its best {mine:g} {op} {median:g}, the median "
                              f"of the other runs' running averages")
        elif policy.kind == "truncation_selection":
            ranked = sorted(((vs[n - 1], c) for c, vs in peers.items()
                             if not (policy.exclude_finished and c in finished)),
                            key=lambda vc: vc[0], reverse=(goal == "maximize"))
            cut = int(len(ranked) * policy.truncation_percentage / 100)  # type: ignore[operator]
            lowest = {c for _, c in ranked[len(ranked) - cut:]} if cut else set()
            if child in lowest:
                out[child] = (f"truncation selection policy ({policy.truncation_percentage}%) at report {n}: "
                              f"{values[n - 1]:g} is among the lowest {cut} of {len(ranked)} runs")
    return out
