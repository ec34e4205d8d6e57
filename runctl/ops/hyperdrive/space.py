"""Sampling a parameter space (runctl/config/hyperdrive.py defines it) as v1 did: random
draws from a seeded generator (same seed, same samples: the n-th sample never depends on
what happened before it), the grid of the choices in order, and Bayesian optimisation
(bayes.py)."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any, Iterator

from runctl.config.hyperdrive import Expression


def sample(expr: Expression, rng: random.Random) -> Any:
    """One draw of ``expr`` with v1's meaning."""
    k, a = expr.kind, expr.args
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
    return quantize(k, value, a)


def quantize(kind: str, value: float, args: tuple[Any, ...]) -> float:
    """v1's q-expressions: round(value / q) * q (as an int when q and the result are whole)."""
    if not kind.startswith("q"):
        return value
    q = args[-1]
    out = round(value / q) * q
    return int(out) if float(q).is_integer() and float(out).is_integer() else out


def grid(space: dict[str, Expression]) -> Iterator[dict[str, Any]]:
    """Every combination of the choices, in order."""
    names = list(space)
    for values in itertools.product(*(space[n].args for n in names)):
        yield dict(zip(names, values))


def random_samples(space: dict[str, Expression], seed: int | None) -> Iterator[dict[str, Any]]:
    """Independent draws, reproducible with ``seed``."""
    rng = random.Random(seed)
    while True:
        yield {name: sample(expr, rng) for name, expr in space.items()}


def nth(space: dict[str, Expression], sampling: str, seed: int | None, index: int) -> dict[str, Any]:
    """The ``index``-th sample of a grid or random sweep: the same whoever asks and when
    (a controller restarted after a kill samples exactly where the last one stopped)."""
    source = grid(space) if sampling == "grid" else random_samples(space, seed)
    return next(itertools.islice(source, index, None))


def arguments(sample: dict[str, Any]) -> list[str]:
    """A sample as the script's extra arguments: ``--lr 0.01 --kernel rbf``."""
    out: list[str] = []
    for name, value in sample.items():
        out += [name, format(value, ".10g") if isinstance(value, float) else str(value)]
    return out
