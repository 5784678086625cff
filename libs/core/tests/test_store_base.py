"""The algorithms both adapters share (``store.base`` and ``store.writes``), on real engines.

Where a test needs the engine to be caught in the middle of an algorithm, a subclass steps in
at one primitive (the seam the shared code calls through): to delete a document between a hybrid
query's legs and its fetch, as a concurrent caller could, or to note what the engine was asked
for. The engines underneath are the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from featurelens.store import (
    DocFilter,
    EdgeDocumentStore,
    InvalidQueryError,
    PointRecord,
    QdrantServerDocumentStore,
    QueryRequest,
    SearchMode,
    SparseVec,
    schema,
)
from featurelens.store.base import EngineHit, EngineRecord, EngineStore
from featurelens.store.plan import CheckedQuery, CollectionSchema, FilterSpec, Projection
from featurelens.store.writes import payload_fields, point_writes, vector_updates

pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect"),
    pytest.mark.filterwarnings("ignore:Local mode performs exact"),
]

NAME = "docs"
DIM = 8
LATENTS = 32
SAE = "sae-a"
N_DOCS = 40


def _records() -> list[PointRecord]:
    rng = np.random.default_rng(7)
    records = []
    for i in range(N_DOCS):
        dense = rng.standard_normal(DIM).astype(np.float32)
        latents = rng.choice(LATENTS, 4, replace=False)
        payload = {"title": f"doc {i}", "categories": ["cs.LG"], "date": f"20{10 + i % 10}-01-02"}
        records.append(
            PointRecord(f"d{i}", dense, {SAE: SparseVec(latents, rng.uniform(0.1, 2, 4))}, payload)
        )
    return records


class _DeletesBetweenLegsAndFetch(EngineStore[Any]):
    """Deletes ``victim`` right after a hybrid query's legs ran, before the page is fetched."""

    victim: str | None = None

    def _search_legs(self, handle: Any, plan: CheckedQuery) -> Sequence[Sequence[EngineHit]]:
        legs = super()._search_legs(handle, plan)
        if self.victim is not None:
            self.delete(NAME, [self.victim])
        return legs


