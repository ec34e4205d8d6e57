"""A job file's ``hyperdrive:`` section (issue 24), as Azure ML v1's HyperDriveConfig defined
it: what a valid section is. Sampling and the policies' decisions are runctl/ops/hyperdrive/.

A parameter space maps the script's arguments to v1's expressions, ``{name: args}``
(``{choice: [a, b]}``, ``{uniform: [0.5, 2.0]}``):

- ``choice(*options)``: one of the options;
- ``randint(upper)``: an integer in [0, upper);
- ``uniform(low, high)``; ``quniform(low, high, q)``: round(uniform / q) * q;
- ``loguniform(low, high)``: exp(uniform(low, high)); ``qloguniform(low, high, q)``;
- ``normal(mu, sigma)``; ``qnormal(mu, sigma, q)``;
- ``lognormal(mu, sigma)``: exp(normal(mu, sigma)); ``qlognormal(mu, sigma, q)``.

A parameter named without dashes (``lr``) reaches the script as ``--lr``, as with ``--sweep``.
Every problem raises InputError whose ``field`` is its path under ``hyperdrive``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runctl.errors import InputError

ARITY = {"choice": None, "randint": 1, "uniform": 2, "quniform": 3, "loguniform": 2, "qloguniform": 3,
         "normal": 2, "qnormal": 3, "lognormal": 2, "qlognormal": 3}
SAMPLING_KINDS = {"grid": {"choice"}, "bayesian": {"choice", "uniform", "quniform"}, "random": set(ARITY)}
POLICIES = ("bandit", "median_stopping", "truncation_selection", "none")
MAX_TOTAL_RUNS = 1000  # v1's limits
MAX_CONCURRENT_RUNS = 100
DEFAULT_MAX_DURATION_MINUTES = 10080


@dataclass(frozen=True)
class Expression:
    kind: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Policy:
    kind: str  # bandit | median_stopping | truncation_selection | none
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    slack_factor: float | None = None
    slack_amount: float | None = None
    truncation_percentage: int | None = None
    exclude_finished: bool = False


@dataclass(frozen=True)
class Tuning:
    """A validated ``hyperdrive:`` section."""

    sampling: str
    space: dict[str, Expression]
    primary_metric_name: str
    primary_metric_goal: str  # maximize | minimize
    max_total_runs: int
    max_concurrent_runs: int
    max_duration_minutes: float
    policy: Policy
    seed: int | None


def _error(message: str, *field: Any) -> InputError:
    e = InputError(message)
    e.field = field  # type: ignore[attr-defined]
    return e


def argument_name(name: str) -> str:
    """The script's argument for a parameter: as written when it starts with a dash, else --name."""
    return name if name.startswith("-") else f"--{name}"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_space(space: Any) -> dict[str, Expression]:
    """``parameter_space`` -> {argument name: Expression}."""
    where = "hyperdrive.parameter_space"
    if not isinstance(space, dict) or not space:
        raise _error(f"{where}: a mapping of the script's arguments to expressions, e.g. --lr: {{uniform: [0.01, 0.1]}}",
                     "parameter_space")
    out: dict[str, Expression] = {}
    for name, expr in space.items():
        at = f"{where}.{name}"

        def bad(message: str) -> InputError:
            return _error(f"{at}: {message}", "parameter_space", name)  # noqa: B023 - raised at once

        if not isinstance(expr, dict) or len(expr) != 1:
            raise bad(f"one expression, e.g. {{choice: [1, 2]}} or {{uniform: [0, 1]}} (one of: {', '.join(ARITY)})")
        [(kind, args)] = expr.items()
        if kind not in ARITY:
            raise bad(f"unknown expression {kind!r}; one of: {', '.join(ARITY)}")
        args = list(args) if isinstance(args, (list, tuple)) else [args]
        want = ARITY[kind]
        if kind == "choice":
            if not args:
                raise bad("choice needs at least one option")
            if not all(isinstance(v, (str, int, float, bool)) for v in args):
                raise bad("choice takes plain values (text, numbers, true/false), one per option")
        else:
            if len(args) != want or not all(_number(v) for v in args):
                raise bad(f"{kind} takes {want} number(s), got {args!r}")
            if kind in ("uniform", "quniform", "loguniform", "qloguniform") and not args[0] < args[1]:
                raise bad(f"{kind} needs low < high, got {args[0]} and {args[1]}")
            if kind == "randint" and not (int(args[0]) == args[0] and args[0] >= 1):
                raise bad(f"randint takes an integer upper bound >= 1, got {args[0]}")
            if kind in ("normal", "qnormal", "lognormal", "qlognormal") and not args[1] > 0:
                raise bad(f"{kind} needs sigma > 0, got {args[1]}")
            if kind.startswith("q") and not args[-1] > 0:
                raise bad(f"{kind} needs q > 0, got {args[-1]}")
        arg = argument_name(str(name))
        if arg in out:
            raise bad(f"names the argument {arg} a second time")
        out[arg] = Expression(kind, tuple(args))
    return out


