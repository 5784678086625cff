"""One suite, two adapters: the same scenarios on qdrant-edge and on qdrant-client's :memory: mode.

Every read scenario runs on both stores and must return the same doc ids in the same order
(scores within 1e-4 relative); where numpy can compute the answer, both must also match it.
The data are seeded and checked for near-ties, so an order comparison means something.
The feature-label scenarios (``LabelStore``) and the feature-family scenarios (``FamilyStore``)
run on the same two stores, next to the corpus.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import methodcaller
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from featurelens.interp.records import LabelRecord
from featurelens.store import (
    DocFilter,
    DocumentStore,
    EdgeDocumentStore,
    FamilyRecord,
    FamilyStore,
    FeatureRef,
    FusionMethod,
    LabelStore,
    LegHit,
    PointRecord,
    QdrantServerDocumentStore,
    QueryRequest,
    ScoredPoint,
    SearchMode,
    SparseVec,
    StoredPoint,
    fuse,
    point_id,
    schema,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect"),
    pytest.mark.filterwarnings("ignore:Local mode performs exact"),
]

N_DOCS = 300
DIM = 32
LATENTS = 256
NNZ = 8
SAE = "topk-256.k8"  # the '.' exercises the name escaping
SAE_2 = "topk-512"
CORPUS = "arxiv-sample"
REL_TOL = 1e-4
CATEGORIES = [
    "astro-ph.CO",
    "astro-ph.GA",
    "astro-ph.SR",
    "astro-ph.HE",
    "cs.LG",
    "cs.CL",
    "stat.ML",
    "gr-qc",
]


@dataclass
class Corpus:
    """Seeded documents and their vectors, plus what numpy needs to compute expected answers."""

    doc_ids: list[str]
    dense: np.ndarray  # (N, DIM), unit rows
    sparse: np.ndarray  # (N, LATENTS), dense copy of the latents
    categories: list[list[str]]
    dates: list[str]
    records: list[PointRecord]

    def sparse_vec(self, row: int) -> SparseVec:
        (idx,) = np.nonzero(self.sparse[row])
        return SparseVec(idx, self.sparse[row, idx])

    def mask(self, flt: DocFilter | None) -> np.ndarray:
        keep = np.ones(len(self.doc_ids), dtype=bool)
        if flt is None:
            return keep
        if flt.categories:
            keep &= [bool(set(c) & set(flt.categories)) for c in self.categories]
        if flt.date_from:
            keep &= [d >= flt.date_from for d in self.dates]
        if flt.date_to:
            keep &= [d <= flt.date_to for d in self.dates]
        for ref in flt.must_fire:
            keep &= self.sparse[:, ref.latent] > 0
        for ref in flt.must_not_fire:
            keep &= self.sparse[:, ref.latent] <= 0
        return keep


def make_corpus(seed: int = 7, n: int = N_DOCS) -> Corpus:
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    # Latent popularity falls off like a real SAE's: a few latents fire often, most rarely.
    popularity = 1.0 / (np.arange(LATENTS) + 8.0)
    popularity /= popularity.sum()
    sparse = np.zeros((n, LATENTS), dtype=np.float32)
    categories: list[list[str]] = []
    dates: list[str] = []
    doc_ids: list[str] = []
    records: list[PointRecord] = []
    start = dt.date(2007, 4, 1)
    for row in range(n):
        idx = rng.choice(LATENTS, size=NNZ, replace=False, p=popularity)
        sparse[row, idx] = rng.lognormal(0.0, 0.6, size=NNZ).astype(np.float32)
        cats = sorted(rng.choice(CATEGORIES, size=int(rng.integers(1, 4)), replace=False).tolist())
        day = start + dt.timedelta(days=int(rng.integers(0, 6400)))
        doc_id = f"{day:%y%m}.{row:05d}"
        categories.append(cats)
        dates.append(day.isoformat())
        doc_ids.append(doc_id)
        records.append(
            PointRecord(
                doc_id=doc_id,
                dense=dense[row],
                sparse={SAE: SparseVec(idx, sparse[row, idx])},
                payload={
                    "title": f"On the {cats[0]} properties of object {row}",
                    "text": f"We study object {row} with methods from {', '.join(cats)}.",
                    "categories": cats,
                    "date": day.isoformat(),
                },
            )
        )
    return Corpus(doc_ids, dense, sparse, categories, dates, records)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return make_corpus()


def _load(store: DocumentStore, corpus: Corpus, name: str = CORPUS) -> None:
    store.ensure_collection(name, DIM, [SAE], metadata={"embedding_model": "test-32d"})
    for start in range(0, len(corpus.records), 128):
        store.upsert(name, corpus.records[start : start + 128])


@pytest.fixture(scope="module")
def stores(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DocumentStore]]:
    edge = EdgeDocumentStore(tmp_path_factory.mktemp("edge"))
    server = QdrantServerDocumentStore(QdrantClient(":memory:"))
    for store in (edge, server):
        _load(store, corpus)
    yield {"edge": edge, "server": server}
    edge.close()
    server.close()


# -- comparison helpers ------------------------------------------------------------------------


def _same_scores(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b), 1e-6)


def assert_same_hits(edge: list[ScoredPoint], server: list[ScoredPoint]) -> None:
    assert [h.doc_id for h in edge] == [h.doc_id for h in server]
    for e, s in zip(edge, server, strict=True):
        assert _same_scores(e.score, s.score), (e.doc_id, e.score, s.score)
        assert _same_scores(e.dense_score, s.dense_score), (e.doc_id, e.dense_score, s.dense_score)
        assert _same_scores(e.sparse_score, s.sparse_score), (e.doc_id, e.sparse_score, s.sparse_score)


def assert_same_points(edge: list[StoredPoint], server: list[StoredPoint]) -> None:
    assert [p.doc_id for p in edge] == [p.doc_id for p in server]
    for e, s in zip(edge, server, strict=True):
        assert e.payload == s.payload
        assert (e.dense is None) == (s.dense is None)
        if e.dense is not None and s.dense is not None:
            np.testing.assert_allclose(e.dense, s.dense, rtol=REL_TOL, atol=1e-6)
        assert e.sparse.keys() == s.sparse.keys()
        for key in e.sparse:
            assert e.sparse[key].to_dict() == pytest.approx(s.sparse[key].to_dict(), rel=REL_TOL)


def _order(scores: np.ndarray, keep: np.ndarray, corpus: Corpus) -> list[int]:
    rows = [int(r) for r in np.nonzero(keep)[0]]
    return sorted(rows, key=lambda r: (-float(scores[r]), point_id(corpus.doc_ids[r])))


def expected_dense(corpus: Corpus, q: np.ndarray, flt: DocFilter | None, k: int) -> list[tuple[str, float]]:
    scores = corpus.dense @ (q / np.linalg.norm(q))
    rows = _order(scores, corpus.mask(flt), corpus)[:k]
    _assert_no_near_ties([float(scores[r]) for r in rows])
    return [(corpus.doc_ids[r], float(scores[r])) for r in rows]


def expected_sparse(corpus: Corpus, q: SparseVec, flt: DocFilter | None, k: int) -> list[tuple[str, float]]:
    qd = np.zeros(LATENTS, dtype=np.float32)
    qd[q.indices] = q.values
    scores = corpus.sparse @ qd
    overlap = (corpus.sparse[:, q.indices] != 0).any(axis=1)
    rows = _order(scores, corpus.mask(flt) & overlap, corpus)[:k]
    _assert_no_near_ties([float(scores[r]) for r in rows])
    return [(corpus.doc_ids[r], float(scores[r])) for r in rows]


def _assert_no_near_ties(scores: list[float]) -> None:
    # A guard on the seeded data: if two expected scores were this close, float noise could
    # legitimately swap them between engines and the order comparisons would mean nothing.
    gaps = np.abs(np.diff(scores))
    assert (gaps > 1e-5).all(), f"near-tie in expected scores {scores}: pick another seed"


def assert_matches(hits: list[ScoredPoint], expected: list[tuple[str, float]]) -> None:
    assert [h.doc_id for h in hits] == [d for d, _ in expected]
    assert [h.score for h in hits] == pytest.approx([s for _, s in expected], rel=REL_TOL)


def run_both(stores: dict[str, DocumentStore], call: Callable[[DocumentStore], Any]) -> tuple[Any, Any]:
    return call(stores["edge"]), call(stores["server"])


# -- the scenarios -----------------------------------------------------------------------------


def test_both_adapters_implement_the_port(stores: dict[str, DocumentStore]) -> None:
    assert all(isinstance(store, DocumentStore) for store in stores.values())


def _dense_query(corpus: Corpus, row: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return corpus.dense[row] + 0.6 * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)


def _sparse_query(corpus: Corpus, row: int, seed: int) -> SparseVec:
    rng = np.random.default_rng(seed)
    base = corpus.sparse_vec(row).to_dict()
    extra = rng.choice(LATENTS, size=4, replace=False)
    for i in extra:
        base[int(i)] = base.get(int(i), 0.0) + float(rng.uniform(0.2, 1.0))
    return SparseVec.from_dict(base)


FILTERS = {
    "none": None,
    "category": DocFilter(categories=("cs.LG", "stat.ML")),
    "date_range": DocFilter(date_from="2012-01-01", date_to="2018-06-30"),
    "must_fire": DocFilter(must_fire=(FeatureRef(SAE, 0),)),
    "must_not_fire": DocFilter(must_not_fire=(FeatureRef(SAE, 0), FeatureRef(SAE, 1), FeatureRef(SAE, 2))),
    "combined": DocFilter(
        categories=("astro-ph.CO", "astro-ph.GA", "gr-qc"),
        date_from="2010-01-01",
        must_not_fire=(FeatureRef(SAE, 3),),
    ),
}


@pytest.mark.parametrize("filter_name", list(FILTERS))
def test_dense_search_returns_the_exact_cosine_ranking_on_both_adapters(
    stores: dict[str, DocumentStore], corpus: Corpus, filter_name: str
) -> None:
    flt = FILTERS[filter_name]
    q = _dense_query(corpus, 11, seed=1)
    request = QueryRequest(SearchMode.DENSE, dense=q, top_k=20, filter=flt, exact=True)
    edge, server = run_both(stores, lambda s: s.query(CORPUS, request))
    assert_same_hits(edge, server)
    assert_matches(edge, expected_dense(corpus, q, flt, 20))
    assert all(h.dense_score == h.score and h.sparse_score is None for h in edge)


@pytest.mark.parametrize("filter_name", list(FILTERS))
def test_sparse_search_returns_the_exact_dot_product_ranking_on_both_adapters(
    stores: dict[str, DocumentStore], corpus: Corpus, filter_name: str
) -> None:
    flt = FILTERS[filter_name]
    q = _sparse_query(corpus, 5, seed=2)
    request = QueryRequest(SearchMode.SPARSE, sparse=q, sae_id=SAE, top_k=15, filter=flt)
    edge, server = run_both(stores, lambda s: s.query(CORPUS, request))
    assert_same_hits(edge, server)
    assert_matches(edge, expected_sparse(corpus, q, flt, 15))


def test_a_one_hot_sparse_query_ranks_documents_by_that_latents_activation(
    stores: dict[str, DocumentStore], corpus: Corpus
) -> None:
    latent = 4
    request = QueryRequest(SearchMode.SPARSE, sparse=SparseVec([latent], [1.0]), sae_id=SAE, top_k=10)
    edge, server = run_both(stores, lambda s: s.query(CORPUS, request))
    assert_same_hits(edge, server)
    firing = np.argsort(-corpus.sparse[:, latent])[:10]
    assert [h.doc_id for h in edge] == [corpus.doc_ids[r] for r in firing]
    assert [h.score for h in edge] == pytest.approx(corpus.sparse[firing, latent].tolist(), rel=REL_TOL)


HYBRIDS = {
    "rrf": dict(fusion=FusionMethod.RRF),
    "rrf_weighted": dict(fusion=FusionMethod.RRF, dense_weight=0.3, sparse_weight=1.0),
    "rrf_small_k": dict(fusion=FusionMethod.RRF, rrf_k=2, candidates=30),
    "dbsf": dict(fusion=FusionMethod.DBSF),
    "dbsf_weighted": dict(fusion=FusionMethod.DBSF, dense_weight=1.0, sparse_weight=0.25),
    "dbsf_filtered": dict(fusion=FusionMethod.DBSF, filter=FILTERS["combined"]),
    "sparse_only_weight": dict(fusion=FusionMethod.RRF, dense_weight=0.0),
}


@pytest.mark.parametrize("hybrid_name", list(HYBRIDS))
def test_hybrid_search_fuses_both_legs_identically_on_both_adapters(
    stores: dict[str, DocumentStore], corpus: Corpus, hybrid_name: str
) -> None:
    options: dict[str, Any] = HYBRIDS[hybrid_name]
    dense_q, sparse_q = _dense_query(corpus, 23, seed=3), _sparse_query(corpus, 23, seed=4)
    request = QueryRequest(
        SearchMode.HYBRID, dense=dense_q, sparse=sparse_q, sae_id=SAE, top_k=12, exact=True, **options
    )
    edge, server = run_both(stores, lambda s: s.query(CORPUS, request))
    assert_same_hits(edge, server)
    # The expected result: the numpy legs, fused by the shared function.
    limit = max(request.top_k + request.offset, request.candidates)
    legs = [
        [LegHit(point_id(d), s) for d, s in expected_dense(corpus, dense_q, request.filter, limit)],
        [LegHit(point_id(d), s) for d, s in expected_sparse(corpus, sparse_q, request.filter, limit)],
    ]
    fused = fuse(legs, (request.dense_weight, request.sparse_weight), request.fusion, request.rrf_k)
    by_point = {point_id(d): d for d in corpus.doc_ids}
    assert [h.doc_id for h in edge] == [by_point[f.key] for f in fused[:12]]
    assert [h.score for h in edge] == pytest.approx([f.score for f in fused[:12]], rel=REL_TOL)
    assert any(h.dense_score is not None and h.sparse_score is not None for h in edge)


@pytest.mark.parametrize("mode", [SearchMode.DENSE, SearchMode.SPARSE, SearchMode.HYBRID])
def test_offset_pages_concatenate_to_the_full_ranking(
    stores: dict[str, DocumentStore], corpus: Corpus, mode: SearchMode
) -> None:
    base = QueryRequest(
        mode,
        dense=_dense_query(corpus, 40, seed=5),
        sparse=_sparse_query(corpus, 40, seed=6),
        sae_id=SAE,
        top_k=24,
        exact=True,
        with_payload=False,
    )
    for store in stores.values():
        full = [h.doc_id for h in store.query(CORPUS, base)]
        pages = [
            h.doc_id
            for offset in (0, 8, 16)
            for h in store.query(CORPUS, dataclasses.replace(base, top_k=8, offset=offset))
        ]
        assert pages == full
    edge, server = run_both(stores, lambda s: s.query(CORPUS, dataclasses.replace(base, top_k=8, offset=8)))
    assert_same_hits(edge, server)


def test_hits_carry_the_selected_payload_fields_and_vectors(
    stores: dict[str, DocumentStore], corpus: Corpus
) -> None:
    request = QueryRequest(
        SearchMode.HYBRID,
        dense=_dense_query(corpus, 3, seed=7),
        sparse=_sparse_query(corpus, 3, seed=8),
        sae_id=SAE,
        top_k=5,
        exact=True,
        with_payload=["title", "date"],
        with_dense=True,
        with_sparse=True,
    )
    edge, server = run_both(stores, lambda s: s.query(CORPUS, request))
    assert_same_hits(edge, server)
    assert_same_points(
        [StoredPoint(h.doc_id, h.payload, h.dense, h.sparse) for h in edge],
        [StoredPoint(h.doc_id, h.payload, h.dense, h.sparse) for h in server],
    )
    row = corpus.doc_ids.index(edge[0].doc_id)
    assert set(edge[0].payload) == {"title", "date"}
    assert edge[0].payload["date"] == corpus.dates[row]
    np.testing.assert_allclose(edge[0].dense, corpus.dense[row], rtol=1e-5, atol=1e-6)
    assert edge[0].sparse[SAE].to_dict() == pytest.approx(corpus.sparse_vec(row).to_dict())


@pytest.mark.parametrize("filter_name", list(FILTERS))
def test_count_matches_the_filter_exactly(
    stores: dict[str, DocumentStore], corpus: Corpus, filter_name: str
) -> None:
    flt = FILTERS[filter_name]
    edge, server = run_both(stores, lambda s: s.count(CORPUS, flt))
    assert edge == server == int(corpus.mask(flt).sum())


@pytest.mark.parametrize("filter_name", ["none", "category", "must_fire"])
def test_scroll_pages_through_every_matching_document_in_the_same_order(
    stores: dict[str, DocumentStore], corpus: Corpus, filter_name: str
) -> None:
    flt = FILTERS[filter_name]

    def scroll_all(store: DocumentStore) -> list[StoredPoint]:
        points: list[StoredPoint] = []
        offset = None
        while True:
            page = store.scroll(
                CORPUS, flt, limit=37, offset=offset, with_payload=["doc_id"], with_sparse=[SAE]
            )
            points += page.points
            if page.next_offset is None:
                return points
            offset = page.next_offset

    edge, server = run_both(stores, scroll_all)
    assert_same_points(edge, server)
    expected = {corpus.doc_ids[r] for r in np.nonzero(corpus.mask(flt))[0]}
    assert [p.doc_id for p in edge] == sorted(expected, key=point_id)
    row = corpus.doc_ids.index(edge[0].doc_id)
    assert edge[0].sparse[SAE].to_dict() == pytest.approx(corpus.sparse_vec(row).to_dict())


def test_retrieve_returns_known_documents_in_the_order_asked(
    stores: dict[str, DocumentStore], corpus: Corpus
) -> None:
    asked = [corpus.doc_ids[9], "no-such-doc", corpus.doc_ids[2], corpus.doc_ids[9], corpus.doc_ids[150]]
    edge, server = run_both(stores, lambda s: s.retrieve(CORPUS, asked, with_dense=True))
    assert_same_points(edge, server)
    assert [p.doc_id for p in edge] == [corpus.doc_ids[9], corpus.doc_ids[2], corpus.doc_ids[150]]
    assert edge[1].payload["categories"] == corpus.categories[2]
    assert edge[1].payload["date_int"] == int(corpus.dates[2].replace("-", ""))
    assert edge[1].payload["features_topk-256_2ek8"] == sorted(corpus.sparse_vec(2).indices.tolist())


@pytest.mark.parametrize("filter_name", ["none", "must_fire", "combined"])
def test_a_seeded_sample_is_the_same_on_both_adapters_and_on_every_call(
    stores: dict[str, DocumentStore], corpus: Corpus, filter_name: str
) -> None:
    flt = FILTERS[filter_name]
    edge, server = run_both(stores, lambda s: s.sample(CORPUS, 12, seed=42, filter=flt))
    assert_same_points(edge, server)
    matching = {corpus.doc_ids[r] for r in np.nonzero(corpus.mask(flt))[0]}
    assert len(edge) == min(12, len(matching))
    assert len({p.doc_id for p in edge}) == len(edge)
    assert {p.doc_id for p in edge} <= matching
    again = stores["edge"].sample(CORPUS, 12, seed=42, filter=flt)
    assert [p.doc_id for p in again] == [p.doc_id for p in edge]


def test_different_seeds_give_different_samples_and_a_large_n_gives_everything(
    stores: dict[str, DocumentStore], corpus: Corpus
) -> None:
    for store in stores.values():
        a = {p.doc_id for p in store.sample(CORPUS, 10, seed=1, with_payload=False)}
        b = {p.doc_id for p in store.sample(CORPUS, 10, seed=2, with_payload=False)}
        assert a != b
        everything = store.sample(CORPUS, 1000, seed=3, filter=FILTERS["category"])
        assert len(everything) == int(corpus.mask(FILTERS["category"]).sum())
        # The sample wraps around: its first part starts at the seed's place in the order.
        keys = [p.payload["sample_key"] for p in everything]
        wrap = int(np.argmin(keys))
        assert keys[wrap:] + keys[:wrap] == sorted(keys)


def test_collection_info_reports_points_dimension_saes_and_metadata(stores: dict[str, DocumentStore]) -> None:
    edge, server = run_both(stores, lambda s: s.collection_info(CORPUS))
    assert edge == server
    assert (edge.points, edge.dense_dim, edge.sae_ids) == (N_DOCS, DIM, (SAE,))
    assert edge.metadata == {"embedding_model": "test-32d"}


# -- scenarios that write: each runs on its own collection of both stores ----------------------


@pytest.fixture
def fresh(stores: dict[str, DocumentStore], corpus: Corpus, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "w-" + request.node.name.split("[")[0][-40:].replace("_", "-")
    for store in stores.values():
        store.drop_collection(name)
        store.ensure_collection(name, DIM, [SAE])
        store.upsert(name, corpus.records[:60])
    yield name
    for store in stores.values():
        store.drop_collection(name)


def test_delete_removes_documents_and_counts_only_those_that_existed(
    stores: dict[str, DocumentStore], corpus: Corpus, fresh: str
) -> None:
    gone = [corpus.doc_ids[1], corpus.doc_ids[2], "never-indexed", corpus.doc_ids[1]]
    edge, server = run_both(stores, lambda s: s.delete(fresh, gone))
    assert edge == server == 2
    edge, server = run_both(stores, lambda s: s.delete(fresh, gone))
    assert edge == server == 0
    edge, server = run_both(stores, lambda s: s.count(fresh))
    assert edge == server == 58
    edge, server = run_both(stores, lambda s: s.retrieve(fresh, gone))
    assert edge == server == []


def test_upserting_a_document_again_replaces_it_instead_of_adding_one(
    stores: dict[str, DocumentStore], corpus: Corpus, fresh: str
) -> None:
    old = corpus.records[7]
    new_dense = -corpus.dense[7]
    new = PointRecord(
        old.doc_id,
        dense=new_dense,
        sparse={SAE: SparseVec([250, 251], [3.0, 0.0])},
        payload={"title": "Revised", "categories": ["hep-th"], "date": "2024-02-29"},
    )
    for store in stores.values():
        store.upsert(fresh, [new, new])
    edge, server = run_both(stores, lambda s: s.count(fresh))
    assert edge == server == 60
    edge, server = run_both(
        stores, lambda s: s.retrieve(fresh, [old.doc_id], with_dense=True, with_sparse=True)
    )
    assert_same_points(edge, server)
    point = edge[0]
    assert point.payload["title"] == "Revised"
    assert "text" not in point.payload
    assert point.payload["date_int"] == 20240229
    assert point.payload["features_topk-256_2ek8"] == [250]
    assert point.sparse[SAE].to_dict() == {250: 3.0}  # the zero entry is not stored
    np.testing.assert_allclose(point.dense, new_dense, atol=1e-6)
    request = QueryRequest(
        SearchMode.DENSE, dense=new_dense, top_k=1, filter=DocFilter(categories=("hep-th",))
    )
    edge_hits, server_hits = run_both(stores, lambda s: s.query(fresh, request))
    assert_same_hits(edge_hits, server_hits)
    assert edge_hits[0].doc_id == old.doc_id
    assert edge_hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_update_vectors_fills_a_new_saes_latents_and_keeps_the_dense_vector(
    stores: dict[str, DocumentStore], corpus: Corpus, fresh: str
) -> None:
    for store in stores.values():
        info = store.ensure_collection(fresh, DIM, [SAE, SAE_2])
        assert info.sae_ids == tuple(sorted([SAE, SAE_2]))
    rng = np.random.default_rng(11)
    latents = {
        doc_id: {SAE_2: SparseVec(rng.choice(512, 6, replace=False), rng.uniform(0.1, 2.0, 6))}
        for doc_id in corpus.doc_ids[:30]
    }
    latents["never-indexed"] = {SAE_2: SparseVec([1], [1.0])}
    edge, server = run_both(stores, lambda s: s.update_vectors(fresh, latents))
    assert edge == server == 30
    target = corpus.doc_ids[4]
    latent = int(latents[target][SAE_2].indices[0])
    one_hot = QueryRequest(SearchMode.SPARSE, sparse=SparseVec([latent], [1.0]), sae_id=SAE_2, top_k=5)
    edge_hits, server_hits = run_both(stores, lambda s: s.query(fresh, one_hot))
    assert_same_hits(edge_hits, server_hits)
    assert target in [h.doc_id for h in edge_hits]
    firing = DocFilter(must_fire=(FeatureRef(SAE_2, latent),))
    edge_count, server_count = run_both(stores, lambda s: s.count(fresh, firing))
    assert edge_count == server_count == sum(latent in v[SAE_2].indices for v in list(latents.values())[:30])
    edge_pts, server_pts = run_both(
        stores, lambda s: s.retrieve(fresh, [target], with_dense=True, with_sparse=True)
    )
    assert_same_points(edge_pts, server_pts)
    np.testing.assert_allclose(edge_pts[0].dense, corpus.dense[4], atol=1e-6)
    assert set(edge_pts[0].sparse) == {SAE, SAE_2}


def test_set_payload_merges_fields_and_keeps_the_date_filter_in_step(
    stores: dict[str, DocumentStore], corpus: Corpus, fresh: str
) -> None:
    docs = corpus.doc_ids[:5]
    edge, server = run_both(
        stores,
        lambda s: s.set_payload(
            fresh, [*docs, "never-indexed"], {"categories": ["q-bio"], "date": "1999-12-31"}
        ),
    )
    assert edge == server == 5
    flt = DocFilter(categories=("q-bio",), date_to="2000-01-01")
    edge, server = run_both(
        stores, lambda s: s.scroll(fresh, flt, limit=100, with_payload=["title", "doc_id"])
    )
    assert_same_points(edge.points, server.points)
    assert sorted(p.doc_id for p in edge.points) == sorted(docs)
    assert edge.points[0].payload["title"].startswith("On the")


def test_ensure_collection_is_idempotent_and_lists_and_drops_collections(
    stores: dict[str, DocumentStore], corpus: Corpus, fresh: str
) -> None:
    for store in stores.values():
        info = store.ensure_collection(fresh, DIM, [SAE], metadata={"embedding_model": "m"})
        assert (info.points, info.sae_ids, info.metadata) == (60, (SAE,), {"embedding_model": "m"})
        assert fresh in store.list_collections()
        assert CORPUS in store.list_collections()
        assert store.drop_collection(fresh) is True
        assert store.drop_collection(fresh) is False
        assert fresh not in store.list_collections()


# -- feature labels: the same LabelStore calls on both stores --------------------------------

LABEL_SAE = "astro:topk-256.k8"  # ':' and '.' exercise the collection name's escaping
LABEL_DIM = 24
LABELLED = list(range(0, LATENTS, 2))  # every other latent has a label
TOPICS = [
    "Dark matter halos",
    "galaxy CLUSTER lensing",
    "stellar spectra",
    "neural network training",
    "Gravitational waves",
    "cosmic microwave background",
    "transformer language models",
    "exoplanet transits",
]


@dataclass
class Labels:
    """Seeded labels of LABEL_SAE and their unit embeddings, one row per labelled feature."""

    records: list[LabelRecord]
    vectors: np.ndarray  # (len(records), LABEL_DIM)

    def of(self, feature: int) -> LabelRecord:
        return self.records[LABELLED.index(feature)]


def make_labels(seed: int = 13) -> Labels:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(LABELLED), LABEL_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [
        LabelRecord(
            sae_id=LABEL_SAE,
            feature=feature,
            label=f"{TOPICS[row % len(TOPICS)]} ({feature})",
            pearson_r=None if row % 5 == 0 else float(rng.uniform(-0.2, 0.9)),
            f1=float(rng.uniform()),
            auroc=float(rng.uniform(0.5, 1.0)),
            interpreter_model="gpt-4o-mini",
            prompt_version="v1",
            cost_usd=float(rng.uniform(0, 0.01)),
            tokens=int(rng.integers(100, 3000)),
            example_ids=tuple(f"2401.{feature:03d}{i:02d}" for i in range(3)),
            score_note="constant predictions" if row % 5 == 0 else "",
            extra={"seed": seed, "quantiles": [0.5, 0.9]},
        )
        for row, feature in enumerate(LABELLED)
    ]
    return Labels(records, vectors)


@pytest.fixture(scope="module")
def labels(stores: dict[str, DocumentStore]) -> Labels:
    made = make_labels()
    for store in stores.values():
        label_store = LabelStore(store)
        label_store.ensure(LABEL_SAE, LABEL_DIM)
        label_store.put(LABEL_SAE, list(zip(made.records, made.vectors, strict=True)))
    return made


def same_labels(a: list[LabelRecord], b: list[LabelRecord]) -> bool:
    """Field by field; floats within 1e-12 (qdrant-edge parses payload floats to within an ulp)."""

    def close(x: LabelRecord, y: LabelRecord) -> bool:
        pairs = zip(dataclasses.astuple(x), dataclasses.astuple(y), strict=True)
        return all(u == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v) for u, v in pairs)

    return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))


def label_stores(stores: dict[str, DocumentStore]) -> dict[str, LabelStore]:
    return {kind: LabelStore(store) for kind, store in stores.items()}


def run_both_labels(stores: dict[str, DocumentStore], call: Callable[[LabelStore], Any]) -> tuple[Any, Any]:
    return call(LabelStore(stores["edge"])), call(LabelStore(stores["server"]))


def test_labels_read_back_as_put_on_both_adapters(stores: dict[str, DocumentStore], labels: Labels) -> None:
    asked = [LABELLED[7], 1, LABELLED[0], 9999, LABELLED[7], LABELLED[40]]
    edge, server = run_both_labels(stores, lambda s: s.get(LABEL_SAE, asked))
    assert same_labels(edge, server)
    assert same_labels(edge, [labels.of(LABELLED[7]), labels.of(LABELLED[0]), labels.of(LABELLED[40])])
    edge, server = run_both_labels(stores, lambda s: s.all_labels(LABEL_SAE))
    assert same_labels(edge, server)
    assert same_labels(edge, labels.records)
    edge, server = run_both_labels(stores, lambda s: (s.labelled_features(LABEL_SAE), s.count(LABEL_SAE)))
    assert edge == server == (set(LABELLED), len(LABELLED))


@pytest.mark.parametrize("query_seed", [1, 2, 3])
def test_label_search_returns_the_exact_cosine_ranking_on_both_adapters(
    stores: dict[str, DocumentStore], labels: Labels, query_seed: int
) -> None:
    rng = np.random.default_rng(query_seed)
    query = labels.vectors[query_seed * 11] + 0.15 * rng.standard_normal(LABEL_DIM).astype(np.float32)
    edge, server = run_both_labels(stores, lambda s: s.search(LABEL_SAE, query, top_k=10))
    assert same_labels([r for r, _ in edge], [r for r, _ in server])
    assert [score for _, score in edge] == pytest.approx([score for _, score in server], rel=REL_TOL)
    cosines = labels.vectors @ (query / np.linalg.norm(query))
    best = np.argsort(-cosines)[:10]
    _assert_no_near_ties(cosines[best].tolist())
    assert [r.feature for r, _ in edge] == [LABELLED[row] for row in best]
    assert [score for _, score in edge] == pytest.approx(cosines[best].tolist(), rel=REL_TOL)


@pytest.mark.parametrize(("text", "limit"), [("dark MATTER", 100), ("lensing", 5), ("(12", 10), ("zzz", 3)])
def test_substring_search_finds_the_same_labels_on_both_adapters(
    stores: dict[str, DocumentStore], labels: Labels, text: str, limit: int
) -> None:
    edge, server = run_both_labels(stores, lambda s: s.substring(LABEL_SAE, text, limit))
    expected = [r for r in labels.records if text.lower() in r.label.lower()][:limit]
    assert same_labels(edge, server)
    assert same_labels(edge, expected)


def test_labels_collections_stay_out_of_the_corpus_list_on_both_adapters(
    stores: dict[str, DocumentStore], labels: Labels
) -> None:
    for store in stores.values():
        assert LabelStore(store).has(LABEL_SAE)
        assert CORPUS in store.list_collections()
        assert not any(schema.is_labels_collection(name) for name in store.list_collections())
    edge, server = run_both(stores, lambda s: s.collection_info(schema.labels_collection(LABEL_SAE)))
    assert edge == server
    assert (edge.points, edge.dense_dim, edge.sae_ids) == (len(LABELLED), LABEL_DIM, ())
    assert edge.metadata["sae_id"] == LABEL_SAE


def test_replacing_and_dropping_labels_gives_the_same_answers_on_both_adapters(
    stores: dict[str, DocumentStore], labels: Labels
) -> None:
    sae = "astro/replaced"
    first, second = labels.records[:20], labels.records[10:30]
    for label_store in label_stores(stores).values():
        label_store.drop(sae)
        label_store.ensure(sae, LABEL_DIM)
        label_store.put(
            sae, [(dataclasses.replace(r, sae_id=sae), labels.vectors[i]) for i, r in enumerate(first)]
        )
        renamed = [dataclasses.replace(r, sae_id=sae, label=r.label.upper()) for r in second]
        # The replacements point the other way, so a search can tell old embeddings from new.
        label_store.put(sae, [(r, -labels.vectors[10 + i]) for i, r in enumerate(renamed)])
    edge, server = run_both_labels(stores, lambda s: s.all_labels(sae))
    assert same_labels(edge, server)
    assert [r.feature for r in edge] == [r.feature for r in labels.records[:30]]
    assert [r.label for r in edge[10:]] == [r.label.upper() for r in second]
    replaced = labels.records[15].feature
    edge, server = run_both_labels(stores, lambda s: s.search(sae, -labels.vectors[15], top_k=1))
    assert same_labels([edge[0][0]], [server[0][0]])
    assert edge[0][0].feature == replaced
    assert edge[0][1] == pytest.approx(1.0, abs=1e-5)
    edge, server = run_both_labels(stores, lambda s: (s.drop(sae), s.drop(sae), s.has(sae), s.get(sae, [0])))
    assert edge == server == (True, False, False, [])


# -- feature families: the same FamilyStore calls on both stores ------------------------------

FAMILY_SAE = "astro:topk-256.k8"  # the labels' SAE: its families and labels must not meet
FAMILY_DIM = DIM  # a family's direction lives in the embedding space, like the documents


@dataclass
class Families:
    """Seeded families of FAMILY_SAE (some nested, some sharing features) and their directions."""

    records: list[FamilyRecord]
    vectors: np.ndarray  # (len(records), FAMILY_DIM), not normalised

    def expected_order(self) -> list[str]:
        ranked = sorted(self.records, key=lambda f: (-f.size, f.pass_index, f.root, f.family_id))
        return [f.family_id for f in ranked]


def make_families(seed: int = 17) -> Families:
    rng = np.random.default_rng(seed)
    records: list[FamilyRecord] = []
    roots = rng.choice(LATENTS, size=40, replace=False).tolist()
    for i, root in enumerate(roots):
        pool = [latent for latent in range(LATENTS) if latent != root]
        children = sorted(rng.choice(pool, size=int(rng.integers(3, 12)), replace=False).tolist())
        # A random tree: each child hangs under the root or an earlier child.
        edges = sorted(
            (([root, *children])[int(rng.integers(0, j + 1))], child) for j, child in enumerate(children)
        )
        pass_index = int(rng.integers(0, 3))
        records.append(
            FamilyRecord(
                sae_id=FAMILY_SAE,
                family_id=f"f{root}-p{pass_index}",
                root=root,
                children=tuple(children),
                edges=tuple(edges),
                pass_index=pass_index,
                nested_in=None if i == 0 or i % 4 else records[0].family_id,
                root_density=float(rng.uniform(0.01, 0.3)),
                label="" if i % 3 == 0 else f"{TOPICS[i % len(TOPICS)]} family",
                corpus=CORPUS,
                threshold=0.1,
                created_unix=1_700_000_000 + i,
                extra={"seed": seed},
                member_counts=tuple(int(c) for c in rng.integers(0, 1000, size=len(children) + 1)),
                documents=1000,
                direction_norm=float(rng.uniform(1.0, 3.0)),
            )
        )
    vectors = rng.standard_normal((len(records), FAMILY_DIM)).astype(np.float32) * 3.0
    return Families(records, vectors)


@pytest.fixture(scope="module")
def families(stores: dict[str, DocumentStore], labels: Labels) -> Families:
    made = make_families()
    for store in stores.values():
        FamilyStore(store).replace_all(FAMILY_SAE, list(zip(made.records, made.vectors, strict=True)))
    return made


def same_families(a: list[FamilyRecord], b: list[FamilyRecord]) -> bool:
    """Field by field; floats within 1e-12 (qdrant-edge parses payload floats to within an ulp)."""

    def close(x: FamilyRecord, y: FamilyRecord) -> bool:
        pairs = zip(dataclasses.astuple(x), dataclasses.astuple(y), strict=True)
        return all(u == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v) for u, v in pairs)

    return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))


def run_both_families(
    stores: dict[str, DocumentStore], call: Callable[[FamilyStore], Any]
) -> tuple[Any, Any]:
    return call(FamilyStore(stores["edge"])), call(FamilyStore(stores["server"]))


def test_families_read_back_as_put_largest_first_on_both_adapters(
    stores: dict[str, DocumentStore], families: Families
) -> None:
    edge, server = run_both_families(stores, lambda s: s.all_families(FAMILY_SAE))
    assert same_families(edge, server)
    assert [f.family_id for f in edge] == families.expected_order()
    by_id = {f.family_id: f for f in families.records}
    assert same_families(edge, [by_id[fid] for fid in families.expected_order()])
    one = families.records[5]
    edge, server = run_both_families(
        stores, lambda s: (s.get(FAMILY_SAE, one.family_id), s.count(FAMILY_SAE))
    )
    assert same_families([edge[0]], [server[0]])
    assert same_families([edge[0]], [one])
    assert edge[1] == server[1] == len(families.records)


def test_the_families_of_a_feature_are_the_same_on_both_adapters(
    stores: dict[str, DocumentStore], families: Families
) -> None:
    by_id = {f.family_id: f for f in families.records}
    shared = Counter(latent for f in families.records for latent in f.members)
    never = next(latent for latent in range(LATENTS) if latent not in shared)
    # The most shared features (in several families, as root or child) and one in none.
    for feature in [latent for latent, _ in shared.most_common(6)] + [never]:
        edge, server = run_both_families(stores, methodcaller("families_of_feature", FAMILY_SAE, feature))
        assert same_families(edge, server)
        expected = [fid for fid in families.expected_order() if feature in by_id[fid].members]
        assert [f.family_id for f in edge] == expected
    assert shared.most_common(1)[0][1] >= 3


def test_family_directions_come_back_normalised_on_both_adapters(
    stores: dict[str, DocumentStore], families: Families
) -> None:
    for row in (0, 13, 39):
        fid = families.records[row].family_id
        edge, server = run_both_families(stores, methodcaller("direction", FAMILY_SAE, fid))
        unit = families.vectors[row] / np.linalg.norm(families.vectors[row])
        assert edge.tolist() == pytest.approx(server.tolist(), abs=1e-6)
        assert edge.tolist() == pytest.approx(unit.tolist(), abs=1e-6)


def test_families_collections_stay_out_of_the_corpus_list_and_apart_from_labels_on_both_adapters(
    stores: dict[str, DocumentStore], labels: Labels, families: Families
) -> None:
    for store in stores.values():
        assert FamilyStore(store).has(FAMILY_SAE)
        assert LabelStore(store).has(FAMILY_SAE)
        assert CORPUS in store.list_collections()
        assert not any(schema.is_families_collection(name) for name in store.list_collections())
        assert LabelStore(store).count(FAMILY_SAE) == len(LABELLED)
    edge, server = run_both(stores, lambda s: s.collection_info(schema.families_collection(FAMILY_SAE)))
    assert edge == server
    assert (edge.points, edge.dense_dim, edge.sae_ids) == (len(families.records), FAMILY_DIM, ())
    assert (edge.metadata["sae_id"], edge.metadata["kind"]) == (FAMILY_SAE, "feature_families")


def test_rebuilding_relabelling_and_dropping_families_gives_the_same_answers_on_both_adapters(
    stores: dict[str, DocumentStore], families: Families
) -> None:
    sae = "astro/rebuilt"
    first = [dataclasses.replace(f, sae_id=sae) for f in families.records[:20]]
    second = [dataclasses.replace(f, sae_id=sae, label="rebuilt") for f in families.records[10:30]]
    for family_store in (FamilyStore(store) for store in stores.values()):
        family_store.drop(sae)
        family_store.replace_all(sae, list(zip(first, families.vectors[:20], strict=True)))
        # The rebuilt directions point the other way, so a read can tell old ones from new.
        family_store.replace_all(sae, list(zip(second, -families.vectors[10:30], strict=True)))
        family_store.set_labels(sae, {second[0].family_id: "relabelled", "f9999-p0": "nowhere"})
    edge, server = run_both_families(stores, lambda s: s.all_families(sae))
    assert same_families(edge, server)
    assert sorted(f.family_id for f in edge) == sorted(f.family_id for f in second)
    assert sorted(f.label for f in edge) == sorted(["relabelled"] + ["rebuilt"] * 19)
    fid = second[3].family_id
    edge, server = run_both_families(stores, lambda s: s.direction(sae, fid))
    unit = -families.vectors[13] / np.linalg.norm(families.vectors[13])
    assert edge.tolist() == pytest.approx(server.tolist(), abs=1e-6)
    assert edge.tolist() == pytest.approx(unit.tolist(), abs=1e-6)
    edge, server = run_both_families(
        stores, lambda s: (s.drop(sae), s.drop(sae), s.has(sae), s.get(sae, fid), s.all_families(sae))
    )
    assert edge == server == (True, False, False, None, [])
