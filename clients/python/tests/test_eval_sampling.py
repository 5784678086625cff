"""Seeded sampling of the steering trials: without replacement, reproducible, density-matched."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from featurelens.evaluation.sampling import DISTRACTORS, density_bins, draw_candidates, sample_distinct

#: 300 features with spread-out densities; every 10th never fires.
DENSITIES = {f: (0.0 if f % 10 == 0 else ((f * 37) % 300 + 1) / 1000) for f in range(300)}


def test_sample_distinct_never_repeats_and_is_seeded() -> None:
    population = list(range(50))
    first = sample_distinct(np.random.default_rng(5), population, 50)
    assert sorted(first) == population  # all of them, each once
    some = sample_distinct(np.random.default_rng(5), population, 20)
    assert len(set(some)) == 20
    assert sample_distinct(np.random.default_rng(5), population, 20) == some
    assert sample_distinct(np.random.default_rng(6), population, 20) != some


def test_sample_distinct_refuses_more_than_there_are() -> None:
    with pytest.raises(ValueError, match="cannot draw 4 distinct items from 3"):
        sample_distinct(np.random.default_rng(0), [1, 2, 3], 4)


def test_density_bins_are_quantiles_of_the_firing_features() -> None:
    bins = density_bins(DENSITIES, bins=10)
    assert set(bins) == {f for f, d in DENSITIES.items() if d > 0}
    sizes = Counter(bins.values())
    assert sorted(sizes) == list(range(10))
    assert max(sizes.values()) - min(sizes.values()) <= 1
    # Rarer features sit in lower bins.
    ordered = sorted(bins, key=lambda f: DENSITIES[f])
    assert [bins[f] for f in ordered] == sorted(bins[f] for f in ordered)


def test_candidates_are_distinct_and_of_the_targets_density() -> None:
    bins = density_bins(DENSITIES, bins=10)
    rng = np.random.default_rng(0)
    targets = set(range(0, 300, 3))
    pool = set(range(300)) - {7, 8}
    for _ in range(300):
        drawn = draw_candidates(rng, targets, pool, bins)
        assert drawn is not None
        assert drawn.target in targets
        assert DENSITIES[drawn.target] > 0
        assert len(drawn.distractors) == DISTRACTORS
        assert len(set(drawn.all)) == DISTRACTORS + 1
        assert set(drawn.distractors) <= pool
        assert {bins[f] for f in drawn.all} == {bins[drawn.target]}


def test_the_same_seed_draws_the_same_trials() -> None:
    bins = density_bins(DENSITIES)

    def draws(seed: int) -> list[tuple[int, ...]]:
        rng = np.random.default_rng(seed)
        found = [draw_candidates(rng, set(bins), set(bins), bins) for _ in range(50)]
        return [c.all for c in found if c is not None]

    assert draws(11) == draws(11)
    assert draws(11) != draws(12)


def test_targets_spread_over_the_pool() -> None:
    bins = density_bins(DENSITIES)
    rng = np.random.default_rng(1)
    targets = Counter(
        c.target
        for c in (draw_candidates(rng, set(bins), set(bins), bins) for _ in range(2700))
        if c is not None
    )
    # 270 firing features, 2,700 draws: each about 10 times, none left out by a biased draw.
    assert len(targets) >= 260
    assert max(targets.values()) <= 30


def test_no_candidates_when_no_target_has_enough_company() -> None:
    bins = {1: 0, 2: 0, 3: 0, 4: 1}
    assert draw_candidates(np.random.default_rng(0), {1, 4}, {1, 2, 3, 4}, bins) is None
    assert draw_candidates(np.random.default_rng(0), {9}, {1, 2, 3}, bins) is None  # 9 has no bin


def test_incompatible_company_is_left_out() -> None:
    bins = {f: 0 for f in range(12)}
    rng = np.random.default_rng(3)
    for _ in range(50):
        drawn = draw_candidates(rng, {0, 1}, set(range(12)), bins, compatible=lambda t, d: d % 2 != t % 2)
        assert drawn is not None
        assert all(d % 2 != drawn.target % 2 for d in drawn.distractors)
    # Too few compatible others: no trial, rather than a mismatched one.
    assert draw_candidates(rng, {0}, set(range(12)), bins, compatible=lambda t, d: d < 3) is None
