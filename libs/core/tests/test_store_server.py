"""What only the server adapter does: share a server with others, and lose it."""

from __future__ import annotations

from typing import Any

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


class RecordingClient(QdrantClient):
    """The real in-memory client, remembering the arguments of each collection it creates (local
    mode accepts shard and replication settings but does not keep them)."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.created: list[dict[str, Any]] = []

    def create_collection(self, collection_name: str, **kwargs: Any) -> bool:  # type: ignore[override]
        self.created.append(kwargs)
        return super().create_collection(collection_name, **kwargs)


def test_a_corpus_collection_is_created_with_the_stores_shards_and_replication_factor() -> None:
    client = RecordingClient()
    QdrantServerDocumentStore(client, shard_number=3, replication_factor=2).ensure_collection("corpus", 4)
    QdrantServerDocumentStore(client).ensure_collection("other", 4)

    assert (client.created[0]["shard_number"], client.created[0]["replication_factor"]) == (3, 2)
    assert (client.created[1]["shard_number"], client.created[1]["replication_factor"]) == (None, None)


@pytest.mark.parametrize("settings", [{"shard_number": 0}, {"replication_factor": -1}])
def test_a_shard_or_replica_count_below_1_is_refused(settings: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="give 1 or more"):
        QdrantServerDocumentStore(QdrantClient(":memory:"), **settings)