def check_sampling(sampling: str, space: dict[str, Expression]) -> None:
    """v1's rules: grid takes choice only; Bayesian takes choice, uniform, quniform."""
    allowed = SAMPLING_KINDS.get(sampling)
    if allowed is None:
        raise _error(f"hyperdrive.sampling: {sampling!r}; one of random, grid, bayesian", "sampling")
    for name, expr in space.items():
        if expr.kind not in allowed:
            raise _error(f"hyperdrive.parameter_space.{name}: {sampling} sampling does not take {expr.kind} (it takes "
                         f"{', '.join(sorted(allowed))}); use random sampling, or a choice", "parameter_space")


def grid_size(space: dict[str, Expression]) -> int:
    n = 1
    for e in space.values():
        n *= len(e.args)
    return n


def parse_policy(doc: Any) -> Policy:
    """``policy``: {bandit: {...}} | {median_stopping: {...}} | {truncation_selection: {...}} | none."""
    where = "hyperdrive.policy"
    if doc in (None, "none") or doc == {"none": None} or doc == {"none": {}}:
        return Policy("none")
    if not isinstance(doc, dict) or len(doc) != 1:
        raise _error(f"{where}: one of {{bandit: {{...}}}}, {{median_stopping: {{...}}}}, "
                     f"{{truncation_selection: {{...}}}} or none", "policy")
    [(kind, opts)] = doc.items()
    if kind not in POLICIES[:3]:
        raise _error(f"{where}: unknown policy {kind!r}; one of {', '.join(POLICIES)}", "policy")
    if not isinstance(opts, (dict, type(None))):
        raise _error(f"{where}.{kind}: a mapping of its settings, e.g. {{evaluation_interval: 1}}", "policy", kind)
    opts = dict(opts or {})
    known = {"bandit": {"slack_factor", "slack_amount"}, "median_stopping": set(),
             "truncation_selection": {"truncation_percentage", "exclude_finished_jobs"}}
    extra = set(opts) - known[kind] - {"evaluation_interval", "delay_evaluation"}
    if extra:
        raise _error(f"{where}.{kind}: unknown field(s) {', '.join(sorted(map(str, extra)))}", "policy", kind)
    interval = opts.get("evaluation_interval", 1)
    delay = opts.get("delay_evaluation", 5 if kind == "median_stopping" else 0)  # v1's defaults
    if not (type(interval) is int and interval >= 1) or not (type(delay) is int and delay >= 0):
        raise _error(f"{where}.{kind}: evaluation_interval is an integer >= 1 and delay_evaluation >= 0",
                     "policy", kind)
    if kind == "bandit":
        factor, amount = opts.get("slack_factor"), opts.get("slack_amount")
        if (factor is None) == (amount is None):
            raise _error(f"{where}.bandit: give slack_factor or slack_amount (one of them, as v1)", "policy", kind)
        for name, value in (("slack_factor", factor), ("slack_amount", amount)):
            if value is not None and not (_number(value) and value > 0):
                raise _error(f"{where}.bandit.{name}: a number > 0", "policy", kind, name)
        return Policy("bandit", interval, delay, slack_factor=factor, slack_amount=amount)
    if kind == "truncation_selection":
        pct = opts.get("truncation_percentage")
        if not (type(pct) is int and 1 <= pct <= 99):
            raise _error(f"{where}.truncation_selection.truncation_percentage: an integer from 1 to 99",
                         "policy", kind, "truncation_percentage")
        return Policy("truncation_selection", interval, delay, truncation_percentage=pct,
                      exclude_finished=bool(opts.get("exclude_finished_jobs", False)))
    return Policy("median_stopping", interval, delay)


