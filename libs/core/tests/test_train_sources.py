"""Training rows from vectors featurelens did not write: a user's Qdrant collection (server adapter
over qdrant-client's local mode, edge adapter over a qdrant-edge shard), .npy and Parquet files."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import qdrant_edge as qe
from qdrant_client import QdrantClient, models

from featurelens.embedding.sources import (
    Source,
    SourceEmptyError,
    SourceInvalidError,
    SourceNotFoundError,
    file_source,
    qdrant_source,
    sample_rows,
)
from featurelens.store import EdgeDocumentStore, QdrantServerDocumentStore
from featurelens.store.vectors import VectorReader

DIM = 8


def their_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Their embeddings (stored under a dot-product vector, so the engine keeps them as given)."""
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def their_ids(n: int, id_type: str) -> list[int | str]:
    if id_type == "int":
        return list(range(1, n + 1))
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def server_store(n: int, id_type: str) -> QdrantServerDocumentStore:
    """A collection made by plain qdrant-client: their names, an extra vector, a sparse one, payload."""
    client = QdrantClient(":memory:")
    client.create_collection(
        "their docs",
        vectors_config={
            "text-emb": models.VectorParams(size=DIM, distance=models.Distance.DOT),
            "image": models.VectorParams(size=3, distance=models.Distance.DOT),
        },
        sparse_vectors_config={"bm25": models.SparseVectorParams()},
    )
    client.create_collection("empty", vectors_config={"v": models.VectorParams(size=DIM, distance="Dot")})
    rows = their_vectors(n)
    points = [
        models.PointStruct(
            id=point_id,
            vector={"text-emb": row.tolist(), "image": [1.0, 2.0, 3.0]},
            payload={"title": f"doc {i}", "tenant": "acme"},
        )
        for i, (point_id, row) in enumerate(zip(their_ids(n, id_type), rows, strict=True))
    ]
    client.upsert("their docs", points)
    return QdrantServerDocumentStore(client)


def edge_store(path: Path, n: int, id_type: str) -> EdgeDocumentStore:
    """A shard made with qdrant-edge directly, in a folder of its own under the store's folder."""
    config = qe.EdgeConfig(
        vectors={
            "text-emb": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Dot),
            "image": qe.EdgeVectorParams(size=3, distance=qe.Distance.Dot),
        },
        sparse_vectors={"bm25": qe.EdgeSparseVectorParams()},
    )
    shard = qe.EdgeShard.create(str(path / "their docs"), config)
    points = [
        qe.Point(point_id, {"text-emb": row.tolist(), "image": [1.0, 2.0, 3.0]}, {"title": f"doc {i}"})
        for i, (point_id, row) in enumerate(zip(their_ids(n, id_type), their_vectors(n), strict=True))
    ]
    shard.update(qe.UpdateOperation.upsert_points(points))
    shard.flush()
    shard.close()
    empty = qe.EdgeShard.create(
        str(path / "empty"),
        qe.EdgeConfig(vectors={"v": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Dot)}),
    )
    empty.close()
    return EdgeDocumentStore(path)


