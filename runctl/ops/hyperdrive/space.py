"""A parameter space as Azure ML v1's HyperDrive wrote it, and its sampling.

Each parameter is one expression, ``{name: args}`` in a job file (``{choice: [a, b]}``,
``{uniform: [0.5, 2.0]}``), with v1's meanings:

- ``choice(*options)``: one of the options;
- ``randint(upper)``: an integer in [0, upper);
- ``uniform(low, high)``; ``quniform(low, high, q)``: round(uniform / q) * q;
- ``loguniform(low, high)``: exp(uniform(low, high)); ``qloguniform(low, high, q)``;
- ``normal(mu, sigma)``; ``qnormal(mu, sigma, q)``;
- ``lognormal(mu, sigma)``: exp(normal(mu, sigma)); ``qlognormal(mu, sigma, q)``.

Random sampling draws every parameter independently from a seeded generator (same seed,
same samples); grid sampling, which v1 allows for ``choice`` only, walks the product of
the choices in order. A parameter named without dashes (``lr``) reaches the script as
``--lr``, as with ``--sweep``.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator

from runctl.errors import InputError

ARITY = {"choice": None, "randint": 1, "uniform": 2, "quniform": 3, "loguniform": 2, "qloguniform": 3,
         "normal": 2, "qnormal": 3, "lognormal": 2, "qlognormal": 3}
GRID_KINDS = {"choice"}
BAYESIAN_KINDS = {"choice", "uniform", "quniform"}  # what v1's BayesianParameterSampling takes


@dataclass(frozen=True)
class Expression:
    kind: str
    args: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        k, a = self.kind, self.args
        if k == "choice":
            return a[rng.randrange(len(a))]
        if k == "randint":
            return rng.randrange(int(a[0]))
        if k in ("uniform", "quniform"):
            value = rng.uniform(a[0], a[1])
        elif k in ("loguniform", "qloguniform"):
            value = math.exp(rng.uniform(a[0], a[1]))
        elif k in ("normal", "qnormal"):
            value = rng.gauss(a[0], a[1])
        else:  # lognormal, qlognormal
            value = math.exp(rng.gauss(a[0], a[1]))
        if k.startswith("q"):
            return round(value / a[2]) * a[2]
        return value


def argument_name(name: str) -> str:
    """The script's argument for a parameter: as written when it starts with a dash, else --name."""
    return name if name.startswith("-") else f"--{name}"


def parse(space: Any, where: str = "hyperdrive.parameter_space") -> dict[str, Expression]:
    """The job file's ``parameter_space`` -> {argument name: Expression}; InputError naming the
    parameter and what to write otherwise."""
    if not isinstance(space, dict) or not space:
        raise InputError(f"{where}: a mapping of the script's arguments to expressions, e.g. --lr: {{uniform: [0.01, 0.1]}}")
    out: dict[str, Expression] = {}
    for name, expr in space.items():
        at = f"{where}.{name}"
        if not isinstance(expr, dict) or len(expr) != 1:
            raise InputError(f"{at}: one expression, e.g. {{choice: [1, 2]}} or {{uniform: [0, 1]}} "
                             f"(one of: {', '.join(ARITY)})")
        [(kind, args)] = expr.items()
        if kind not in ARITY:
            raise InputError(f"{at}: unknown expression {kind!r}; one of: {', '.join(ARITY)}")
        args = list(args) if isinstance(args, (list, tuple)) else [args]
        want = ARITY[kind]
        if kind == "choice":
            if not args:
                raise InputError(f"{at}: choice needs at least one option")
        else:
            if len(args) != want or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in args):
                raise InputError(f"{at}: {kind} takes {want} number(s), got {args!r}")
            if kind in ("uniform", "quniform", "loguniform", "qloguniform") and not args[0] < args[1]:
                raise InputError(f"{at}: {kind} needs low < high, got {args[0]} and {args[1]}")
            if kind == "randint" and not (int(args[0]) == args[0] and args[0] >= 1):
                raise InputError(f"{at}: randint takes an integer upper bound >= 1, got {args[0]}")
            if kind in ("normal", "qnormal", "lognormal", "qlognormal") and not args[1] > 0:
                raise InputError(f"{at}: {kind} needs sigma > 0, got {args[1]}")
            if kind.startswith("q") and not args[-1] > 0:
                raise InputError(f"{at}: {kind} needs q > 0, got {args[-1]}")
        out[argument_name(str(name))] = Expression(kind, tuple(args))
    return out


def check_sampling(sampling: str, space: dict[str, Expression], where: str = "hyperdrive") -> None:
    """v1's rules: grid takes choice only; Bayesian takes choice, uniform, quniform."""
    allowed = {"grid": GRID_KINDS, "bayesian": BAYESIAN_KINDS, "random": set(ARITY)}.get(sampling)
    if allowed is None:
        raise InputError(f"{where}.sampling: {sampling!r}; one of random, grid, bayesian")
    for name, expr in space.items():
        if expr.kind not in allowed:
            raise InputError(f"{where}.parameter_space.{name}: {sampling} sampling does not take {expr.kind} "
                             f"(it takes {', '.join(sorted(allowed))}); use random sampling, or a choice")


def grid_size(space: dict[str, Expression]) -> int:
    return math.prod(len(e.args) for e in space.values())


def grid(space: dict[str, Expression]) -> Iterator[dict[str, Any]]:
    """Every combination of the choices, in order."""
    names = list(space)
    for values in itertools.product(*(space[n].args for n in names)):
        yield dict(zip(names, values))


def random_samples(space: dict[str, Expression], seed: int | None) -> Iterator[dict[str, Any]]:
    """Independent draws, reproducible with ``seed`` (the n-th sample is always the same)."""
    rng = random.Random(seed)
    while True:
        yield {name: expr.sample(rng) for name, expr in space.items()}


def arguments(sample: dict[str, Any]) -> list[str]:
    """A sample as the script's extra arguments: ``--lr 0.01 --kernel rbf``."""
    out: list[str] = []
    for name, value in sample.items():
        out += [name, format(value, ".10g") if isinstance(value, float) else str(value)]
    return out
