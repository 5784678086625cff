"""What only the edge adapter does: persist to a folder, lock it, and serve threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from featurelens.store import (
    CollectionNotFoundError,
    DocFilter,
    EdgeDocumentStore,
    FeatureRef,
    PointRecord,
    QueryRequest,
    SearchMode,
    SparseVec,
    StoreUnavailableError,
)

DIM = 16
SAE = "sae-a"


def _records(n: int, seed: int = 0, start: int = 0) -> list[PointRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        dense = rng.standard_normal(DIM).astype(np.float32)
        latents = rng.choice(64, size=4, replace=False)
        out.append(
            PointRecord(
                f"doc-{i}",
                dense=dense,
                sparse={SAE: SparseVec(latents, rng.uniform(0.1, 2.0, 4))},
                payload={"title": f"Doc {i}", "categories": ["cs.LG" if i % 2 else "astro-ph.CO"]},
            )
        )
    return out


def _hybrid(seed: int) -> QueryRequest:
    rng = np.random.default_rng(seed)
    return QueryRequest(
        SearchMode.HYBRID,
        dense=rng.standard_normal(DIM).astype(np.float32),
        sparse=SparseVec([1, 5, 9, 33], [1.0, 0.5, 0.7, 0.2]),
        sae_id=SAE,
        top_k=10,
    )


def test_collections_survive_closing_and_reopening_the_folder(tmp_path: Path) -> None:
    with EdgeDocumentStore(tmp_path) as store:
        store.ensure_collection("corpus", DIM, [SAE], metadata={"embedding_model": "m"})
        store.upsert("corpus", _records(120))
        store.ensure_collection("corpus", DIM, [SAE, "sae-b"])
        store.update_vectors("corpus", {"doc-3": {"sae-b": SparseVec([7], [2.0])}})
        store.delete("corpus", ["doc-0"])
        before = [(h.doc_id, h.score) for h in store.query("corpus", _hybrid(1))]
        sample = [p.doc_id for p in store.sample("corpus", 5, seed=9)]

    with EdgeDocumentStore(tmp_path) as reopened:
        assert reopened.list_collections() == ["corpus"]
        info = reopened.collection_info("corpus")
        assert (info.points, info.dense_dim, info.sae_ids) == (119, DIM, ("sae-a", "sae-b"))
        assert info.metadata == {"embedding_model": "m"}
        assert [(h.doc_id, h.score) for h in reopened.query("corpus", _hybrid(1))] == before
        assert [p.doc_id for p in reopened.sample("corpus", 5, seed=9)] == sample
        firing = reopened.count("corpus", DocFilter(must_fire=(FeatureRef("sae-b", 7),)))
        assert firing == 1


def test_a_folder_open_in_one_store_is_unavailable_to_another(tmp_path: Path) -> None:
    with EdgeDocumentStore(tmp_path) as first:
        first.ensure_collection("corpus", DIM, [SAE])
        with pytest.raises(StoreUnavailableError, match="open in another process"):
            EdgeDocumentStore(tmp_path).count("corpus")
    with EdgeDocumentStore(tmp_path) as second:
        assert second.count("corpus") == 0


def test_a_creation_that_never_finished_is_not_listed_and_is_cleared_by_ensure(tmp_path: Path) -> None:
    (tmp_path / "half" / "shard" / "segments").mkdir(parents=True)
    with EdgeDocumentStore(tmp_path) as store:
        assert store.list_collections() == []
        with pytest.raises(CollectionNotFoundError):
            store.count("half")
        assert store.ensure_collection("half", DIM).points == 0
        assert store.list_collections() == ["half"]


def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = EdgeDocumentStore(tmp_path)
    store.ensure_collection("corpus", DIM)
    store.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.count("corpus")


def test_a_dropped_collection_is_gone_for_every_later_call(tmp_path: Path) -> None:
    with EdgeDocumentStore(tmp_path) as store:
        store.ensure_collection("corpus", DIM, [SAE])
        store.upsert("corpus", _records(10))
        assert store.drop_collection("corpus") is True
        assert not (tmp_path / "corpus").exists()
        with pytest.raises(CollectionNotFoundError):
            store.query("corpus", _hybrid(0))


def test_queries_from_a_thread_pool_run_alongside_writes(tmp_path: Path) -> None:
    with EdgeDocumentStore(tmp_path, max_search_threads=1) as store:
        store.ensure_collection("corpus", DIM, [SAE])
        store.upsert("corpus", _records(200))
        expected = [h.doc_id for h in store.query("corpus", _hybrid(2))]

        def query(_: int) -> list[str]:
            return [h.doc_id for h in store.query("corpus", _hybrid(2))]

        def write(batch: int) -> None:
            store.upsert("corpus", _records(20, seed=batch, start=1000 + 20 * batch))

        with ThreadPoolExecutor(4) as pool:
            writes = [pool.submit(write, b) for b in range(5)]
            reads = list(pool.map(query, range(40)))
            for w in writes:
                w.result()
        assert store.count("corpus") == 300
        # New documents may outrank old ones mid-way, but every answer is a well-formed top 10.
        assert all(len(r) == 10 and len(set(r)) == 10 for r in reads)
        final = query(0)
        assert final == query(0)
        # Old documents only leave the top 10 to make room for new ones.
        assert all(d in expected or int(d.split("-")[1]) >= 1000 for d in final)


def test_optimizing_keeps_answers_and_data(tmp_path: Path) -> None:
    with EdgeDocumentStore(tmp_path) as store:
        store.ensure_collection("corpus", DIM, [SAE])
        store.upsert("corpus", _records(500))
        exact = QueryRequest(SearchMode.DENSE, dense=_records(1, seed=99)[0].dense, top_k=10, exact=True)
        before = [h.doc_id for h in store.query("corpus", exact)]
        store.optimize("corpus")
        assert [h.doc_id for h in store.query("corpus", exact)] == before
        assert store.count("corpus", DocFilter(categories=("cs.LG",))) == 250
