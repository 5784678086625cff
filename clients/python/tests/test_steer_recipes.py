"""The steered query handed to engines featurelens does not run (Elasticsearch / OpenSearch, Vespa)."""

from __future__ import annotations

import numpy as np
import pytest

from featurelens.client.types import SparseVector, Steered


def _steered() -> Steered:
    return Steered(
        sae_id="s",
        vector=np.array([3.0, 4.0], dtype=np.float32),
        cosine_to_original=0.9,
        latents_before=SparseVector(np.array([1], dtype=np.int64), np.array([0.5], dtype=np.float32)),
        latents_after=SparseVector(
            np.array([7, 2, 9], dtype=np.int64), np.array([1.5, 0.25, 0.0], dtype=np.float32)
        ),
    )


def test_sparse_query_by_label_or_id_positive_weights_only() -> None:
    steered = _steered()
    assert steered.as_sparse_query() == {"7": 1.5, "2": 0.25}
    assert steered.as_sparse_query({7: "dark matter halos"}) == {"dark matter halos": 1.5, "2": 0.25}


def test_dense_query_is_the_unit_steered_vector() -> None:
    assert _steered().as_dense_query() == pytest.approx([0.6, 0.8])


def test_recipes_fit_the_engines_request_shapes() -> None:
    steered = _steered()
    elasticsearch = {"query": {"sparse_vector": {"field": "f", "query_vector": steered.as_sparse_query()}}}
    knn = {"knn": {"field": "v", "query_vector": steered.as_dense_query(), "k": 10, "num_candidates": 50}}
    vespa = {"input.query(features)": {"cells": steered.as_sparse_query()}}
    query_vector = elasticsearch["query"]["sparse_vector"]["query_vector"]
    assert all(isinstance(k, str) and v > 0 for k, v in query_vector.items())
    assert len(knn["knn"]["query_vector"]) == 2
    assert vespa["input.query(features)"]["cells"] == query_vector
