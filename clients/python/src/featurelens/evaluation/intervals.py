"""95% intervals for the evaluation's figures: a proportion (Wilson) and a mean (normal).

Wilson's interval, not the textbook ``p ± 1.96·sqrt(p(1-p)/n)``: at the rates steering reaches
(0.9 and above) and the trial counts a quick run affords (tens), the textbook interval covers far
less than 95% and can pass 1; Wilson's stays inside [0, 1] and covers close to its level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The normal quantile of a two-sided 95% interval.
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Proportion:
    """``successes`` of ``n`` trials, the rate and its 95% Wilson interval (NaN when ``n`` is 0)."""

    successes: int
    n: int
    rate: float
    low: float
    high: float


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``successes / n`` at the level ``z`` gives.

    (NaN, NaN) for ``n`` = 0: no trials say nothing about the rate.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"successes must be between 0 and n, got {successes} of {n}")
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0 or n successes the interval touches 0 or 1 exactly; rounding would leave it a hair off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def proportion(successes: int, n: int) -> Proportion:
    """The rate of ``successes`` in ``n`` trials with its 95% Wilson interval."""
    low, high = wilson_interval(successes, n)
    rate = successes / n if n else math.nan
    return Proportion(successes, n, rate, low, high)


def mean_interval(values: Sequence[float], z: float = Z_95) -> tuple[float, float]:
    """The mean of ``values`` and the half-width of its 95% normal interval (z times the standard
    error, with the sample standard deviation); (NaN, NaN) for no values, (mean, NaN) for one."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    mean = math.fsum(values) / n
    if n == 1:
        return (mean, math.nan)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return (mean, z * math.sqrt(variance / n))
