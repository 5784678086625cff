"""The one fusion function both adapters use."""

from __future__ import annotations

import pytest

from featurelens.store import FusionMethod, LegHit, fuse


def _leg(*pairs: tuple[str, float]) -> list[LegHit]:
    return [LegHit(key, score) for key, score in pairs]


def test_rrf_sums_weight_over_k_plus_rank_across_legs() -> None:
    dense = _leg(("a", 0.9), ("b", 0.8), ("c", 0.7))
    sparse = _leg(("c", 5.0), ("a", 2.0))
    fused = fuse([dense, sparse], (1.0, 2.0), FusionMethod.RRF, rrf_k=60)
    scores = {h.key: h.score for h in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 2 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 2 / 61)
    assert scores["b"] == pytest.approx(1 / 62)
    assert [h.key for h in fused] == ["c", "a", "b"]
    assert fused[2].leg_scores == (0.8, None)


def test_tied_fused_scores_are_ordered_by_key() -> None:
    fused = fuse([_leg(("z", 1.0)), _leg(("m", 3.0))], (1.0, 1.0), FusionMethod.RRF)
    assert [h.key for h in fused] == ["m", "z"]
    assert fused[0].score == fused[1].score


def test_a_leg_with_weight_zero_reports_its_scores_but_does_not_rank() -> None:
    fused = fuse([_leg(("a", 0.9), ("b", 0.1)), _leg(("b", 9.0))], (1.0, 0.0), FusionMethod.RRF)
    assert [h.key for h in fused] == ["a", "b"]
    assert fused[1].leg_scores == (0.1, 9.0)


def test_dbsf_maps_mean_plus_minus_three_sigma_to_zero_and_one() -> None:
    scores = [4.0, 2.0, 0.0]  # mean 2, sample sigma 2: 4 -> (4 + 4) / 12
    fused = fuse([_leg(*zip("abc", scores, strict=True))], (1.0,), FusionMethod.DBSF)
    assert [h.score for h in fused] == pytest.approx([8 / 12, 6 / 12, 4 / 12])


def test_dbsf_weights_each_legs_normalised_scores() -> None:
    dense = _leg(("a", 0.9), ("b", 0.5), ("c", 0.1))
    sparse = _leg(("b", 10.0), ("c", 0.0))
    fused = {h.key: h.score for h in fuse([dense, sparse], (2.0, 0.5), FusionMethod.DBSF)}
    sigma_sparse = (50.0) ** 0.5
    assert fused["a"] == pytest.approx(2.0 * (0.9 - (0.5 - 3 * 0.4)) / (6 * 0.4))
    assert fused["b"] == pytest.approx(1.0 + 0.5 * (10.0 - (5.0 - 3 * sigma_sparse)) / (6 * sigma_sparse))


def test_dbsf_gives_a_single_hit_or_a_flat_leg_one_half() -> None:
    fused = fuse([_leg(("a", 3.0)), _leg(("b", 1.0), ("c", 1.0))], (1.0, 1.0), FusionMethod.DBSF)
    assert [(h.key, h.score) for h in fused] == [("a", 0.5), ("b", 0.5), ("c", 0.5)]


def test_fusion_needs_one_weight_per_leg() -> None:
    with pytest.raises(ValueError, match="one weight per leg"):
        fuse([_leg(("a", 1.0))], (1.0, 1.0), FusionMethod.RRF)
