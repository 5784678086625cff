"""Seeded sampling for the steering trials: queries and candidates drawn without replacement.

The paper's evaluation drew queries and distractor topics with replacement, so one trial could
offer the same distractor twice (four candidates posing as five) and a run could count one query
many times. Here every draw is without replacement from a sorted population, with a numpy
``Generator`` the caller seeds: the same seed gives the same trials on any machine.

Distractors match the target's density (the share of documents a feature fires on): a dense
feature moves many results when steered and a rare one few, so a judge could otherwise pick the
target by how much moved rather than by what it means.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")

#: Distractors beside each target: with the target, five candidates and a chance rate of 0.2.
DISTRACTORS = 4
#: Density quantiles: candidates of one trial come from the same tenth of the density ranking.
DENSITY_BINS = 10


@dataclass(frozen=True)
class Candidates:
    """One trial's target and its distractors (distinct, none the target, same density bin)."""

    target: int
    distractors: tuple[int, ...]

    @property
    def all(self) -> tuple[int, ...]:
        """The target first, then the distractors."""
        return (self.target, *self.distractors)


def sample_distinct(rng: np.random.Generator, population: Sequence[T], n: int) -> list[T]:
    """``n`` distinct items of ``population``, in the order drawn; ValueError when it has fewer."""
    if n > len(population):
        raise ValueError(f"cannot draw {n} distinct items from {len(population)}")
    picks = rng.choice(len(population), size=n, replace=False)
    return [population[int(i)] for i in picks]


def density_bins(densities: Mapping[int, float], bins: int = DENSITY_BINS) -> dict[int, int]:
    """Each feature that fires at all (density > 0) mapped to its density quantile, 0 the rarest.

    Quantiles by rank (ties broken by feature id), so every bin holds about the same number of
    features however the densities bunch up; features that never fire are left out (steering
    one moves nothing a judge could see).
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    firing = sorted((d, f) for f, d in densities.items() if d > 0)
    count = len(firing)
    return {f: min(rank * bins // count, bins - 1) for rank, (_, f) in enumerate(firing)}


def draw_candidates(
    rng: np.random.Generator,
    targets: Collection[int],
    distractor_pool: Collection[int],
    bin_of: Mapping[int, int],
    distractors: int = DISTRACTORS,
    compatible: Callable[[int, int], bool] | None = None,
) -> Candidates | None:
    """A target drawn from ``targets`` and ``distractors`` distinct others drawn from
    ``distractor_pool`` in the target's density bin; None when no target has enough company.

    Only targets with a bin (``bin_of``) whose pool holds enough others are drawn, so a trial never
    falls back on distractors of another density. ``compatible(target, other)`` can rule out
    company (families that share members with the target, whose totals would move with it).
    """
    by_bin: dict[int, list[int]] = {}
    for item in sorted(distractor_pool):
        if item in bin_of:
            by_bin.setdefault(bin_of[item], []).append(item)

    def company(target: int) -> list[int]:
        return [
            other
            for other in by_bin.get(bin_of[target], ())
            if other != target and (compatible is None or compatible(target, other))
        ]

    def enough(target: int) -> bool:
        if compatible is None:  # counted without listing: this runs for every feature of an SAE
            pool = by_bin.get(bin_of[target], ())
            return len(pool) - (target in distractor_pool) >= distractors
        return len(company(target)) >= distractors

    eligible = [t for t in sorted(targets) if t in bin_of and enough(t)]
    if not eligible:
        return None
    target = sample_distinct(rng, eligible, 1)[0]
    return Candidates(target, tuple(sample_distinct(rng, company(target), distractors)))
