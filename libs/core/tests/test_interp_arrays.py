"""ArraySource: a DocumentSource over texts, unit embeddings and a sparse latent matrix in memory."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from featurelens.interp.arrays import ArraySource

N_DOCS = 200
DIM = 8
NUM_LATENTS = 5


def corpus(seed: int = 0) -> tuple[list[str], list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [f"doc-{i:03d}" for i in range(N_DOCS)]
    texts = [f"text of document {i}" for i in range(N_DOCS)]
    return ids, texts, rng.standard_normal((N_DOCS, DIM)).astype(np.float32)


def source() -> ArraySource:
    """Latent 0 fires on every 4th document (activation = row / 100), latent 1 on docs 0..2,
    latent 2 never, latent 3 on every document, latent 4 on the odd documents."""
    ids, texts, embeddings = corpus()
    rows, cols, vals = [], [], []
    for i in range(N_DOCS):
        if i % 4 == 0:
            rows.append(i), cols.append(0), vals.append(1.0 + i / 100)
        if i < 3:
            rows.append(i), cols.append(1), vals.append(3.0 - i)
        rows.append(i), cols.append(3), vals.append(0.5)
        if i % 2:
            rows.append(i), cols.append(4), vals.append(2.0)
    latents = sparse.csr_matrix((vals, (rows, cols)), shape=(N_DOCS, NUM_LATENTS))
    return ArraySource(ids, texts, embeddings, latents)


def test_densities_count_the_share_of_documents_each_latent_fires_on() -> None:
    np.testing.assert_allclose(source().densities(), [50 / 200, 3 / 200, 0.0, 1.0, 100 / 200])


def test_live_features_are_the_latents_that_fire_at_least_once() -> None:
    assert source().live_features().tolist() == [0, 1, 3, 4]


def test_embeddings_are_made_unit_norm() -> None:
    doc = source().document(7)
    assert doc.embedding is not None
    assert np.linalg.norm(doc.embedding) == pytest.approx(1.0, abs=1e-6)


async def test_top_returns_the_strongest_firing_documents_strongest_first() -> None:
    top = await source().top(0, 5)
    assert [d.doc_id for d in top] == ["doc-196", "doc-192", "doc-188", "doc-184", "doc-180"]
    assert [d.activation for d in top] == pytest.approx([2.96, 2.92, 2.88, 2.84, 2.80])
    assert all(d.fires and d.embedding is not None for d in top)


async def test_top_of_a_latent_firing_on_fewer_documents_returns_them_all() -> None:
    top = await source().top(1, 10)
    assert [d.doc_id for d in top] == ["doc-000", "doc-001", "doc-002"]


async def test_firing_samples_are_seeded_random_and_only_firing() -> None:
    src = source()
    first = await src.sample(0, 10, firing=True, seed=3)
    again = await src.sample(0, 10, firing=True, seed=3)
    other = await src.sample(0, 10, firing=True, seed=4)
    assert [d.doc_id for d in first] == [d.doc_id for d in again]
    assert [d.doc_id for d in first] != [d.doc_id for d in other]
    assert len({d.doc_id for d in first}) == 10
    assert all(d.fires and int(d.doc_id[-3:]) % 4 == 0 for d in first)


async def test_non_firing_samples_are_random_not_the_corpus_first_documents() -> None:
    src = source()
    sample = await src.sample(0, 20, firing=False, seed=0)
    rows = sorted(int(d.doc_id[-3:]) for d in sample)
    assert all(row % 4 for row in rows)
    assert all(not d.fires for d in sample)
    # The first 20 non-firing documents end at row 26; a random draw of 20 from 150 reaches far past.
    assert max(rows) > 100
    assert len(set(rows)) == 20


async def test_the_same_seed_gives_different_features_different_negatives() -> None:
    src = source()
    of_latent_1 = {d.doc_id for d in await src.sample(1, 20, firing=False, seed=0)}
    of_latent_2 = {d.doc_id for d in await src.sample(2, 20, firing=False, seed=0)}
    assert of_latent_1 != of_latent_2


async def test_a_sample_larger_than_the_population_returns_the_population() -> None:
    src = source()
    assert len(await src.sample(1, 50, firing=True, seed=0)) == 3
    assert await src.sample(3, 5, firing=False, seed=0) == []


async def test_nearest_non_firing_ranks_non_firing_documents_by_cosine() -> None:
    src = source()
    target = src.document(5).embedding
    assert target is not None
    nearest = await src.nearest_non_firing(0, target, 4)
    assert nearest[0].doc_id == "doc-005"
    assert all(not d.fires for d in nearest)
    sims = [float(d.embedding @ target) for d in nearest if d.embedding is not None]
    assert sims == sorted(sims, reverse=True)
    # Row 4 fires on latent 0, so it never comes back however near it is.
    firing_target = src.document(4).embedding
    assert firing_target is not None
    assert "doc-004" not in {d.doc_id for d in await src.nearest_non_firing(0, firing_target, 50)}


async def test_nearest_non_firing_of_a_latent_firing_everywhere_is_empty() -> None:
    src = source()
    assert await src.nearest_non_firing(3, np.ones(DIM, dtype=np.float32), 5) == []


def test_from_rows_builds_the_same_matrix_as_a_top_k_code() -> None:
    ids, texts, embeddings = corpus()
    rng = np.random.default_rng(1)
    indices = np.stack([rng.choice(NUM_LATENTS, size=2, replace=False) for _ in range(N_DOCS)])
    values = rng.random((N_DOCS, 2)).astype(np.float32) + 0.1
    from_array = ArraySource.from_rows(ids, texts, embeddings, indices, values, NUM_LATENTS)
    from_lists = ArraySource.from_rows(ids, texts, embeddings, list(indices), list(values), NUM_LATENTS)
    dense = np.zeros((N_DOCS, NUM_LATENTS), dtype=np.float32)
    np.put_along_axis(dense, indices, values, axis=1)
    np.testing.assert_array_equal(from_array.latents.toarray(), dense)
    np.testing.assert_array_equal(from_lists.latents.toarray(), dense)


def test_from_rows_accepts_rows_of_different_lengths_and_drops_zero_activations() -> None:
    ids, texts, embeddings = corpus()
    indices = [[0, 3], [], *([[1]] * (N_DOCS - 2))]
    values = [[0.5, 0.0], [], *([[1.0]] * (N_DOCS - 2))]
    src = ArraySource.from_rows(ids, texts, embeddings, indices, values, NUM_LATENTS)
    assert src.live_features().tolist() == [0, 1]


@pytest.mark.parametrize(
    ("indices", "values", "message"),
    [
        ([[0, 0]], [[1.0, 2.0]], "appears twice"),
        ([[7]], [[1.0]], r"\[0, 5\)"),
        ([[0, 1]], [[1.0]], "2 indices and 1 values"),
        ([[1.5]], [[1.0]], "must be integers"),
    ],
)
def test_from_rows_refuses_malformed_rows(indices: list, values: list, message: str) -> None:
    ids, texts, embeddings = corpus()
    rest = [[2]] * (N_DOCS - 1)
    with pytest.raises(ValueError, match=message):
        ArraySource.from_rows(
            ids, texts, embeddings, indices + rest, values + [[1.0]] * (N_DOCS - 1), NUM_LATENTS
        )


def test_bad_construction_is_refused_with_a_sentence_naming_what_is_wrong() -> None:
    ids, texts, embeddings = corpus()
    latents = sparse.csr_matrix((N_DOCS, NUM_LATENTS), dtype=np.float32)
    with pytest.raises(ValueError, match="duplicates"):
        ArraySource([*ids[:-1], ids[0]], texts, embeddings, latents)
    with pytest.raises(ValueError, match="texts has 199 entries"):
        ArraySource(ids, texts[:-1], embeddings, latents)
    with pytest.raises(ValueError, match="embeddings has shape"):
        ArraySource(ids, texts, embeddings[:, :, None], latents)
    zero = embeddings.copy()
    zero[3] = 0
    with pytest.raises(ValueError, match="'doc-003' is all zeros"):
        ArraySource(ids, texts, zero, latents)
    with pytest.raises(ValueError, match=r"scipy\.sparse"):
        ArraySource(ids, texts, embeddings, latents.toarray())
    with pytest.raises(ValueError, match="negative activations"):
        ArraySource(ids, texts, embeddings, sparse.csr_matrix(-np.eye(N_DOCS, NUM_LATENTS)))
    with pytest.raises(ValueError, match="latents has 5 rows"):
        ArraySource(ids, texts, embeddings, sparse.csr_matrix((5, NUM_LATENTS)))


async def test_questions_about_an_unknown_latent_are_refused() -> None:
    src = source()
    with pytest.raises(ValueError, match="feature 5 is out of range"):
        await src.top(5, 3)
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        await src.sample(0, -1, firing=True, seed=0)
    with pytest.raises(ValueError, match="has 3 dimensions"):
        await src.nearest_non_firing(0, np.ones(3, dtype=np.float32), 2)
