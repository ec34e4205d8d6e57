"""The parts of HyperDrive-style tuning that are arithmetic (issue 24): v1's parameter
expressions and their sampling, and the early-termination policies' decisions."""

from __future__ import annotations

import math

import pytest

from runctl.config import hyperdrive as hd
from runctl.errors import InputError
from runctl.ops.hyperdrive import policy, space


def test_every_v1_expression_samples_with_v1s_meaning() -> None:
    s = hd.parse_space({"--kernel": {"choice": ["linear", "rbf", "poly"]}, "penalty": {"uniform": [0.5, 2.0]},
                     "--lr": {"loguniform": [-9, -2]}, "--batch": {"quniform": [16, 128, 16]},
                     "--layers": {"randint": 4}, "--init": {"normal": [0, 1]}, "--drop": {"qnormal": [0.5, 0.1, 0.05]},
                     "--scale": {"lognormal": [0, 0.5]}, "--wd": {"qloguniform": [-6, -2, 0.001]},
                     "--ls": {"qlognormal": [0, 0.5, 0.25]}})
    assert "--penalty" in s, "a name without dashes is passed as --name"
    samples = [x for _, x in zip(range(500), space.random_samples(s, seed=7))]
    assert samples[:20] == [x for _, x in zip(range(20), space.random_samples(s, seed=7))], "same seed, same samples"
    assert samples[:5] != [x for _, x in zip(range(5), space.random_samples(s, seed=8))]
    assert {x["--kernel"] for x in samples} == {"linear", "rbf", "poly"}
    assert all(0.5 <= x["--penalty"] <= 2.0 for x in samples)
    assert all(math.exp(-9) <= x["--lr"] <= math.exp(-2) for x in samples), "loguniform is exp(uniform(low, high))"
    assert all(x["--batch"] % 16 == 0 and 16 <= x["--batch"] <= 128 for x in samples)
    assert {x["--layers"] for x in samples} == {0, 1, 2, 3}, "randint(upper) is [0, upper)"
    assert all(x["--scale"] > 0 for x in samples) and all(abs(x["--drop"] / 0.05 - round(x["--drop"] / 0.05)) < 1e-9
                                                          for x in samples)
    assert abs(sum(x["--init"] for x in samples) / 500) < 0.2, "normal(0, 1) centres on 0"
    assert space.arguments({"--lr": 0.001, "--kernel": "rbf"}) == ["--lr", "0.001", "--kernel", "rbf"]


def test_grid_covers_the_product_and_v1s_rules_hold() -> None:
    s = hd.parse_space({"--a": {"choice": [1, 2, 3]}, "--b": {"choice": ["x", "y"]}})
    points = list(space.grid(s))
    assert len(points) == hd.grid_size(s) == 6 and {(p["--a"], p["--b"]) for p in points} == {
        (a, b) for a in (1, 2, 3) for b in ("x", "y")}
    hd.check_sampling("grid", s)
    with pytest.raises(InputError, match="grid sampling does not take uniform"):
        hd.check_sampling("grid", hd.parse_space({"--lr": {"uniform": [0, 1]}}))
    with pytest.raises(InputError, match="bayesian sampling does not take loguniform"):
        hd.check_sampling("bayesian", hd.parse_space({"--lr": {"loguniform": [-3, -1]}}))
    hd.check_sampling("bayesian", hd.parse_space({"--lr": {"quniform": [0, 1, 0.1]}, "--k": {"choice": [1]}}))


@pytest.mark.parametrize("bad, says", [
    ({"--x": {"nonsense": [1]}}, "unknown expression 'nonsense'"),
    ({"--x": {"uniform": [2, 1]}}, "needs low < high"),
    ({"--x": {"uniform": [1]}}, "uniform takes 2 number(s)"),
    ({"--x": {"normal": [0, 0]}}, "needs sigma > 0"),
    ({"--x": {"quniform": [0, 1, 0]}}, "needs q > 0"),
    ({"--x": {"randint": 0}}, "randint takes an integer upper bound >= 1"),
    ({"--x": {"choice": []}}, "at least one option"),
    ({"--x": 5}, "one expression"),
    ({}, "a mapping of the script's arguments"),
])
def test_a_bad_expression_is_one_clear_error(bad: dict, says: str) -> None:
    with pytest.raises(InputError) as e:
        hd.parse_space(bad)
    assert says in str(e.value)