class _RecordsSampleScrolls(EngineStore[Any]):
    """Notes each sample-key scroll: (points asked for, points returned)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scrolls: list[tuple[int, int]] = []

    def _scroll_by_sample_key(
        self, handle: Any, spec: FilterSpec, limit: int, start: int | None, proj: Projection
    ) -> Sequence[EngineRecord]:
        records = super()._scroll_by_sample_key(handle, spec, limit, start, proj)
        self.scrolls.append((limit, len(records)))
        return records


class _EdgeStore(_DeletesBetweenLegsAndFetch, _RecordsSampleScrolls, EdgeDocumentStore):
    pass


class _ServerStore(_DeletesBetweenLegsAndFetch, _RecordsSampleScrolls, QdrantServerDocumentStore):
    pass


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_EdgeStore | _ServerStore]:
    impl = _EdgeStore(tmp_path) if request.param == "edge" else _ServerStore(QdrantClient(":memory:"))
    impl.ensure_collection(NAME, DIM, [SAE])
    impl.upsert(NAME, _records())
    yield impl
    impl.close()


# -- fuse, then fetch --------------------------------------------------------------------------


def test_a_hit_deleted_between_the_legs_and_the_fetch_is_left_out_and_the_rest_keep_their_scores(
    store: _EdgeStore | _ServerStore,
) -> None:
    records = _records()
    request = QueryRequest(
        SearchMode.HYBRID, dense=records[3].dense, sparse=records[3].sparse[SAE], sae_id=SAE, top_k=6
    )
    before = store.query(NAME, request)
    assert len(before) == 6
    store.victim = before[2].doc_id
    after = store.query(NAME, request)
    expected = [h for h in before if h.doc_id != store.victim]
    assert [h.doc_id for h in after] == [h.doc_id for h in expected]
    assert [(h.score, h.dense_score, h.sparse_score) for h in after] == [
        (h.score, h.dense_score, h.sparse_score) for h in expected
    ]
    assert after[0].payload["title"] == expected[0].payload["title"]
    assert store.count(NAME) == N_DOCS - 1


# -- seeded sampling -------------------------------------------------------------------------


def _seed_with_keys_above_start(wanted: int) -> int:
    """A seed whose starting place has exactly ``wanted`` of the documents after it in the order."""
    keys = [schema.sample_key(f"d{i}") for i in range(N_DOCS)]
    for seed in range(100_000):
        start = schema.sample_start(seed)
        if sum(key >= start for key in keys) == wanted:
            return seed
    raise AssertionError(f"no seed leaves {wanted} documents after its start")


def test_a_sample_that_fits_before_the_end_of_the_order_takes_one_scroll_of_n(
    store: _EdgeStore | _ServerStore,
) -> None:
    sample = store.sample(NAME, 5, seed=_seed_with_keys_above_start(8))
    assert len(sample) == 5
    assert store.scrolls == [(5, 5)]


def test_a_sample_that_wraps_around_asks_the_second_scroll_only_for_what_is_missing(
    store: _EdgeStore | _ServerStore,
) -> None:
    seed = _seed_with_keys_above_start(2)
    sample = store.sample(NAME, 5, seed=seed)
    assert store.scrolls == [(5, 2), (3, 3)]
    keys = [p.payload["sample_key"] for p in sample]
    start = schema.sample_start(seed)
    after_start, wrapped = keys[:2], keys[2:]
    assert all(k >= start for k in after_start)
    assert all(k < start for k in wrapped)
    assert after_start == sorted(after_start)
    assert wrapped == sorted(wrapped)


# -- writes ----------------------------------------------------------------------------------


def test_clearing_a_date_takes_the_date_filter_field_with_it(store: _EdgeStore | _ServerStore) -> None:
    since_2015 = DocFilter(date_from="2015-01-01")
    dated = store.count(NAME, since_2015)
    assert store.set_payload(NAME, ["d9"], {"date": ""}) == 1  # d9 is dated 2019
    assert store.count(NAME, since_2015) == dated - 1
    (point,) = store.retrieve(NAME, ["d9"])
    assert point.payload["date"] == ""
    assert "date_int" not in point.payload


def test_writes_touch_only_documents_that_exist(store: _EdgeStore | _ServerStore) -> None:
    latents = {"d1": {SAE: SparseVec([5], [1.0])}, "nowhere": {SAE: SparseVec([5], [1.0])}, "d2": {}}
    assert store.update_vectors(NAME, latents) == 1
    assert store.set_payload(NAME, ["d1", "nowhere", "d1"], {"title": "new"}) == 1
    assert store.delete(NAME, ["nowhere", "d1", "d1"]) == 1
    assert store.retrieve(NAME, ["d1", "nowhere"]) == []


# -- write plans (no engine needed) ----------------------------------------------------------

COLLECTION = CollectionSchema(dense_dim=DIM, sae_ids=(SAE,))


def test_a_batch_plan_keeps_the_last_record_of_a_doc_and_derives_its_payload() -> None:
    first, second = _records()[:2]
    again = PointRecord(first.doc_id, second.dense, {SAE: SparseVec([4, 2, 9], [0.5, 0.0, -1.0])})
    write, other = point_writes([first, second, again], COLLECTION)
    assert other.point_id == schema.point_id(second.doc_id)
    assert write.point_id == schema.point_id(first.doc_id)
    np.testing.assert_allclose(write.dense or [], second.dense, rtol=1e-6)
    assert write.sparse == {schema.sparse_vector_name(SAE): ([4, 9], [0.5, -1.0])}
    assert write.payload[schema.DOC_ID] == first.doc_id
    assert write.payload[schema.features_field(SAE)] == [4]
    assert write.payload[schema.SAMPLE_KEY] == schema.sample_key(first.doc_id)


def test_a_batch_with_one_bad_document_plans_nothing() -> None:
    good, bad = _records()[:2]
    bad = PointRecord(bad.doc_id, np.ones(DIM + 1, np.float32))
    with pytest.raises(InvalidQueryError, match=f"dense vector of doc {bad.doc_id!r}"):
        point_writes([good, bad], COLLECTION)


def test_vector_updates_leave_out_documents_without_latents_and_name_unknown_saes() -> None:
    updates = vector_updates({"a": {SAE: SparseVec([3, 1], [2.0, -1.0])}, "b": {}}, COLLECTION, NAME)
    (update,) = updates.values()
    assert update.point_id == schema.point_id("a")
    assert update.sparse == {schema.sparse_vector_name(SAE): ([1, 3], [-1.0, 2.0])}
    assert update.fields == {schema.features_field(SAE): [3]}
    with pytest.raises(InvalidQueryError, match="'other'"):
        vector_updates({"a": {"other": SparseVec([1], [1.0])}}, COLLECTION, NAME)


def test_a_payload_update_cannot_change_the_doc_id_and_recomputes_the_date_filter_field() -> None:
    with pytest.raises(InvalidQueryError, match="doc_id"):
        payload_fields({"doc_id": "other"})
    assert payload_fields({"date": "2021-03-04"}) == {"date": "2021-03-04", "date_int": 20210304}
