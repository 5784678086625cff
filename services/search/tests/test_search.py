"""Search: dense, sparse and hybrid modes, filters, paging, explanations, no-op steering."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
from search_testing import CORPUS, CountingBackend, Stack, TableFamilies, hit_ids, serve_stack

from featurelens.embedding.backends import EmbeddingBackend
from featurelens.kit import InvalidArgumentError
from featurelens.services.search import querying
from featurelens.store import ScoredPoint
from featurelens.v1 import common_pb2, search_pb2
from featurelens.wire.arrays import to_dense_vector

MODES = {
    "dense": search_pb2.SEARCH_MODE_DENSE,
    "sparse": search_pb2.SEARCH_MODE_SPARSE,
    "hybrid": search_pb2.SEARCH_MODE_HYBRID,
}


def request(text: str = "galaxy clusters", **fields: object) -> search_pb2.SearchRequest:
    return search_pb2.SearchRequest(corpus=CORPUS, text=text, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
async def test_a_query_about_galaxy_clusters_finds_papers_about_clusters(stack: Stack, mode: int) -> None:
    response = await stack.stub.Search(request(mode=mode, with_text=True))

    assert len(response.hits) == 10
    about_clusters = [h for h in response.hits if "cluster" in (h.document.title + h.document.text).lower()]
    assert len(about_clusters) >= 8
    assert [h.rank for h in response.hits] == list(range(1, 11))
    assert all(a.score >= b.score for a, b in zip(response.hits, response.hits[1:], strict=False))
    assert all(h.document.title and h.document.categories and h.document.date for h in response.hits)


async def test_hits_carry_their_text_only_when_asked(stack: Stack) -> None:
    without = await stack.stub.Search(request(top_k=3))
    with_text = await stack.stub.Search(request(top_k=3, with_text=True))

    assert all(not h.document.text for h in without.hits)
    assert all(h.document.text for h in with_text.hits)


async def test_hybrid_search_honours_the_fusion_method_and_the_leg_weights(stack: Stack) -> None:
    hybrid = search_pb2.SEARCH_MODE_HYBRID
    dense = await stack.stub.Search(request(mode=search_pb2.SEARCH_MODE_DENSE))
    sparse = await stack.stub.Search(request(mode=search_pb2.SEARCH_MODE_SPARSE))

    dense_heavy = await stack.stub.Search(
        request(mode=hybrid, fusion=search_pb2.FUSION_DBSF, dense_weight=1, sparse_weight=1e-6)
    )
    sparse_heavy = await stack.stub.Search(
        request(mode=hybrid, fusion=search_pb2.FUSION_DBSF, dense_weight=1e-6, sparse_weight=1)
    )
    rrf = await stack.stub.Search(request(mode=hybrid, fusion=search_pb2.FUSION_RRF))

    assert hit_ids(dense_heavy) == hit_ids(dense)
    assert hit_ids(sparse_heavy) == hit_ids(sparse)
    # Reciprocal rank fusion of two legs with weight 1 and k 60: at most 1/61 per leg.
    assert all(0 < h.score <= 2 / 61 + 1e-9 for h in rrf.hits)


async def test_a_query_vector_finds_what_its_text_finds(stack: Stack, wordllama: EmbeddingBackend) -> None:
    vector = wordllama.embed(["galaxy clusters"]).vectors[0]

    by_text = await stack.stub.Search(request(mode=search_pb2.SEARCH_MODE_HYBRID))
    by_vector = await stack.stub.Search(
        search_pb2.SearchRequest(
            corpus=CORPUS, vector=to_dense_vector(vector), mode=search_pb2.SEARCH_MODE_HYBRID
        )
    )

    assert hit_ids(by_vector) == hit_ids(by_text)


async def test_a_category_filter_keeps_only_papers_of_those_categories(stack: Stack) -> None:
    flt = search_pb2.Filter(categories=["astro-ph.CO", "gr-qc"])

    response = await stack.stub.Search(request(filter=flt, top_k=30))

    assert len(response.hits) == 30
    assert all({"astro-ph.CO", "gr-qc"} & set(h.document.categories) for h in response.hits)


async def test_a_date_filter_keeps_only_papers_listed_within_the_range(stack: Stack) -> None:
    flt = search_pb2.Filter(date_from="2025-09-01", date_to="2025-10-31")

    response = await stack.stub.Search(request(filter=flt, top_k=30, mode=search_pb2.SEARCH_MODE_HYBRID))

    assert len(response.hits) == 30
    assert all("2025-09-01" <= h.document.date <= "2025-10-31" for h in response.hits)


async def test_feature_filters_keep_papers_on_which_a_feature_fires_or_does_not(
    stack: Stack, sae_id: str
) -> None:
    explained = await stack.stub.Search(request(mode=search_pb2.SEARCH_MODE_SPARSE, explain=True, top_k=1))
    feature = explained.hits[0].explanation[0].feature

    firing = await stack.stub.Search(
        request(filter=search_pb2.Filter(features_must_fire=[feature]), top_k=50)
    )
    silent = await stack.stub.Search(
        request(filter=search_pb2.Filter(features_must_not_fire=[feature]), top_k=50)
    )

    store = stack.search.corpora.store
    fired = {
        p.doc_id: feature in p.sparse[sae_id].indices
        for p in store.retrieve(
            CORPUS, hit_ids(firing) + hit_ids(silent), with_payload=False, with_sparse=[sae_id]
        )
    }
    assert firing.hits
    assert all(fired[doc_id] for doc_id in hit_ids(firing))
    assert len(silent.hits) == 50
    assert not any(fired[doc_id] for doc_id in hit_ids(silent))
    assert firing.sae_id == sae_id


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
async def test_pages_of_results_continue_where_the_previous_page_ended(stack: Stack, mode: int) -> None:
    first_ten = await stack.stub.Search(request(mode=mode, top_k=10))
    second_page = await stack.stub.Search(request(mode=mode, top_k=5, offset=5))

    assert hit_ids(second_page) == hit_ids(first_ten)[5:]
    assert [h.rank for h in second_page.hits] == [6, 7, 8, 9, 10]
    assert [h.score for h in second_page.hits] == [h.score for h in first_ten.hits[5:]]


async def test_explained_contributions_sum_to_the_sparse_score_largest_first(stack: Stack) -> None:
    response = await stack.stub.Search(request(mode=search_pb2.SEARCH_MODE_SPARSE, explain=True))

    for hit in response.hits:
        contributions = [c.contribution for c in hit.explanation]
        assert contributions == sorted(contributions, reverse=True)
        assert math.fsum(contributions) == pytest.approx(hit.score, rel=1e-4)
        for c in hit.explanation:
            assert c.contribution == pytest.approx(c.query_activation * c.document_activation, rel=1e-6)
            assert c.label == ""


async def test_dense_hits_are_explained_by_the_features_they_share_with_the_query(stack: Stack) -> None:
    response = await stack.stub.Search(request(explain=True, top_k=5))

    assert response.sae_id
    assert all(hit.explanation for hit in response.hits)


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
async def test_steering_that_changes_nothing_returns_exactly_the_unsteered_ranking(
    stack: Stack, mode: int
) -> None:
    plain = await stack.stub.Search(request(mode=mode, top_k=20))
    no_op = [
        common_pb2.Intervention(feature=3, weight=0.0),
        common_pb2.Intervention(feature=7, weight=0.0, mode=common_pb2.STEER_MODE_ADDITIVE),
    ]

    steered = await stack.stub.Search(
        request(mode=mode, top_k=20, interventions=no_op, with_rank_changes=True)
    )
    empty = await stack.stub.Search(request(mode=mode, top_k=20, interventions=[], with_rank_changes=True))

    for response in (steered, empty):
        assert hit_ids(response) == hit_ids(plain)
        assert [h.score for h in response.hits] == [h.score for h in plain.hits]
        assert [h.rank_before for h in response.hits] == [h.rank for h in plain.hits]
        assert not response.dropped
    assert steered.steer_cosine == 1.0


async def test_a_steered_query_reports_rank_changes_and_the_hits_it_dropped(stack: Stack) -> None:
    explained = await stack.stub.Search(request(mode=search_pb2.SEARCH_MODE_SPARSE, explain=True, top_k=1))
    feature = explained.hits[0].explanation[0].feature
    plain = await stack.stub.Search(request(top_k=10))

    steered = await stack.stub.Search(
        request(
            top_k=10,
            interventions=[common_pb2.Intervention(feature=feature, weight=-0.6)],
            with_rank_changes=True,
        )
    )

    assert 0 < steered.steer_cosine < 1
    before = {doc_id: rank for rank, doc_id in enumerate(hit_ids(plain), start=1)}
    assert [h.rank_before for h in steered.hits] == [before.get(doc_id, 0) for doc_id in hit_ids(steered)]
    assert hit_ids(steered) != hit_ids(plain)
    assert {h.document.id for h in steered.dropped} == set(hit_ids(plain)) - set(hit_ids(steered))
    assert all(h.rank == 0 and h.rank_before == before[h.document.id] for h in steered.dropped)


async def test_the_deepest_page_with_rank_changes_is_served(stack: Stack) -> None:
    # Issue 8, item 6: refused with "top_k must be from 1 to 10000, got 10001", a limit never passed.
    deepest = request(
        mode=search_pb2.SEARCH_MODE_HYBRID,
        top_k=1000,
        offset=9001,
        interventions=[common_pb2.Intervention(feature=1, weight=2)],
        with_rank_changes=True,
    )

    response = await stack.stub.Search(deepest)

    assert list(response.hits) == []  # the corpus holds 1,500 papers
    assert 0 < response.steer_cosine < 1


async def test_rank_changes_are_read_down_to_the_rank_depth_and_no_deeper(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    explained = await stack.stub.Search(request(mode=search_pb2.SEARCH_MODE_SPARSE, explain=True, top_k=1))
    feature = explained.hits[0].explanation[0].feature
    plain = await stack.stub.Search(request(top_k=20))
    monkeypatch.setattr(querying, "RANK_DEPTH", 15)

    steered = await stack.stub.Search(
        request(
            top_k=10,
            offset=10,
            interventions=[common_pb2.Intervention(feature=feature, weight=-0.6)],
            with_rank_changes=True,
        )
    )

    before = {doc_id: rank for rank, doc_id in enumerate(hit_ids(plain)[:15], start=1)}
    assert [h.rank for h in steered.hits] == list(range(11, 21))
    assert [h.rank_before for h in steered.hits] == [before.get(doc_id, 0) for doc_id in hit_ids(steered)]
    assert all(11 <= h.rank_before <= 15 for h in steered.dropped)


async def test_the_response_reports_the_time_the_server_spent(stack: Stack) -> None:
    response = await stack.stub.Search(request())

    assert response.took_ms > 0


async def test_a_family_intervention_steers_like_the_same_weight_on_each_of_its_features(
    backend: CountingBackend, models_dir: Path, indexed_edge: Path, tmp_path: Path
) -> None:
    edge = tmp_path / "qdrant"
    subprocess.run(["cp", "-a", "--sparse=always", str(indexed_edge), str(edge)], check=True)
    by_family = [common_pb2.Intervention(family_id="fam-1", weight=0.4)]
    by_features = [common_pb2.Intervention(feature=f, weight=0.4) for f in (3, 7)]

    async with serve_stack(backend, models_dir, edge, families=TableFamilies({"fam-1": [3, 7]})) as stack:
        family = await stack.stub.Search(request(interventions=by_family))
        features = await stack.stub.Search(request(interventions=by_features))

    assert hit_ids(family) == hit_ids(features)
    assert family.steer_cosine == features.steer_cosine < 1


@pytest.mark.parametrize("score", [math.inf, math.nan, 1e39], ids=["inf", "nan", "beyond float32"])
def test_a_score_a_response_cannot_carry_is_refused_rather_than_returned(score: float) -> None:
    # The last line of issue 8, item 7: bounded vectors and weights keep scores finite, and a
    # score that is not a finite float32 is never sent.
    points = [ScoredPoint("fine", 0.5, {}), ScoredPoint("d" * 1000, score, {})]

    with pytest.raises(
        InvalidArgumentError, match=r"the query scored document 'd+'\.\.\. \(1,000 characters\)"
    ):
        querying._check_scores(points, None)