def test_bandit_follows_v1s_arithmetic() -> None:
    # v1's own example: the best run reports 0.8 at the evaluation, slack_factor 0.2 (maximize):
    # runs whose best is under 0.8 / 1.2 = 0.667 are cancelled.
    p = hd.parse_policy({"bandit": {"slack_factor": 0.2, "evaluation_interval": 1, "delay_evaluation": 0}})
    cut = policy.decide(p, "maximize", {"a": [0.8], "b": [0.7], "c": [0.6]})
    assert set(cut) == {"c"} and "0.6 < 0.666667" in cut["c"] and "slack_factor 0.2" in cut["c"]
    amount = hd.parse_policy({"bandit": {"slack_amount": 0.1}})
    assert set(policy.decide(amount, "minimize", {"a": [0.30], "b": [0.39], "c": [0.41]})) == {"c"}, "0.41 > 0.30 + 0.1"
    late = hd.parse_policy({"bandit": {"slack_factor": 0.1, "evaluation_interval": 2, "delay_evaluation": 3}})
    assert [n for n in range(1, 10) if policy.evaluates_at(late, n)] == [4, 6, 8], \
        "every multiple of the interval from the delay on (v1)"
    v1_example = hd.parse_policy({"bandit": {"slack_factor": 0.1, "evaluation_interval": 1, "delay_evaluation": 5}})
    assert [n for n in range(1, 8) if policy.evaluates_at(v1_example, n)] == [5, 6, 7]
    assert policy.decide(late, "maximize", {"a": [1, 1], "b": [0, 0]}) == {}, "before the delay: nothing"
    assert set(policy.decide(late, "maximize", {"a": [1] * 4, "b": [0] * 4})) == {"b"}


def test_median_stopping_and_truncation_selection() -> None:
    median = hd.parse_policy({"median_stopping": {"evaluation_interval": 1, "delay_evaluation": 0}})
    reports = {"a": [0.9, 0.9], "b": [0.8, 0.85], "c": [0.2, 0.3]}
    assert set(policy.decide(median, "maximize", reports)) == {"c"}, "0.3 < the median of 0.9 and 0.825"
    trunc = hd.parse_policy({"truncation_selection": {"truncation_percentage": 20}})
    five = {c: [v] for c, v in zip("abcde", [0.5, 0.4, 0.9, 0.1, 0.7])}
    assert set(policy.decide(trunc, "maximize", five)) == {"d"}, "20% of 5 runs: the lowest one"
    assert set(policy.decide(trunc, "minimize", five)) == {"c"}
    assert policy.decide(hd.parse_policy("none"), "maximize", five) == {}


@pytest.mark.parametrize("bad, says", [
    ({"bandit": {}}, "slack_factor or slack_amount"),
    ({"bandit": {"slack_factor": 0.1, "slack_amount": 0.1}}, "slack_factor or slack_amount"),
    ({"bandit": {"slack_factor": -1}}, "a number > 0"),
    ({"truncation_selection": {"truncation_percentage": 100}}, "from 1 to 99"),
    ({"median_stopping": {"evaluation_interval": 0}}, "evaluation_interval is an integer >= 1"),
    ({"bandit": {"slack_factor": 0.1, "typo": 1}}, "unknown field(s) typo"),
    ({"quantile": {}}, "unknown policy 'quantile'"),
])
def test_a_bad_policy_is_one_clear_error(bad: dict, says: str) -> None:
    with pytest.raises(InputError) as e:
        hd.parse_policy(bad)
    assert says in str(e.value)
