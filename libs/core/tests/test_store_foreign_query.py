"""Querying a collection featurelens did not create: the same points rank as in a featurelens corpus."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from featurelens.store import (
    DocFilter,
    FeatureRef,
    FusionMethod,
    InvalidQueryError,
    PointRecord,
    QueryRequest,
    SearchMode,
    SparseVec,
    schema,
)
from featurelens.store.attach_engines import QdrantClientCollection
from featurelens.store.foreign_query import MAX_FILTER_BYTES, parse_filter
from featurelens.store.server import QdrantServerDocumentStore

SAE = "sae-test"
DIM = 8
N = 60


def _latents(rng: np.random.Generator) -> SparseVec:
    indices = rng.choice(32, size=4, replace=False)
    return SparseVec(indices, rng.random(4).astype(np.float32) + 0.1)


def _their_id(i: int) -> int | str:
    """Their ids mix integers and UUIDs, as a Qdrant collection may."""
    return i if i % 2 else str(uuid.UUID(int=i + 1))


@pytest.fixture
def both() -> tuple[QdrantServerDocumentStore, QdrantClientCollection]:
    """The same points as the featurelens corpus "ours" and as the user's collection "theirs"."""
    rng = np.random.default_rng(7)
    dense = rng.normal(size=(N, DIM)).astype(np.float32)
    latents = [_latents(rng) for _ in range(N)]
    client = QdrantClient(":memory:")
    store = QdrantServerDocumentStore(client)
    store.ensure_collection("ours", DIM, [SAE])
    store.upsert(
        "ours",
        [PointRecord(f"d{i}", dense[i], {SAE: latents[i]}, {"title": f"d{i}"}) for i in range(N)],
    )
    client.create_collection(
        "theirs",
        vectors_config={"emb": models.VectorParams(size=DIM, distance=models.Distance.COSINE)},
        sparse_vectors_config={schema.sparse_vector_name(SAE): models.SparseVectorParams()},
    )
    client.upsert(
        "theirs",
        [
            models.PointStruct(
                id=_their_id(i),
                vector={
                    "emb": dense[i].tolist(),
                    schema.sparse_vector_name(SAE): models.SparseVector(
                        indices=latents[i].indices.tolist(), values=latents[i].values.tolist()
                    ),
                },
                payload={"doc": f"d{i}", "n": i, schema.features_field(SAE): schema.firing(latents[i])},
            )
            for i in range(N)
        ],
    )
    return store, QdrantClientCollection(client, "theirs")


@pytest.mark.parametrize("fusion", [FusionMethod.RRF, FusionMethod.DBSF])
def test_a_hybrid_query_ranks_their_points_as_the_featurelens_corpus_ranks_the_same_points(
    both: tuple[QdrantServerDocumentStore, QdrantClientCollection], fusion: FusionMethod
) -> None:
    store, theirs = both
    rng = np.random.default_rng(1)
    request = QueryRequest(
        mode=SearchMode.HYBRID,
        dense=rng.normal(size=DIM).astype(np.float32),
        sparse=_latents(rng),
        sae_id=SAE,
        top_k=7,
        offset=3,
        fusion=fusion,
        dense_weight=1.0,
        sparse_weight=2.5,
        candidates=20,
        filter=DocFilter(must_not_fire=(FeatureRef(SAE, 5),)),
        with_payload=["doc"],
        with_sparse=[SAE],
    )
    ours = store.query("ours", QueryRequest(**{**request.__dict__, "with_payload": ["title"]}))
    hits = theirs.query(request, "emb", DIM, [SAE])

    assert [hit.payload["doc"] for hit in hits] == [hit.doc_id for hit in ours]
    assert [hit.score for hit in hits] == pytest.approx([hit.score for hit in ours])
    assert [hit.sparse[SAE].to_dict() for hit in hits] == [hit.sparse[SAE].to_dict() for hit in ours]
    assert {hit.doc_id for hit in hits} == {str(_their_id(int(hit.payload["doc"][1:]))) for hit in hits}


def test_their_filter_is_anded_with_the_features_that_must_fire(
    both: tuple[QdrantServerDocumentStore, QdrantClientCollection],
) -> None:
    _, theirs = both
    their_filter = parse_filter(json.dumps({"must": [{"key": "n", "range": {"gte": 30}}]}))
    request = QueryRequest(
        mode=SearchMode.DENSE,
        dense=np.ones(DIM, dtype=np.float32),
        sae_id=SAE,
        top_k=N,
        filter=DocFilter(must_fire=(FeatureRef(SAE, 3),)),
        with_payload=["n", schema.features_field(SAE)],
    )
    hits = theirs.query(request, "emb", DIM, [SAE], their_filter)

    assert hits
    assert all(hit.payload["n"] >= 30 and 3 in hit.payload[schema.features_field(SAE)] for hit in hits)
    assert set(hits[0].payload) == {"n", schema.features_field(SAE)}


def test_categories_and_dates_are_no_fields_of_their_collection(
    both: tuple[QdrantServerDocumentStore, QdrantClientCollection],
) -> None:
    _, theirs = both
    request = QueryRequest(
        mode=SearchMode.DENSE, dense=np.ones(DIM, dtype=np.float32), filter=DocFilter(categories=("x",))
    )
    with pytest.raises(InvalidQueryError, match="qdrant_filter"):
        theirs.query(request, "emb", DIM, [SAE])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not JSON"),
        ("3", "JSON object"),
        ('{"must": [{"key": "n", "rnage": {"gte": 1}}]}', "rnage"),
        ('{"mutt": []}', "mutt"),
        ("[" * 50_000, "qdrant_filter is"),
        (json.dumps({"must": [{"key": "k" * MAX_FILTER_BYTES, "match": {"value": 1}}]}), "64 KiB"),
    ],
)
def test_a_bad_filter_is_refused_with_the_parsers_reason(text: str, words: str) -> None:
    with pytest.raises(InvalidQueryError, match="qdrant_filter") as caught:
        parse_filter(text)
    assert words in str(caught.value)
    assert len(str(caught.value)) < 400


def test_a_good_filter_is_qdrants_own() -> None:
    parsed = parse_filter('{"should": [{"key": "lang", "match": {"any": ["en", "de"]}}], "must_not": []}')
    assert parsed == models.Filter(
        should=[models.FieldCondition(key="lang", match=models.MatchAny(any=["en", "de"]))], must_not=[]
    )
