"""Bayesian sampling through Optuna's TPE sampler (the optional extra ``runctl[tuning]``;
imported only here, only for a Bayesian sweep).

The controller keeps no sampler between samples: each sample rebuilds a study from the
trials the store holds (finished ones with their best value, running ones as pending, so
TPE's constant liar spreads concurrent samples), seeded with the sweep's seed plus the
sample's index. A controller restarted after a kill samples as the old one would have.
"""

from __future__ import annotations

from typing import Any

from runctl.config.hyperdrive import Expression
from runctl.errors import InputError
from runctl.ops.hyperdrive.space import quantize


def startup_trials(max_total_runs: int) -> int:
    """Random samples before TPE models the results: a quarter of the budget, 2 to 10."""
    return max(2, min(10, max_total_runs // 4))


def require_optuna() -> Any:
    """Optuna, or the error saying how to get it (exit 2)."""
    try:
        import optuna
    except ImportError:
        raise InputError("hyperdrive.sampling: bayesian needs Optuna, which is not installed here: "
                         "pip install 'runctl[tuning]' (or pip install optuna)") from None
    return optuna


def suggest(space: dict[str, Expression], goal: str, history: list[tuple[dict[str, Any], float | None, bool]],
            seed: int | None, index: int, max_total_runs: int) -> dict[str, Any]:
    """The next sample. ``history``: (hyperparameters, best value or None, finished) per trial."""
    optuna = require_optuna()
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, Any] = {}
    for name, e in space.items():
        dists[name] = (CategoricalDistribution(list(e.args)) if e.kind == "choice" else
                       FloatDistribution(float(e.args[0]), float(e.args[1])))
    sampler = optuna.samplers.TPESampler(seed=(seed or 0) + index, n_startup_trials=startup_trials(max_total_runs),
                                         constant_liar=True)
    study = optuna.create_study(direction="maximize" if goal == "maximize" else "minimize", sampler=sampler)
    for params, value, finished in history:
        known = {n: _inside(dists[n], params[n]) for n in dists if n in params}
        if len(known) != len(dists) or any(v is None for v in known.values()):
            continue  # a trial of another space (the job file changed): nothing to learn from
        if finished and value is not None:
            study.add_trial(create_trial(params=known, distributions=dists, value=value))
        else:
            state = TrialState.FAIL if finished else TrialState.RUNNING
            study.add_trial(create_trial(params=known, distributions=dists, state=state))
    trial = study.ask(dists)
    return {name: quantize(space[name].kind, trial.params[name], space[name].args) for name in space}


def _inside(dist: Any, value: Any) -> Any:
    """A stored value as the distribution holds it (a q-rounded value clamped to its range)."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return value if value in dist.choices else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return min(max(float(value), dist.low), dist.high)
