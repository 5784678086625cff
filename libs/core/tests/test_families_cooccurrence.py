"""Sparse co-occurrence: the binary activations, C = AᵀA, the normalisation and the thresholded graph."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from featurelens.families import (
    Cooccurrence,
    GraphConfig,
    activations_from_topk,
    binarise,
    cooccurrence,
    normalise,
    thresholded_edges,
)


def _random_topk(n_docs: int, num_latents: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    indices = np.stack([rng.choice(num_latents, size=k, replace=False) for _ in range(n_docs)])
    values = rng.standard_normal((n_docs, k)) + 0.5
    return indices, values


def _dense_activations(indices: np.ndarray, values: np.ndarray, num_latents: int) -> np.ndarray:
    dense = np.zeros((indices.shape[0], num_latents), dtype=np.int64)
    for row, (idx, val) in enumerate(zip(indices, values, strict=True)):
        dense[row, idx[val > 0]] = 1
    return dense


def test_the_activation_matrix_is_binary_csr_with_at_most_k_entries_a_row() -> None:
    indices, values = _random_topk(50, 20, 4, seed=0)
    a = activations_from_topk(indices, 20, values)
    assert isinstance(a, sp.csr_array)
    assert a.shape == (50, 20)
    assert set(np.unique(a.data)) == {1}
    assert np.diff(a.indptr).max() <= 4
    np.testing.assert_array_equal(a.toarray(), _dense_activations(indices, values, 20))


def test_sparse_cooccurrence_equals_a_dense_numpy_computation() -> None:
    indices, values = _random_topk(300, 40, 5, seed=1)
    dense = _dense_activations(indices, values, 40)
    cooc = cooccurrence(activations_from_topk(indices, 40, values))
    np.testing.assert_array_equal(cooc.counts().toarray(), dense.T @ dense)
    np.testing.assert_array_equal(cooc.densities, dense.sum(axis=0))
    assert cooc.num_docs == 300
    np.testing.assert_allclose(cooc.density_fraction(), dense.mean(axis=0))


def test_a_csr_of_real_valued_activations_gives_the_same_cooccurrence_as_index_rows() -> None:
    indices, values = _random_topk(100, 30, 4, seed=2)
    rows = np.repeat(np.arange(100), 4)
    csr = sp.csr_array((values.ravel(), (rows, indices.ravel())), shape=(100, 30))
    from_csr = cooccurrence(csr)
    from_rows = cooccurrence(activations_from_topk(indices, 30, values))
    np.testing.assert_array_equal(from_csr.counts().toarray(), from_rows.counts().toarray())
    np.testing.assert_array_equal(binarise(csr).toarray(), (csr.toarray() > 0).astype(np.int32))


def test_the_normalisation_is_symmetric_and_conditions_on_the_sparser_feature() -> None:
    # 3 co-occurrences between a feature on 100 documents and one on 3: 3 / (3 + 1) either way.
    assert normalise(3, 100, 3, num_docs=None) == normalise(3, 3, 100, num_docs=None) == pytest.approx(0.75)
    assert normalise(3, 100, 3, num_docs=None, smoothing=0.0) == pytest.approx(1.0)
    assert normalise(0, 0, 0, num_docs=None, smoothing=0.0) == 0.0


def test_the_normalisation_subtracts_the_chance_that_the_denser_feature_fires() -> None:
    # The denser feature fires on 100 of 1,000 documents: by chance it fires on 10% of the sparser
    # one's documents, so 10% scores 0, 55% scores half way, and always together still scores 1.
    assert normalise(2, 100, 20, num_docs=1000, smoothing=0.0) == pytest.approx(0.0)
    assert normalise(11, 100, 20, num_docs=1000, smoothing=0.0) == pytest.approx(0.5)
    assert normalise(20, 100, 20, num_docs=1000, smoothing=0.0) == pytest.approx(1.0)
    # Below chance is clipped to 0, and a feature firing on every document links to nothing.
    assert normalise(0, 100, 20, num_docs=1000) == 0.0
    assert normalise(20, 1000, 20, num_docs=1000) == 0.0
    # Sparse pairs barely move: 3 of 3 next to a feature on 100 of 100,000 documents.
    assert normalise(3, 100, 3, num_docs=100_000) == pytest.approx(0.75, abs=1e-3)


def test_a_dense_feature_that_fires_independently_of_the_others_gets_no_edges() -> None:
    # Feature 0 fires on a random 30% of the documents; 1 and 2 always fire together on 5%; every
    # document has one of 10 other features (each on ~2,000 documents, where the noise of the
    # share of them that 0 fires on is ~0.01, far under the threshold of 0.1).
    rng = np.random.default_rng(0)
    num_docs = 20_000
    rows, cols = [], []
    for doc in range(num_docs):
        if rng.random() < 0.3:
            rows.append(doc)
            cols.append(0)
        if rng.random() < 0.05:
            rows += [doc, doc]
            cols += [1, 2]
        rows.append(doc)
        cols.append(3 + int(rng.integers(0, 10)))
    activations = sp.csr_array((np.ones(len(rows), np.int32), (rows, cols)), shape=(num_docs, 13))
    edges = thresholded_edges(cooccurrence(activations), GraphConfig(threshold=0.1))
    pairs = set(zip(edges.source.tolist(), edges.target.tolist(), strict=True))
    assert (1, 2) in pairs
    assert not any(0 in pair for pair in pairs)


def test_thresholded_edges_are_the_upper_triangle_of_the_dense_normalised_matrix() -> None:
    indices, values = _random_topk(300, 40, 5, seed=3)
    dense = _dense_activations(indices, values, 40)
    c = dense.T @ dense
    d = np.diag(c)
    p = c / (np.minimum(d[:, None], d[None, :]) + 1.0)
    chance = np.maximum(d[:, None], d[None, :]) / 300
    w = np.maximum((p - chance) / (1.0 - chance), 0.0)
    expected = [(i, j) for i in range(40) for j in range(i + 1, 40) if w[i, j] >= 0.05]
    cooc = cooccurrence(activations_from_topk(indices, 40, values))
    edges = thresholded_edges(cooc, GraphConfig(threshold=0.05, block_rows=7))
    assert list(zip(edges.source.tolist(), edges.target.tolist(), strict=True)) == expected
    np.testing.assert_allclose(edges.weight, [w[i, j] for i, j in expected])
    assert edges.num_edges == len(expected) > 0


def _unblocked_edges(cooc: Cooccurrence, config: GraphConfig) -> list[tuple[int, int, float]]:
    """The thresholded upper triangle of the whole of C, normalised in one piece."""
    c = cooc.counts().tocoo()
    upper = c.col > c.row
    rows, cols = c.row[upper].astype(np.int64), c.col[upper].astype(np.int64)
    w = normalise(
        c.data[upper],
        cooc.densities[rows],
        cooc.densities[cols],
        num_docs=cooc.num_docs,
        smoothing=config.smoothing,
    )
    keep = w >= config.threshold
    return sorted(zip(rows[keep].tolist(), cols[keep].tolist(), w[keep].tolist(), strict=True))


@pytest.mark.parametrize("block_rows", [1, 3, 17, 64, 10_000])
def test_blocked_thresholded_edges_equal_the_edges_of_the_whole_matrix(block_rows: int) -> None:
    # Zipf-like firing, so a few dense features co-occur with many and blocks differ in size.
    rng = np.random.default_rng(7)
    num_latents, k = 120, 6
    p = 1.0 / (np.arange(num_latents) + 3.0)
    indices = np.stack([rng.choice(num_latents, size=k, replace=False, p=p / p.sum()) for _ in range(400)])
    cooc = cooccurrence(activations_from_topk(indices, num_latents, rng.standard_normal((400, k)) + 1.0))
    config = GraphConfig(threshold=0.15, block_rows=block_rows)
    edges = thresholded_edges(cooc, config)
    expected = _unblocked_edges(cooc, config)
    assert len(expected) > 50
    got = list(zip(edges.source.tolist(), edges.target.tolist(), edges.weight.tolist(), strict=True))
    assert got == expected


def test_rows_of_the_cooccurrence_on_demand_equal_the_rows_of_the_whole_matrix() -> None:
    indices, values = _random_topk(200, 30, 4, seed=5)
    cooc = cooccurrence(activations_from_topk(indices, 30, values))
    whole = cooc.counts().toarray()
    features = [17, 3, 3, 29]
    np.testing.assert_array_equal(cooc.counts(features).toarray(), whole[features])
    np.testing.assert_array_equal(cooc.among(features), whole[np.ix_(features, features)])
    np.testing.assert_array_equal(cooc.among_sparse(features).toarray(), whole[np.ix_(features, features)])


def test_a_feature_that_never_fires_has_density_zero_and_no_edges() -> None:
    indices = np.array([[0, 1], [0, 2], [1, 2]])
    cooc = cooccurrence(activations_from_topk(indices, 4))
    assert cooc.densities.tolist() == [2, 2, 2, 0]
    edges = thresholded_edges(cooc, GraphConfig(threshold=0.1))
    assert 3 not in edges.source.tolist() + edges.target.tolist()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"smoothing": -1.0}, "smoothing"),
        ({"block_rows": 0}, "block_rows"),
    ],
)
def test_a_graph_config_out_of_range_names_its_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GraphConfig(**kwargs)  # type: ignore[arg-type]


def test_index_rows_outside_the_latents_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        activations_from_topk(np.array([[0, 4]]), 4)
