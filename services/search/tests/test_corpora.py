"""Corpora.recent reuses what it read of a corpus for a short while; what this service changes
itself, it forgets at once. Corpora.search runs a query in the calling thread where the store's
reads hold the GIL, in a worker thread otherwise, with the same answers and the same errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from featurelens.kit import InvalidArgumentError, NotFoundError
from featurelens.services.search.corpora import Corpora
from featurelens.store import EdgeDocumentStore, PointRecord, QueryRequest, ScoredPoint, SearchMode, SparseVec


class _ThreadRecordingStore(EdgeDocumentStore):
    """The edge store, noting the thread of each query; ``reads_hold_gil`` as a test sets it."""

    def __init__(self, path: Path, *, reads_hold_gil: bool) -> None:
        super().__init__(path)
        self.reads_hold_gil = reads_hold_gil
        self.query_threads: list[int] = []

    def query(self, name: str, request: QueryRequest) -> list[ScoredPoint]:
        self.query_threads.append(threading.get_ident())
        return super().query(name, request)


def _papers(store: EdgeDocumentStore) -> None:
    store.ensure_collection("papers", 4, ["sae-a"])
    rows = np.eye(4, dtype=np.float32)
    store.upsert(
        "papers",
        [
            PointRecord(
                f"doc-{i}", rows[i], {"sae-a": SparseVec([i, 7], [1.0, 0.5])}, {"title": f"paper {i}"}
            )
            for i in range(4)
        ],
    )


def _hybrid(dense: list[float]) -> QueryRequest:
    return QueryRequest(
        SearchMode.HYBRID,
        dense=np.asarray(dense, dtype=np.float32),
        sparse=SparseVec([1], [1.0]),
        sae_id="sae-a",
    )


@pytest.fixture(params=[True, False], ids=["reads-hold-gil", "reads-release-gil"])
def papers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_ThreadRecordingStore]:
    """Four papers in the edge store, whose reads count as holding the GIL or not."""
    store = _ThreadRecordingStore(tmp_path / "qdrant", reads_hold_gil=request.param)
    with store:
        _papers(store)
        yield store


async def test_a_search_runs_in_the_calling_thread_only_where_the_stores_reads_hold_the_gil(
    papers: _ThreadRecordingStore,
) -> None:
    hits = await Corpora(papers).search("papers", _hybrid([0.0, 1.0, 0.2, 0.0]))

    assert [hit.doc_id for hit in hits][:2] == ["doc-1", "doc-2"]
    direct = papers.query("papers", _hybrid([0.0, 1.0, 0.2, 0.0]))
    assert [(h.doc_id, h.score, h.payload) for h in hits] == [(h.doc_id, h.score, h.payload) for h in direct]
    in_caller = papers.query_threads[0] == threading.get_ident()
    assert in_caller is papers.reads_hold_gil


async def test_a_search_reports_storage_errors_as_service_errors_in_either_thread(
    papers: _ThreadRecordingStore,
) -> None:
    corpora = Corpora(papers)

    with pytest.raises(NotFoundError, match="nothing-here"):
        await corpora.search("nothing-here", _hybrid([1.0, 0.0, 0.0, 0.0]))
    with pytest.raises(InvalidArgumentError):
        await corpora.search("papers", _hybrid([1.0, 0.0, 0.0]))


async def test_recent_reuses_a_corpus_read_less_than_max_age_ago(tmp_path: Path) -> None:
    with EdgeDocumentStore(tmp_path / "qdrant") as store:
        store.ensure_collection("papers", 8, ["sae-a"])
        corpora = Corpora(store, max_age_s=60.0)
        first = await corpora.recent("papers")

        store.ensure_collection("papers", 8, ["sae-b"])  # as another replica would

        assert await corpora.recent("papers") is first
        assert (await corpora.get("papers")).sae_ids == ("sae-a", "sae-b")
        assert (await corpora.recent("papers")).sae_ids == ("sae-a", "sae-b")


async def test_recent_reads_again_once_the_corpus_is_forgotten_or_too_old(tmp_path: Path) -> None:
    with EdgeDocumentStore(tmp_path / "qdrant") as store:
        store.ensure_collection("papers", 8, ["sae-a"])
        cached = Corpora(store, max_age_s=60.0)
        uncached = Corpora(store, max_age_s=0.0)
        await cached.recent("papers")
        await uncached.recent("papers")

        store.ensure_collection("papers", 8, ["sae-b"])
        cached.forget("papers")

        assert (await cached.recent("papers")).sae_ids == ("sae-a", "sae-b")
        assert (await uncached.recent("papers")).sae_ids == ("sae-a", "sae-b")
