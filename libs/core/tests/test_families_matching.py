"""Matching features across SAEs by decoder cosine, and the splitting map small → large."""

from __future__ import annotations

import numpy as np
import pytest

from featurelens.families import cosine_histogram, match_features, splitting_map


def _split_decoders(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A: 12 directions in 64-d; B: each of A's directions split into two, nudged apart, shuffled.

    Returns A, B and ``origin`` (origin[j] = the feature of A that B's feature j came from).
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((12, 64)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    halves = [a + 0.25 * rng.standard_normal(a.shape).astype(np.float32) / 8 for _ in range(2)]
    b = np.concatenate(halves)
    origin = np.concatenate([np.arange(12), np.arange(12)])
    perm = rng.permutation(24)
    return a, b[perm] * 3.0, origin[perm]


def test_the_splitting_map_recovers_the_two_halves_of_every_direction() -> None:
    a, b, origin = _split_decoders(seed=0)
    split = splitting_map(a, b, chunk_size=5)
    assert len(split) == 12
    for feature, parts in enumerate(split):
        assert parts == tuple(np.flatnonzero(origin == feature).tolist())


def test_every_feature_of_b_matches_its_origin_in_a_with_a_high_cosine() -> None:
    a, b, origin = _split_decoders(seed=1)
    match = match_features(b, a, chunk_size=7)
    np.testing.assert_array_equal(match.best, origin)
    assert match.cosine.min() > 0.9


def test_chunking_does_not_change_the_match() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((50, 16)), rng.standard_normal((70, 16))
    whole, chunked = match_features(a, b, chunk_size=1000), match_features(a, b, chunk_size=3)
    np.testing.assert_array_equal(whole.best, chunked.best)
    np.testing.assert_allclose(whole.cosine, chunked.cosine, rtol=1e-6)
    brute = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(whole.best, brute.argmax(axis=1))


def test_the_histogram_counts_every_max_cosine_once_over_minus_one_to_one() -> None:
    edges, counts = cosine_histogram([0.95, 0.99, 1.0, -1.0, 0.1], num_bins=4)
    np.testing.assert_allclose(edges, [-1.0, -0.5, 0.0, 0.5, 1.0])
    assert counts.tolist() == [1, 0, 1, 3]


def test_decoders_of_different_widths_are_refused() -> None:
    with pytest.raises(ValueError, match="d_in"):
        match_features(np.eye(3), np.eye(4))