@pytest.fixture(params=["server-int", "server-uuid", "edge-int", "edge-uuid"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorReader:
    engine, id_type = request.param.split("-")
    if engine == "server":
        return server_store(50, id_type)
    return edge_store(tmp_path / "qdrant", 50, id_type)


def in_id_order(store: VectorReader, n: int) -> np.ndarray:
    return np.concatenate(list(store.scroll_vectors("their docs", "text-emb", batch=7)))


def test_the_rows_read_from_their_collection_equal_the_vectors_they_stored(store: VectorReader) -> None:
    read = in_id_order(store, 50)

    assert read.dtype == np.float32
    # Both engines scroll in id order, and integer ids 1..n and UUIDs of 1..n sort alike.
    np.testing.assert_array_equal(read, their_vectors(50))


def test_their_vectors_are_described_by_name_kind_and_dimension(store: VectorReader) -> None:
    specs = {spec.name: (spec.kind, spec.dim) for spec in store.vector_specs("their docs")}

    assert specs == {"text-emb": ("dense", DIM), "image": ("dense", 3), "bm25": ("sparse", None)}
    assert "their docs" in store.vector_collections()
    assert store.count_points("their docs") == 50


def test_a_collection_with_no_more_rows_than_max_rows_is_read_whole_in_order(
    store: VectorReader, tmp_path: Path
) -> None:
    source = qdrant_source(store, "their docs", "text-emb")

    rows = sample_rows(source, max_rows=1000, seed=0, out=tmp_path / "rows.npy")

    np.testing.assert_array_equal(rows, their_vectors(50))


def test_the_reservoir_is_bounded_seeded_and_made_of_their_rows(store: VectorReader, tmp_path: Path) -> None:
    first = sample_rows(
        qdrant_source(store, "their docs", "text-emb"), max_rows=20, seed=5, out=tmp_path / "a.npy"
    )
    again = sample_rows(
        qdrant_source(store, "their docs", "text-emb"), max_rows=20, seed=5, out=tmp_path / "b.npy"
    )
    other = sample_rows(
        qdrant_source(store, "their docs", "text-emb"), max_rows=20, seed=6, out=tmp_path / "c.npy"
    )

    assert first.shape == (20, DIM)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    stored = {row.tobytes() for row in their_vectors(50)}
    assert all(row.tobytes() in stored for row in first)
    assert len({row.tobytes() for row in first}) == 20


def test_the_reservoir_draws_every_row_about_equally_often(tmp_path: Path) -> None:
    rows = np.arange(100, dtype=np.float32).reshape(100, 1)
    counts = np.zeros(100)
    for seed in range(300):
        source_rows = [rows[i : i + 13] for i in range(0, 100, 13)]
        kept = sample_rows(
            Source("numbers", 1, 100, source_rows), max_rows=10, seed=seed, out=tmp_path / "r.npy"
        )
        counts[kept[:, 0].astype(int)] += 1

    # Each row is kept with probability 1/10: 30 of 300 draws, within a wide margin.
    assert counts.min() > 10
    assert counts.max() < 55


def test_an_unknown_collection_names_the_existing_ones(store: VectorReader) -> None:
    with pytest.raises(SourceNotFoundError, match=r"'nope' does not exist; the store has: .*'their docs'"):
        qdrant_source(store, "nope", "text-emb")


def test_an_unknown_vector_name_names_the_collections_vectors(store: VectorReader) -> None:
    with pytest.raises(
        SourceInvalidError, match=r"no vector named 'emb'; its vectors: .*'text-emb' \(dense\)"
    ):
        qdrant_source(store, "their docs", "emb")


def test_a_sparse_vector_is_refused(store: VectorReader) -> None:
    with pytest.raises(SourceInvalidError, match="'bm25' of collection 'their docs' is sparse"):
        qdrant_source(store, "their docs", "bm25")


def test_an_empty_collection_is_refused(store: VectorReader) -> None:
    with pytest.raises(SourceEmptyError, match="'empty' holds no points"):
        qdrant_source(store, "empty", "v")


def test_a_npy_file_is_read_through_a_memmap(tmp_path: Path) -> None:
    path = tmp_path / "emb.npy"
    np.save(path, their_vectors(30).astype(np.float64))

    rows = sample_rows(file_source(path, ""), max_rows=100, seed=0, out=tmp_path / "rows.npy")

    np.testing.assert_array_equal(rows, their_vectors(30))


@pytest.mark.parametrize("fixed", [True, False], ids=["fixed-size lists", "lists"])
def test_a_parquet_column_of_float_lists_is_read(tmp_path: Path, fixed: bool) -> None:
    vectors = their_vectors(30)
    kind = pa.list_(pa.float32(), DIM) if fixed else pa.list_(pa.float32())
    table = pa.table({"id": list(range(30)), "emb": pa.array(vectors.tolist(), type=kind)})
    pq.write_table(table, tmp_path / "emb.parquet", row_group_size=7)

    rows = sample_rows(
        file_source(tmp_path / "emb.parquet", "emb"), max_rows=100, seed=0, out=tmp_path / "r.npy"
    )

    np.testing.assert_array_equal(rows, vectors)


def test_bad_files_are_refused_with_a_sentence(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "ids.parquet")
    np.save(tmp_path / "flat.npy", np.zeros(5))
    (tmp_path / "x.csv").write_text("1,2\n")

    with pytest.raises(SourceInvalidError, match="has no column 'emb'; its columns: id"):
        file_source(tmp_path / "ids.parquet", "emb")
    with pytest.raises(SourceInvalidError, match=r"column 'id' of ids.parquet is int64"):
        file_source(tmp_path / "ids.parquet", "id")
    with pytest.raises(SourceInvalidError, match="give a 2-D float array"):
        file_source(tmp_path / "flat.npy", "")
    with pytest.raises(SourceInvalidError, match=r"neither a \.npy nor a \.parquet"):
        file_source(tmp_path / "x.csv", "")
