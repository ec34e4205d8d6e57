"""``azureml.train.hyperdrive`` where the Azure ML SDK is absent: the classes a v1 notebook
builds a HyperDriveConfig from. ``experiment.submit(config)`` (runctl's Python API) turns
one into a job with a ``hyperdrive:`` section (runconfig.schema.json) and returns a
HyperDriveRun; every rule is checked there, as for a job file."""

import enum

from . import parameter_expressions
from .parameter_expressions import (  # noqa: F401
    choice,
    lognormal,
    loguniform,
    normal,
    qlognormal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
)


class PrimaryMetricGoal(enum.Enum):
    MAXIMIZE = "MAXIMIZE"
    MINIMIZE = "MINIMIZE"


class HyperParameterSampling:
    _name = "random"

    def __init__(self, parameter_space, properties=None, seed=None):
        if not isinstance(parameter_space, dict) or not parameter_space:
            raise ValueError("parameter_space: a dict of argument names to expressions, e.g. {'--lr': uniform(0, 1)}")
        self._parameter_space = dict(parameter_space)
        self._properties = dict(properties or {})
        self._seed = seed if seed is not None else self._properties.get("seed")

    def to_json(self):
        return {"name": self._name.upper(), "parameter_space": self._parameter_space, "properties": self._properties}

    def _section(self):
        out = {"sampling": self._name,
               "parameter_space": {k: parameter_expressions.as_section(v) for k, v in self._parameter_space.items()}}
        if self._seed is not None:
            out["seed"] = self._seed
        return out


class RandomParameterSampling(HyperParameterSampling):
    _name = "random"


class GridParameterSampling(HyperParameterSampling):
    _name = "grid"


class BayesianParameterSampling(HyperParameterSampling):
    _name = "bayesian"


class EarlyTerminationPolicy:
    _kind = "none"

    def __init__(self, **settings):
        self._settings = {k: v for k, v in settings.items() if v is not None}

    def _section(self):
        return "none" if self._kind == "none" else {self._kind: dict(self._settings)}


class BanditPolicy(EarlyTerminationPolicy):
    _kind = "bandit"

    def __init__(self, evaluation_interval=1, slack_factor=None, slack_amount=None, delay_evaluation=0):
        super().__init__(evaluation_interval=evaluation_interval, slack_factor=slack_factor, slack_amount=slack_amount,
                         delay_evaluation=delay_evaluation)


class MedianStoppingPolicy(EarlyTerminationPolicy):
    _kind = "median_stopping"

    def __init__(self, evaluation_interval=1, delay_evaluation=5):
        super().__init__(evaluation_interval=evaluation_interval, delay_evaluation=delay_evaluation)


class TruncationSelectionPolicy(EarlyTerminationPolicy):
    _kind = "truncation_selection"

    def __init__(self, truncation_percentage, evaluation_interval=1, delay_evaluation=0, exclude_finished_jobs=False):
        super().__init__(truncation_percentage=truncation_percentage, evaluation_interval=evaluation_interval,
                         delay_evaluation=delay_evaluation, exclude_finished_jobs=exclude_finished_jobs)


class NoTerminationPolicy(EarlyTerminationPolicy):
    _kind = "none"

    def __init__(self):
        super().__init__()


class HyperDriveConfig:
    """v1's HyperDriveConfig: what to tune (``run_config``, a ScriptRunConfig), how to sample,
    the primary metric, the budgets and the early-termination policy."""

    def __init__(self, hyperparameter_sampling=None, primary_metric_name=None, primary_metric_goal=None,
                 max_total_runs=None, max_concurrent_runs=None, max_duration_minutes=10080, policy=None,
                 estimator=None, run_config=None, resume_from=None, resume_child_runs=None, pipeline=None,
                 debug_flag=None, custom_run_id=None):
        for name, value in (("estimator", estimator), ("pipeline", pipeline), ("resume_from", resume_from),
                            ("resume_child_runs", resume_child_runs)):
            if value is not None:
                raise ValueError("HyperDriveConfig(%s=...): not supported by runctl; give run_config=ScriptRunConfig(...)"
                                 % name)
        if run_config is None:
            raise ValueError("HyperDriveConfig: give run_config=ScriptRunConfig(...), the script to tune")
        if not isinstance(hyperparameter_sampling, HyperParameterSampling):
            raise ValueError("HyperDriveConfig: hyperparameter_sampling is a RandomParameterSampling, "
                             "GridParameterSampling or BayesianParameterSampling")
        self.run_config = run_config
        self._sampling = hyperparameter_sampling
        self._primary_metric_name = primary_metric_name
        goal = primary_metric_goal.value if isinstance(primary_metric_goal, PrimaryMetricGoal) else primary_metric_goal
        self._primary_metric_goal = str(goal or "").lower()
        self._max_total_runs = max_total_runs
        self._max_concurrent_runs = max_concurrent_runs
        self._max_duration_minutes = max_duration_minutes
        self._policy = policy or NoTerminationPolicy()

    @property
    def source_directory(self):
        return self.run_config.source_directory

    def _runctl_hyperdrive(self):
        """(the ScriptRunConfig, the job file's hyperdrive section)."""
        section = self._sampling._section()
        section.update(primary_metric_name=self._primary_metric_name, primary_metric_goal=self._primary_metric_goal,
                       policy=self._policy._section())
        for key, value in (("max_total_runs", self._max_total_runs), ("max_concurrent_runs", self._max_concurrent_runs),
                           ("max_duration_minutes", self._max_duration_minutes)):
            if value is not None:
                section[key] = value
        return self.run_config, section


__all__ = ["BanditPolicy", "BayesianParameterSampling", "EarlyTerminationPolicy", "GridParameterSampling",
           "HyperDriveConfig", "HyperParameterSampling", "MedianStoppingPolicy", "NoTerminationPolicy",
           "PrimaryMetricGoal", "RandomParameterSampling", "TruncationSelectionPolicy", "choice", "lognormal",
           "loguniform", "normal", "qlognormal", "qloguniform", "qnormal", "quniform", "randint", "uniform"]
