"""What only the server adapter does: share a server with others, and lose it."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from featurelens.store import (
    DocFilter,
    FeatureRef,
    InvalidQueryError,
    PointRecord,
    QdrantServerDocumentStore,
    QueryRequest,
    SearchMode,
    SparseVec,
    StoreUnavailableError,
)

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")


def test_collections_made_by_others_are_not_listed_and_not_mistaken_for_corpora() -> None:
    client = QdrantClient(":memory:")
    client.create_collection(
        "features", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
    )
    store = QdrantServerDocumentStore(client)
    store.ensure_collection("corpus", 4)
    assert store.list_collections() == ["corpus"]
    with pytest.raises(InvalidQueryError, match="not a featurelens document collection"):
        store.collection_info("features")


def test_an_sae_added_through_another_store_is_seen_without_a_restart() -> None:
    client = QdrantClient(":memory:")
    reader, writer = QdrantServerDocumentStore(client), QdrantServerDocumentStore(client)
    reader.ensure_collection("corpus", 4, ["a"])
    assert reader.collection_info("corpus").sae_ids == ("a",)
    writer.ensure_collection("corpus", 4, ["a", "b"])
    writer.upsert("corpus", [PointRecord("d1", np.ones(4, np.float32), {"b": SparseVec([2], [1.5])})])
    hits = reader.query("corpus", QueryRequest(SearchMode.SPARSE, sparse=SparseVec([2], [1.0]), sae_id="b"))
    assert [(h.doc_id, h.score) for h in hits] == [("d1", 1.5)]


def test_every_call_that_names_a_new_sae_rereads_the_schema_instead_of_refusing() -> None:
    client = QdrantClient(":memory:")
    reader, writer = QdrantServerDocumentStore(client), QdrantServerDocumentStore(client)
    reader.ensure_collection("corpus", 4, ["a"])
    writer.ensure_collection("corpus", 4, ["a", "b"])
    writer.upsert("corpus", [PointRecord("d1", np.ones(4, np.float32), {"b": SparseVec([2], [1.5])})])
    fires = DocFilter(must_fire=(FeatureRef("b", 2),))
    assert reader.count("corpus", fires) == 1
    assert [p.doc_id for p in reader.scroll("corpus", fires).points] == ["d1"]
    assert [p.sparse["b"].to_dict() for p in reader.sample("corpus", 3, seed=1, with_sparse=["b"])] == [
        {2: 1.5}
    ]


@pytest.mark.parametrize("prefer_grpc", [False, True])
def test_an_unreachable_server_is_unavailable_not_missing(prefer_grpc: bool) -> None:
    store = QdrantServerDocumentStore.from_url(
        "http://127.0.0.1:1", prefer_grpc=prefer_grpc, grpc_port=1, timeout=1, check_compatibility=False
    )
    with pytest.raises(StoreUnavailableError, match="Qdrant server"):
        store.count("corpus")
    with pytest.raises(StoreUnavailableError):
        store.list_collections()
    store.close()


def test_a_closed_local_client_is_unavailable() -> None:
    store = QdrantServerDocumentStore(QdrantClient(":memory:"))
    store.ensure_collection("corpus", 4)
    store.close()
    with pytest.raises(StoreUnavailableError):
        store.collection_info("corpus")
