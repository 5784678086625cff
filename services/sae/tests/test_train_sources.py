"""Train from a user's own vectors: a collection of the server's Qdrant store, a .npy or Parquet file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc import aio
from qdrant_client import QdrantClient, models
from sae_testing import Running, serve_sae

from featurelens.sae import data_fingerprint
from featurelens.store import QdrantServerDocumentStore
from featurelens.v1 import sae_pb2

DIM = 16


def their_vectors(n: int) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, DIM)).astype(np.float32)


def their_store() -> QdrantServerDocumentStore:
    client = QdrantClient(":memory:")
    client.create_collection(
        "products",
        vectors_config={
            "dense": models.VectorParams(size=DIM, distance=models.Distance.DOT),
            "thumb": models.VectorParams(size=4, distance=models.Distance.DOT),
        },
        sparse_vectors_config={"keywords": models.SparseVectorParams()},
    )
    client.create_collection("empty", vectors_config=models.VectorParams(size=DIM, distance="Dot"))
    points = [
        models.PointStruct(
            id=i, vector={"dense": row.tolist(), "thumb": [0.0, 1.0, 2.0, 3.0]}, payload={"sku": i}
        )
        for i, row in enumerate(their_vectors(300))
    ]
    client.upsert("products", points)
    return QdrantServerDocumentStore(client)


def request(**source: object) -> sae_pb2.TrainRequest:
    config = sae_pb2.SaeConfig(num_latents=32, k=4)
    return sae_pb2.TrainRequest(config=config, batch_size=32, max_steps=6, epochs=1, seed=3, **source)  # type: ignore[arg-type]


async def trained(running: Running, train_request: sae_pb2.TrainRequest) -> sae_pb2.TrainResponse:
    messages = [message async for message in running.stub.Train(train_request)]
    assert messages[-1].progress.stage == "done"
    job = running.servicer.training
    assert job is not None
    await asyncio.to_thread(job.thread.join, 30.0)  # the run's thread ends just after its last message
    return messages[-1]


async def failure(running: Running, train_request: sae_pb2.TrainRequest) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await trained(running, train_request)
    return caught.value


@pytest.fixture
async def served(models_dir: Path, train_roots: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with serve_sae(
        models_dir,
        train_data_roots=[train_roots],
        train_progress_interval_s=0.0,
        open_vector_store=their_store,
        max_train_rows=200,
        work_dir=tmp_path / "work",
    ) as running:
        yield running


async def test_train_reads_the_named_vector_of_their_collection(served: Running, tmp_path: Path) -> None:
    final = await trained(
        served,
        request(qdrant=sae_pb2.QdrantSource(collection="products", vector_name="dense", max_rows=300 // 2)),
    )

    assert final.result.config.d_in == DIM
    assert final.result.sae_id.startswith("sae-")
    assert not any((tmp_path / "work").iterdir())  # the sampled rows are removed after the run


async def test_the_same_collection_and_seed_give_the_same_sae_id(served: Running) -> None:
    source = sae_pb2.QdrantSource(collection="products", vector_name="dense")
    first = await trained(served, request(qdrant=source))
    again = await trained(served, request(qdrant=source))

    assert first.result.sae_id == again.result.sae_id


async def test_a_collection_and_a_npy_file_of_the_same_rows_give_the_same_sae_id(
    served: Running, train_roots: Path
) -> None:
    np.save(train_roots / "products.npy", their_vectors(300)[:200])
    # The collection holds 300 points and the server keeps 200: a seeded sample, not the file's rows.
    sampled = await trained(
        served, request(qdrant=sae_pb2.QdrantSource(collection="products", vector_name="dense"))
    )
    from_file = await trained(served, request(file=sae_pb2.FileSource(path="products.npy")))
    from_file_again = await trained(
        served, request(file=sae_pb2.FileSource(path="products.npy", max_rows=200))
    )

    assert from_file.result.sae_id == from_file_again.result.sae_id
    assert sampled.result.sae_id != from_file.result.sae_id
    config = json.loads(
        (served.servicer.registry.models_dir / from_file.result.sae_id / "config.json").read_text()
    )
    assert config["data_fingerprint"] == data_fingerprint(their_vectors(300)[:200])


async def test_train_reads_a_parquet_column(served: Running, train_roots: Path) -> None:
    table = pa.table({"emb": pa.array(their_vectors(100).tolist(), type=pa.list_(pa.float32(), DIM))})
    pq.write_table(table, train_roots / "emb.parquet")

    final = await trained(served, request(file=sae_pb2.FileSource(path="emb.parquet", column="emb")))

    assert final.result.config.d_in == DIM


@pytest.mark.parametrize(
    ("source", "code", "sentence"),
    [
        (
            sae_pb2.QdrantSource(collection="nope", vector_name="dense"),
            grpc.StatusCode.NOT_FOUND,
            "collection 'nope' does not exist; the store has: 'empty', 'products'",
        ),
        (
            sae_pb2.QdrantSource(collection="products", vector_name="text"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "no vector named 'text'; its vectors: 'dense' (dense), 'thumb' (dense), 'keywords' (sparse)",
        ),
        (
            sae_pb2.QdrantSource(collection="products", vector_name="keywords"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "vector 'keywords' of collection 'products' is sparse",
        ),
        (
            sae_pb2.QdrantSource(collection="empty", vector_name=""),
            grpc.StatusCode.FAILED_PRECONDITION,
            "collection 'empty' holds no points yet",
        ),
        (
            sae_pb2.QdrantSource(collection="products", vector_name="dense", max_rows=201),
            grpc.StatusCode.INVALID_ARGUMENT,
            "qdrant.max_rows 201 is above this server's limit of 200",
        ),
    ],
    ids=["unknown collection", "unknown vector", "sparse vector", "empty collection", "too many rows"],
)
async def test_each_bad_qdrant_source_has_its_status_and_sentence(
    served: Running, source: sae_pb2.QdrantSource, code: grpc.StatusCode, sentence: str
) -> None:
    error = await failure(served, request(qdrant=source))

    assert error.code() == code
    assert sentence in (error.details() or "")


async def test_a_wrong_dimension_is_an_invalid_argument(served: Running) -> None:
    bad = request(qdrant=sae_pb2.QdrantSource(collection="products", vector_name="thumb"))
    bad.config.d_in = DIM

    error = await failure(served, bad)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.d_in is 16 but collection 'products', vector 'thumb' holds vectors of dim 4" in (
        error.details() or ""
    )


async def test_a_file_outside_the_train_data_roots_is_denied(served: Running, tmp_path: Path) -> None:
    np.save(tmp_path / "outside.npy", their_vectors(10))

    error = await failure(served, request(file=sae_pb2.FileSource(path=str(tmp_path / "outside.npy"))))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_server_without_a_qdrant_store_refuses_a_qdrant_source(running: Running) -> None:
    error = await failure(
        running, request(qdrant=sae_pb2.QdrantSource(collection="products", vector_name="dense"))
    )

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "this server has no Qdrant store configured" in (error.details() or "")
