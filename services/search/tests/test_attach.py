"""AttachSae / DetachSae through gRPC on a collection made with plain qdrant-client (local path mode).

The search service runs on the server store over the same qdrant-client as the test (local mode
allows one client per folder), so the "user" builds their collection with that client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from search_testing import CountingBackend, Stack, failure_of, index_requests, serve_stack

from featurelens.corpus import Record
from featurelens.embedding.backends import EmbeddingBackend
from featurelens.store import schema
from featurelens.store.server import QdrantServerDocumentStore
from featurelens.v1 import common_pb2, sae_pb2, sae_pb2_grpc, search_pb2

THEIRS = "their-docs"
N = 120


@pytest.fixture
def client(tmp_path: Path) -> QdrantClient:
    return QdrantClient(path=str(tmp_path / "qdrant"))


def _build(client: QdrantClient, wordllama: EmbeddingBackend, records: list[Record]) -> None:
    vectors = wordllama.embed([r.embedding_text for r in records[:N]]).vectors
    client.create_collection(
        THEIRS,
        vectors_config={
            "emb": models.VectorParams(size=wordllama.dim, distance=models.Distance.COSINE),
            "extra": models.VectorParams(size=3, distance=models.Distance.DOT),
        },
    )
    points = [
        models.PointStruct(
            id=i + 1,
            vector={"emb": vectors[i].tolist(), "extra": [float(i), 1.0, 0.0]},
            payload={"their_id": r.id, "tenant": "a" if i % 2 else "b", "title": r.title},
        )
        for i, r in enumerate(records[:N])
    ]
    client.upsert(THEIRS, points)


def _snapshot(client: QdrantClient) -> Any:
    records, _ = client.scroll(THEIRS, limit=10_000, with_payload=True, with_vectors=True)
    params = client.get_collection(THEIRS).config.params
    # Local mode reports "no sparse vectors" as None before and {} after a delete_vector_name.
    return sorted((r.id, r.vector, r.payload) for r in records), params.vectors, params.sparse_vectors or {}


@pytest.fixture
async def server_stack(
    backend: CountingBackend, models_dir: Path, tmp_path: Path, client: QdrantClient
) -> AsyncIterator[Stack]:
    async with serve_stack(
        backend, models_dir, tmp_path / "unused-edge", open_store=lambda: QdrantServerDocumentStore(client)
    ) as stack:
        yield stack


async def _attach(stack: Stack, **fields: Any) -> list[search_pb2.AttachSaeResponse]:
    request = search_pb2.AttachSaeRequest(collection=THEIRS, dense_vector="emb", **fields)
    return [response async for response in stack.stub.AttachSae(request)]


async def test_attach_cancel_resume_detach(
    server_stack: Stack, client: QdrantClient, wordllama: EmbeddingBackend, records: list[Record], sae_id: str
) -> None:
    _build(client, wordllama, records)
    before = _snapshot(client)

    dry = await _attach(server_stack, dry_run=True)
    assert len(dry) == 1
    assert dry[0].plan.points == N
    assert dry[0].plan.points_to_write == N
    assert dry[0].plan.add_sparse_config
    assert dry[0].plan.id_type == "integer"
    assert dry[0].plan.sparse_vector == schema.sparse_vector_name(sae_id)
    assert dry[0].plan.payload_key == schema.features_field(sae_id)
    assert _snapshot(client) == before

    call = server_stack.stub.AttachSae(
        search_pb2.AttachSaeRequest(collection=THEIRS, dense_vector="emb", batch_size=10)
    )
    seen = 0
    async for _response in call:
        seen += 1
        if seen == 3:
            call.cancel()
            break
    sparse = schema.sparse_vector_name(sae_id)
    missing = models.Filter(must_not=[models.HasVectorCondition(has_vector=sparse)])
    left = client.count(THEIRS, count_filter=missing, exact=True).count
    assert 0 < left < N

    resumed = await _attach(server_stack, batch_size=25)
    assert resumed[0].plan.points_to_write == left
    assert resumed[-1].progress.done == left

    key = schema.features_field(sae_id)
    original = {pid: (vectors, payload) for pid, vectors, payload in before[0]}
    attached, _ = client.scroll(THEIRS, limit=10_000, with_payload=True, with_vectors=True)
    assert len(attached) == N
    for record in attached:
        assert isinstance(record.vector, dict)
        assert record.payload is not None
        vector = record.vector[sparse]
        assert isinstance(vector, models.SparseVector)
        assert record.payload[key] == sorted(
            i for i, v in zip(vector.indices, vector.values, strict=True) if v > 0
        )
        assert {k: v for k, v in record.vector.items() if k != sparse} == original[record.id][0]
        assert {k: v for k, v in record.payload.items() if k != key} == original[record.id][1]

    detached = await server_stack.stub.DetachSae(
        search_pb2.DetachSaeRequest(collection=THEIRS, sae_id=sae_id)
    )
    assert detached.was_attached
    assert _snapshot(client) == before


async def test_steering_an_attached_collection_equals_a_featurelens_corpus(
    server_stack: Stack, client: QdrantClient, wordllama: EmbeddingBackend, records: list[Record], sae_id: str
) -> None:
    """The same query and intervention rank the same documents on both (sparse mode)."""
    _build(client, wordllama, records)
    await _attach(server_stack)
    responses = await server_stack.index(index_requests(records[:N], corpus="ours"))
    assert responses[-1].indexed == N

    query = "dark matter halos in galaxy clusters"
    steer = search_pb2.SearchRequest(
        corpus="ours",
        text=query,
        mode=search_pb2.SEARCH_MODE_SPARSE,
        top_k=10,
        interventions=[common_pb2.Intervention(feature=3, weight=5.0, mode=common_pb2.STEER_MODE_ADDITIVE)],
    )
    ours = await server_stack.stub.Search(steer)

    embedded = wordllama.embed([query]).vectors[0]
    sae_stub = sae_pb2_grpc.SaeServiceStub(server_stack.channel)
    steered = await sae_stub.Steer(
        sae_pb2.SteerRequest(
            sae_id=sae_id,
            vector=common_pb2.DenseVector(
                data=np.asarray(embedded, dtype="<f4").tobytes(), dim=len(embedded)
            ),
            interventions=[
                common_pb2.Intervention(feature=3, weight=5.0, mode=common_pb2.STEER_MODE_ADDITIVE)
            ],
        )
    )
    latents = steered.latents_after
    hits = client.query_points(
        THEIRS,
        query=models.SparseVector(indices=list(latents.indices), values=list(latents.values)),
        using=schema.sparse_vector_name(sae_id),
        limit=10,
        with_payload=["their_id"],
    ).points
    theirs = [h.payload["their_id"] for h in hits if h.payload]
    assert theirs == [hit.document.id for hit in ours.hits]


async def test_attach_refuses_bad_requests(
    server_stack: Stack, client: QdrantClient, wordllama: EmbeddingBackend, records: list[Record]
) -> None:
    _build(client, wordllama, records)
    cases = [
        (
            search_pb2.AttachSaeRequest(collection="nope", dense_vector="emb"),
            grpc.StatusCode.NOT_FOUND,
            THEIRS,
        ),
        (
            search_pb2.AttachSaeRequest(collection=THEIRS, dense_vector="x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "emb",
        ),
        (
            search_pb2.AttachSaeRequest(collection=THEIRS, dense_vector="emb", batch_size=10**6),
            grpc.StatusCode.INVALID_ARGUMENT,
            "batch_size",
        ),
        (
            search_pb2.AttachSaeRequest(collection=THEIRS, dense_vector="extra"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "3 dims",
        ),
        (
            search_pb2.AttachSaeRequest(collection=THEIRS, sae_id="no-such-sae", dense_vector="emb"),
            grpc.StatusCode.NOT_FOUND,
            "registered SAEs",
        ),
        (search_pb2.AttachSaeRequest(collection=""), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    ]
    for request, code, words in cases:
        error = await failure_of(_collect(server_stack, request))
        assert error.code() == code, (request, error.details())
        assert words in (error.details() or ""), error.details()
    error = await failure_of(server_stack.stub.DetachSae(search_pb2.DetachSaeRequest(collection=THEIRS)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_attach_needs_the_server_store(stack: Stack) -> None:
    request = search_pb2.AttachSaeRequest(collection=THEIRS)
    error = await failure_of(_collect(stack, request))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def _collect(stack: Stack, request: search_pb2.AttachSaeRequest) -> list[search_pb2.AttachSaeResponse]:
    return [response async for response in stack.stub.AttachSae(request)]
