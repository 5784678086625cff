"""Attach / detach an SAE on collections featurelens did not create (qdrant-client and qdrant-edge)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import qdrant_edge as qe
import torch
from qdrant_client import QdrantClient, models

from featurelens.sae.config import SaeConfig
from featurelens.sae.model import SparseAutoencoder
from featurelens.store import schema
from featurelens.store.attach import ForeignCollection, attach, check_batch_size, detach, plan
from featurelens.store.attach_engines import EdgeShardCollection, QdrantClientCollection
from featurelens.store.errors import CollectionNotFoundError, InvalidQueryError
from featurelens.store.types import SparseVec

D_IN, LATENTS, K, N = 16, 64, 4, 300
SAE_ID = "user/sae:1"


def _encoder() -> Callable[[npt.NDArray[np.float32]], list[SparseVec]]:
    sae = SparseAutoencoder(SaeConfig(d_in=D_IN, num_latents=LATENTS, k=K), seed=3)

    def encode(dense: npt.NDArray[np.float32]) -> list[SparseVec]:
        with torch.no_grad():
            out = sae.encode(torch.from_numpy(dense))
        return [SparseVec(i.numpy(), v.numpy()) for i, v in zip(out.indices, out.values, strict=True)]

    return encode


def _rows() -> list[tuple[int | str, list[float], list[float], dict[str, Any]]]:
    rng = np.random.default_rng(7)
    rows: list[tuple[int | str, list[float], list[float], dict[str, Any]]] = []
    for i in range(N):
        pid: int | str = i * 3 + 1 if i % 2 else str(uuid.UUID(int=i + 1))
        payload = {"title": f"doc {i}", "tenant": "a" if i % 3 else "b", "nested": {"n": i}}
        rows.append((pid, rng.normal(size=D_IN).tolist(), rng.normal(size=4).tolist(), payload))
    return rows


def _client_collection(tmp_path: Path) -> Generator[tuple[ForeignCollection, Callable[[], Any]], None, None]:
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    client.create_collection(
        "theirs",
        vectors_config={
            "emb": models.VectorParams(size=D_IN, distance=models.Distance.COSINE),
            "extra": models.VectorParams(size=4, distance=models.Distance.DOT),
        },
    )
    client.upsert(
        "theirs",
        [models.PointStruct(id=p, vector={"emb": d, "extra": e}, payload=pl) for p, d, e, pl in _rows()],
    )

    def snapshot() -> Any:
        records, _ = client.scroll("theirs", limit=10_000, with_payload=True, with_vectors=True)
        params = client.get_collection("theirs").config.params
        # Local mode reports "no sparse vectors" as None before and {} after a delete_vector_name.
        config = (params.vectors, params.sparse_vectors or {}, client.get_collection("theirs").payload_schema)
        return sorted((str(r.id), r.vector, r.payload) for r in records), config

    yield QdrantClientCollection(client, "theirs"), snapshot
    client.close()


def _edge_collection(tmp_path: Path) -> Iterator[tuple[ForeignCollection, Callable[[], Any]]]:
    config = qe.EdgeConfig(
        vectors={
            "emb": qe.EdgeVectorParams(size=D_IN, distance=qe.Distance.Cosine),
            "extra": qe.EdgeVectorParams(size=4, distance=qe.Distance.Dot),
        }
    )
    shard = qe.EdgeShard.create(str(tmp_path / "shard"), config)
    shard.update(
        qe.UpdateOperation.upsert_points([qe.Point(p, {"emb": d, "extra": e}, pl) for p, d, e, pl in _rows()])
    )

    def snapshot() -> Any:
        records, _ = shard.scroll(qe.ScrollRequest(limit=10_000, with_payload=True, with_vector=True))
        return sorted((str(r.id), r.vector, r.payload) for r in records)

    yield EdgeShardCollection(shard, "theirs"), snapshot
    shard.close()


@pytest.fixture(params=["qdrant-client", "edge"])
def foreign(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ForeignCollection, Callable[[], Any]]]:
    make = _client_collection if request.param == "qdrant-client" else _edge_collection
    yield from make(tmp_path)


def _attached(collection: ForeignCollection) -> int:
    return collection.count() - collection.count(missing=schema.sparse_vector_name(SAE_ID))


def test_dry_run_plan_reports_the_change(foreign: tuple[ForeignCollection, Callable[[], Any]]) -> None:
    collection, snapshot = foreign
    before = snapshot()
    found = plan(collection, SAE_ID, "emb")
    assert found.points == N
    assert found.points_to_write == N
    assert found.add_sparse_config
    assert found.sparse_vector == schema.sparse_vector_name(SAE_ID)
    assert found.payload_key == schema.features_field(SAE_ID)
    assert found.id_type in {"integer", "uuid"}
    assert snapshot() == before  # a plan changes nothing


def test_attach_crash_resume_detach_restores_exactly(
    foreign: tuple[ForeignCollection, Callable[[], Any]],
) -> None:
    collection, snapshot = foreign
    before = snapshot()
    encode = _encoder()
    calls = 0

    def crashing(dense: npt.NDArray[np.float32]) -> list[SparseVec]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("killed mid-attach")
        return encode(dense)

    with pytest.raises(RuntimeError, match="killed"):
        for _ in attach(collection, SAE_ID, "emb", crashing, batch_size=50):
            pass
    assert _attached(collection) == 100  # two batches written before the crash

    resumed = list(attach(collection, SAE_ID, "emb", encode, batch_size=50))
    assert resumed[0].total == N - 100
    assert resumed[-1].done == N - 100
    assert _attached(collection) == N
    assert plan(collection, SAE_ID, "emb").points_to_write == 0
    assert list(attach(collection, SAE_ID, "emb", encode))[-1].done == 0  # idempotent

    if isinstance(collection, QdrantClientCollection):
        client = collection.client
        records, _ = client.scroll("theirs", limit=10_000, with_payload=True, with_vectors=True)
        sparse, key = schema.sparse_vector_name(SAE_ID), schema.features_field(SAE_ID)
        original = {str(r[0]): r for r in before[0]}
        for record in records:
            assert isinstance(record.vector, dict)
            assert record.payload is not None
            vec = record.vector[sparse]
            assert isinstance(vec, models.SparseVector)
            assert 1 <= len(vec.indices) <= K
            assert record.payload[key] == sorted(
                i for i, v in zip(vec.indices, vec.values, strict=True) if v > 0
            )
            _, their_vectors, their_payload = original[str(record.id)]
            assert {k: v for k, v in record.vector.items() if k != sparse} == their_vectors
            assert {k: v for k, v in record.payload.items() if k != key} == their_payload

    assert detach(collection, SAE_ID) is True
    assert snapshot() == before


def test_steering_query_on_attached_collection_matches_the_sae(tmp_path: Path) -> None:
    """A sparse query on the attached vector ranks by the dot product of the SAE codes."""
    made = _client_collection(tmp_path)
    collection, _ = next(made)
    assert isinstance(collection, QdrantClientCollection)
    encode = _encoder()
    list(attach(collection, SAE_ID, "emb", encode))
    rows = _rows()
    dense_rows = np.asarray([r[1] for r in rows], dtype=np.float32)
    # A cosine collection stores (and scrolls back) unit vectors, so those are what was encoded.
    codes = encode(dense_rows / np.linalg.norm(dense_rows, axis=1, keepdims=True))
    query = codes[0]
    dense_q = np.zeros(LATENTS)
    dense_q[query.indices] = query.values
    scores = []
    for code in codes:
        dense = np.zeros(LATENTS)
        dense[code.indices] = code.values
        scores.append(float(dense @ dense_q))
    by_id = {str(row[0]): score for row, score in zip(rows, scores, strict=True)}
    hits = collection.client.query_points(
        "theirs",
        query=models.SparseVector(indices=query.indices.tolist(), values=query.values.tolist()),
        using=schema.sparse_vector_name(SAE_ID),
        limit=5,
    ).points
    # Same scores as the SAE codes' dot products, best first (ties may order either way).
    assert [h.score for h in hits] == pytest.approx(sorted(scores, reverse=True)[:5], rel=1e-5)
    assert [h.score for h in hits] == pytest.approx([by_id[str(h.id)] for h in hits], rel=1e-5)
    made.close()


def test_bad_requests_are_named(foreign: tuple[ForeignCollection, Callable[[], Any]], tmp_path: Path) -> None:
    collection, _ = foreign
    with pytest.raises(InvalidQueryError, match=r"no dense vector 'nope'.*'emb', 'extra'"):
        plan(collection, SAE_ID, "nope")
    with pytest.raises(InvalidQueryError, match="batch_size"):
        check_batch_size(1_000_000)
    assert check_batch_size(0) == 256


def test_unknown_collection_names_the_existing_ones(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection(
        "mine", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE)
    )
    with pytest.raises(CollectionNotFoundError, match="'mine'"):
        QdrantClientCollection(client, "other")
    client.close()


def test_unnamed_default_vector(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path / "q"))
    client.create_collection(
        "plain", vectors_config=models.VectorParams(size=D_IN, distance=models.Distance.COSINE)
    )
    rng = np.random.default_rng(1)
    client.upsert(
        "plain", [models.PointStruct(id=i, vector=rng.normal(size=D_IN).tolist()) for i in range(20)]
    )
    collection = QdrantClientCollection(client, "plain")
    assert collection.dense_vector_names() == [""]
    list(attach(collection, SAE_ID, "", _encoder(), batch_size=7))
    assert _attached(collection) == 20
    detach(collection, SAE_ID)
    assert not collection.has_sparse_vector(schema.sparse_vector_name(SAE_ID))
    client.close()
