"""Both adapters reject the same bad requests with the same error types and sentences."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from featurelens.store import (
    CollectionNotFoundError,
    DocFilter,
    DocumentStore,
    EdgeDocumentStore,
    FeatureRef,
    InvalidQueryError,
    PointRecord,
    QdrantServerDocumentStore,
    QueryRequest,
    SearchMode,
    SparseVec,
)

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")

DIM = 8
SAE = "sae-a"


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _record(doc_id: str, seed: int, **overrides: Any) -> PointRecord:
    fields: dict[str, Any] = {
        "dense": _unit(seed),
        "sparse": {SAE: SparseVec([seed % 16, 20 + seed % 7], [1.0, 0.5])},
        "payload": {"title": doc_id, "categories": ["cs.LG"], "date": "2020-01-02"},
    }
    fields.update(overrides)
    return PointRecord(doc_id, **fields)


# One store per adapter for the whole module: every call below is refused before it writes.
@pytest.fixture(scope="module", params=["edge", "server"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DocumentStore]:
    impl: DocumentStore
    if request.param == "edge":
        impl = EdgeDocumentStore(tmp_path_factory.mktemp("edge"))
    else:
        impl = QdrantServerDocumentStore(QdrantClient(":memory:"))
    impl.ensure_collection("docs", DIM, [SAE])
    impl.upsert("docs", [_record(f"d{i}", i) for i in range(10)])
    yield impl
    impl.close()


UNKNOWN_COLLECTION_CALLS: dict[str, Callable[[DocumentStore], Any]] = {
    "collection_info": lambda s: s.collection_info("missing"),
    "upsert": lambda s: s.upsert("missing", [_record("x", 1)]),
    "update_vectors": lambda s: s.update_vectors("missing", {"x": {SAE: SparseVec([1], [1.0])}}),
    "set_payload": lambda s: s.set_payload("missing", ["x"], {"title": "t"}),
    "query": lambda s: s.query("missing", QueryRequest(SearchMode.DENSE, dense=_unit(1))),
    "scroll": lambda s: s.scroll("missing"),
    "retrieve": lambda s: s.retrieve("missing", ["x"]),
    "delete": lambda s: s.delete("missing", ["x"]),
    "count": lambda s: s.count("missing"),
    "sample": lambda s: s.sample("missing", 3, seed=1),
    "optimize": lambda s: s.optimize("missing"),
}


@pytest.mark.parametrize("call", list(UNKNOWN_COLLECTION_CALLS))
def test_every_call_on_an_unknown_collection_raises_collection_not_found(
    store: DocumentStore, call: str
) -> None:
    with pytest.raises(CollectionNotFoundError, match="'missing'"):
        UNKNOWN_COLLECTION_CALLS[call](store)


def test_a_query_vector_of_the_wrong_dimension_is_rejected_with_a_sentence(store: DocumentStore) -> None:
    with pytest.raises(InvalidQueryError, match=r"the dense query vector has shape \(5,\), but .* 8 dims"):
        store.query("docs", QueryRequest(SearchMode.DENSE, dense=np.ones(5, np.float32)))


def test_a_document_of_the_wrong_dimension_is_rejected_and_nothing_of_its_batch_is_written(
    store: DocumentStore,
) -> None:
    with pytest.raises(InvalidQueryError, match="dense vector of doc 'bad'"):
        store.upsert("docs", [_record("good", 1), _record("bad", 2, dense=np.ones(9, np.float32))])
    assert store.retrieve("docs", ["good"]) == []


@pytest.mark.parametrize(
    "request_",
    [
        QueryRequest(SearchMode.DENSE, dense=np.array([np.nan] + [1.0] * (DIM - 1), np.float32)),
        QueryRequest(SearchMode.DENSE, dense=np.zeros(DIM, np.float32)),
        QueryRequest(SearchMode.SPARSE, sparse=SparseVec([1, 2], [np.inf, 1.0]), sae_id=SAE),
        QueryRequest(SearchMode.SPARSE, sparse=SparseVec([3, 3], [1.0, 1.0]), sae_id=SAE),
        QueryRequest(SearchMode.SPARSE, sparse=SparseVec([-1], [1.0]), sae_id=SAE),
        QueryRequest(SearchMode.SPARSE, sparse=SparseVec([1], [0.0]), sae_id=SAE),
        QueryRequest(SearchMode.SPARSE, sparse=SparseVec([1], [1.0]), sae_id="no-such-sae"),
        QueryRequest(SearchMode.HYBRID, dense=_unit(1)),
        QueryRequest(
            SearchMode.HYBRID, dense=_unit(1), sparse=SparseVec([1], [1.0]), sae_id=SAE, dense_weight=-1
        ),
        QueryRequest(SearchMode.DENSE, dense=_unit(1), top_k=0),
        QueryRequest(SearchMode.DENSE, dense=_unit(1), offset=-1),
        QueryRequest(SearchMode.DENSE, dense=_unit(1), filter=DocFilter(date_from="2020-13-01")),
        QueryRequest(
            SearchMode.DENSE, dense=_unit(1), filter=DocFilter(date_from="2021-01-01", date_to="2020-01-01")
        ),
        QueryRequest(SearchMode.DENSE, dense=_unit(1), filter=DocFilter(must_fire=(FeatureRef("other", 1),))),
        QueryRequest(SearchMode.DENSE, dense=_unit(1), with_sparse=["other"]),
    ],
    ids=[
        "nan_dense",
        "zero_dense",
        "inf_sparse",
        "repeated_index",
        "negative_index",
        "only_zeros",
        "unknown_sae",
        "hybrid_without_sparse",
        "negative_weight",
        "top_k_zero",
        "negative_offset",
        "bad_date",
        "reversed_dates",
        "filter_unknown_sae",
        "vectors_of_unknown_sae",
    ],
)
def test_malformed_queries_are_invalid(store: DocumentStore, request_: QueryRequest) -> None:
    with pytest.raises(InvalidQueryError):
        store.query("docs", request_)


def test_nan_vectors_are_rejected_before_they_reach_the_engine(store: DocumentStore) -> None:
    with pytest.raises(InvalidQueryError, match="NaN"):
        store.upsert("docs", [_record("n", 1, dense=np.full(DIM, np.nan, np.float32))])
    with pytest.raises(InvalidQueryError, match="NaN"):
        store.upsert("docs", [_record("n", 1, sparse={SAE: SparseVec([1], [np.nan])})])
    with pytest.raises(InvalidQueryError, match="NaN"):
        store.update_vectors("docs", {"d1": {SAE: SparseVec([1], [np.nan])}})
    assert store.count("docs") == 10


def test_latents_of_an_sae_the_collection_lacks_are_rejected(store: DocumentStore) -> None:
    with pytest.raises(InvalidQueryError, match="ensure_collection"):
        store.upsert("docs", [_record("x", 1, sparse={"other": SparseVec([1], [1.0])})])
    with pytest.raises(InvalidQueryError, match="'other'"):
        store.update_vectors("docs", {"d1": {"other": SparseVec([1], [1.0])}})


@pytest.mark.parametrize(
    "payload",
    [
        {"date": "02/01/2020"},
        {"date": "2021-02-29"},
        {"categories": "cs.LG"},
        {"date_int": 1},
        {"features_x": [1]},
    ],
)
def test_bad_or_derived_payload_fields_are_rejected(store: DocumentStore, payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidQueryError):
        store.upsert("docs", [_record("x", 1, payload=payload)])
    with pytest.raises(InvalidQueryError):
        store.set_payload("docs", ["d1"], payload)


def test_a_collection_cannot_change_its_dense_dimension(store: DocumentStore) -> None:
    with pytest.raises(InvalidQueryError, match="has 8-dim dense vectors, not 16"):
        store.ensure_collection("docs", 16, [SAE])


@pytest.mark.parametrize("name", ["a/b", "", "../x", "with space", "-dash-first", "x" * 200])
def test_collection_names_outside_the_allowed_alphabet_are_invalid(store: DocumentStore, name: str) -> None:
    with pytest.raises(InvalidQueryError, match="collection name"):
        store.ensure_collection(name, DIM)


def test_a_scroll_offset_the_store_did_not_issue_is_invalid(store: DocumentStore) -> None:
    with pytest.raises(InvalidQueryError, match="offset"):
        store.scroll("docs", offset="page-2")


def test_errors_are_value_and_lookup_errors_too(store: DocumentStore) -> None:
    with pytest.raises(LookupError):
        store.count("missing")
    with pytest.raises(ValueError, match="sample size"):
        store.sample("docs", -1, seed=0)
