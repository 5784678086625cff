"""95% intervals of the evaluation: Wilson's for a proportion, the normal one for a mean."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featurelens.evaluation.intervals import mean_interval, proportion, wilson_interval

SIMULATIONS = 4000


def test_wilson_matches_the_formula_on_known_cases() -> None:
    # Worked by hand from Wilson (1927): centre (p + z²/2n) / (1 + z²/n).
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)


def test_all_or_nothing_touches_the_edges_exactly() -> None:
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[0] == 0.0
    low, high = wilson_interval(200, 200)
    assert 0.98 < low < high == 1.0


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.9, 0.95])
@pytest.mark.parametrize("n", [20, 50, 200])
def test_wilson_covers_the_true_rate_about_95_percent_of_the_time(rate: float, n: int) -> None:
    """Seeded binomial draws: the interval holds the true rate in close to 95% of them. Wilson's
    coverage wobbles around its level with n and p (its known dips reach about 0.93); the
    textbook interval at p = 0.95, n = 20 covers only about 64%."""
    rng = np.random.default_rng(int(rate * 1000) + n)
    successes = rng.binomial(n, rate, size=SIMULATIONS)
    covered = np.mean([low <= rate <= high for low, high in (wilson_interval(int(s), n) for s in successes)])
    assert 0.92 <= covered <= 0.98, covered


def test_proportion_carries_the_rate_and_its_interval() -> None:
    result = proportion(3, 12)
    assert (result.successes, result.n, result.rate) == (3, 12, 0.25)
    assert (result.low, result.high) == wilson_interval(3, 12)


def test_no_trials_give_no_rate() -> None:
    result = proportion(0, 0)
    assert result.n == 0
    assert math.isnan(result.rate)
    assert math.isnan(result.low)
    assert math.isnan(result.high)


@pytest.mark.parametrize(("successes", "n"), [(-1, 5), (6, 5), (0, -1)])
def test_impossible_counts_are_refused(successes: int, n: int) -> None:
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval(successes, n)


def test_mean_interval_covers_the_true_mean() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(2000):
        values = rng.normal(0.6, 0.2, size=100).tolist()
        mean, half = mean_interval(values)
        covered += abs(mean - 0.6) <= half
    assert 0.93 <= covered / 2000 <= 0.97


def test_mean_interval_of_few_values() -> None:
    assert all(math.isnan(x) for x in mean_interval([]))
    mean, half = mean_interval([0.4])
    assert mean == 0.4
    assert math.isnan(half)
    mean, half = mean_interval([1.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(1.959964 * math.sqrt(2.0 / 2))