def parse(doc: Any) -> Tuning:
    """The whole ``hyperdrive:`` section (its shape already checked by the JSON Schema)."""
    if not isinstance(doc, dict):
        raise _error("hyperdrive: a mapping (sampling, parameter_space, primary_metric_name, ...)")
    sampling = doc.get("sampling", "random")
    space = parse_space(doc.get("parameter_space"))
    check_sampling(sampling, space)
    policy = parse_policy(doc.get("policy"))
    if sampling == "bayesian" and policy.kind != "none":
        raise _error("hyperdrive.policy: Bayesian sampling takes no early-termination policy (as in v1: it learns "
                     "from runs that finish); remove policy, or use random sampling", "policy")
    name = doc.get("primary_metric_name")
    if not isinstance(name, str) or not name:
        raise _error("hyperdrive.primary_metric_name: the name the script logs with run.log(NAME, value)",
                     "primary_metric_name")
    goal = str(doc.get("primary_metric_goal", "")).lower()
    if goal not in ("maximize", "minimize"):
        raise _error("hyperdrive.primary_metric_goal: maximize or minimize", "primary_metric_goal")
    total = doc.get("max_total_runs")
    if total is None and sampling == "grid":
        total = grid_size(space)
    if not (type(total) is int and 1 <= total <= MAX_TOTAL_RUNS):
        raise _error(f"hyperdrive.max_total_runs: an integer from 1 to {MAX_TOTAL_RUNS} (the budget of runs)",
                     "max_total_runs")
    if sampling == "grid":
        total = min(total, grid_size(space))  # a grid has so many points, run once each
    concurrent = doc.get("max_concurrent_runs", min(total, MAX_CONCURRENT_RUNS))
    if not (type(concurrent) is int and 1 <= concurrent <= MAX_CONCURRENT_RUNS):
        raise _error(f"hyperdrive.max_concurrent_runs: an integer from 1 to {MAX_CONCURRENT_RUNS}",
                     "max_concurrent_runs")
    minutes = doc.get("max_duration_minutes", DEFAULT_MAX_DURATION_MINUTES)
    if not (_number(minutes) and minutes > 0):
        raise _error("hyperdrive.max_duration_minutes: a number of minutes > 0", "max_duration_minutes")
    seed = doc.get("seed")
    if seed is not None and type(seed) is not int:
        raise _error("hyperdrive.seed: an integer (the same seed gives the same samples)", "seed")
    return Tuning(sampling, space, name, goal, total, min(concurrent, total), float(minutes), policy, seed)


def document(t: Tuning) -> dict[str, Any]:
    """A Tuning as the job file writes it (what a parent run stores)."""
    policy: Any = "none"
    if t.policy.kind != "none":
        opts: dict[str, Any] = {"evaluation_interval": t.policy.evaluation_interval,
                                "delay_evaluation": t.policy.delay_evaluation}
        for key, value in (("slack_factor", t.policy.slack_factor), ("slack_amount", t.policy.slack_amount),
                           ("truncation_percentage", t.policy.truncation_percentage)):
            if value is not None:
                opts[key] = value
        if t.policy.kind == "truncation_selection":
            opts["exclude_finished_jobs"] = t.policy.exclude_finished
        policy = {t.policy.kind: opts}
    return {"sampling": t.sampling, "parameter_space": {k: {e.kind: list(e.args)} for k, e in t.space.items()},
            "primary_metric_name": t.primary_metric_name, "primary_metric_goal": t.primary_metric_goal,
            "max_total_runs": t.max_total_runs, "max_concurrent_runs": t.max_concurrent_runs,
            "max_duration_minutes": t.max_duration_minutes, "policy": policy, "seed": t.seed}
