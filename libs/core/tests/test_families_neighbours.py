"""Feature neighbours by normalised co-occurrence and by decoder cosine."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from featurelens.families import cooccurrence, cooccurrence_neighbours, decoder_neighbours


def test_cooccurrence_neighbours_are_ranked_by_normalised_cooccurrence_ties_by_id() -> None:
    # Feature 0 fires with 1 and 2 on 3 documents each (3/4), with 3 on 1 document (1/2), never with
    # 4; it fires on 8 of 100 documents, so the chance-corrected weights are (p - 0.08) / 0.92.
    docs = [{0, 1}] * 3 + [{0, 2}] * 3 + [{0, 3}, {0}, {4}] + [set()] * 91
    rows = [r for r, doc in enumerate(docs) for _ in doc]
    cols = [f for doc in docs for f in sorted(doc)]
    cooc = cooccurrence(sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(len(docs), 5)))
    near = cooccurrence_neighbours(cooc, 0, n=10)
    assert near.indices.tolist() == [1, 2, 3]
    np.testing.assert_allclose(near.scores, [(0.75 - 0.08) / 0.92, (0.75 - 0.08) / 0.92, (0.5 - 0.08) / 0.92])
    assert cooccurrence_neighbours(cooc, 0, n=1).indices.tolist() == [1]


def test_decoder_neighbours_are_ranked_by_cosine_and_leave_the_feature_out() -> None:
    decoder = np.array([[1.0, 0.0, 0.0], [3.0, 1.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    near = decoder_neighbours(decoder, 0, n=5)
    assert near.indices.tolist() == [1, 2, 4, 3]
    np.testing.assert_allclose(near.scores, [3 / np.sqrt(10), 0.0, 0.0, -1.0], atol=1e-6)


def test_a_feature_outside_the_decoder_is_refused() -> None:
    with pytest.raises(ValueError, match="feature"):
        decoder_neighbours(np.eye(3), 3)
