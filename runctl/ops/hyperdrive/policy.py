"""Early termination, as Azure ML v1's HyperDrive policies define it. Each policy looks at the
children's reports of the primary metric (their values in order, one per report) at an
evaluation point, and names the children to cancel, each with the comparison that failed.

An evaluation happens at every report count that is a multiple of ``evaluation_interval``
and at least ``delay_evaluation`` (v1: "bandit, interval 1, delay 5" first evaluates at the
fifth report). A child is judged on its best
value so far (bandit, median stopping) or its value at that report (truncation).
"""

from __future__ import annotations

import math
import statistics

from runctl.config.hyperdrive import Policy


def evaluates_at(policy: Policy, reports: int) -> bool:
    """Is a child's ``reports``-th report of the primary metric an evaluation point?"""
    if policy.kind == "none" or reports < max(1, policy.delay_evaluation):
        return False
    return reports % policy.evaluation_interval == 0


def _better(goal: str, a: float, b: float) -> bool:
    return a > b if goal == "maximize" else a < b


def _best(goal: str, values: list[float]) -> float:
    return max(values) if goal == "maximize" else min(values)


def decide(policy: Policy, goal: str, reports: dict[str, list[float]], finished: set[str] | None = None,
           at: int | None = None, only: str | None = None) -> dict[str, str]:
    """The children to cancel now -> why (the comparison that failed, as text). ``reports``:
    child id -> its primary metric values in report order (only finite numbers count).
    ``at``: the report count being evaluated (default: each running child's own count);
    ``only``: judge that child alone."""
    finished = finished or set()
    clean = {c: [v for v in vs if isinstance(v, (int, float)) and math.isfinite(v)] for c, vs in reports.items()}
    out: dict[str, str] = {}
    if policy.kind == "none":
        return out
    for child, values in clean.items():
        if child in finished or not values or (only is not None and child != only):
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
