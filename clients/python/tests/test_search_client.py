"""The SDK's search sub-client against an in-test search servicer on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

from featurelens.client import (
    AsyncFeaturelensClient,
    Document,
    FeaturelensClient,
    Filter,
    Intervention,
    NotFoundError,
    SteeredFeature,
)
from featurelens.corpus import Record
from featurelens.v1 import common_pb2, search_pb2


@pytest.fixture
def client(services_address: str) -> Iterator[FeaturelensClient]:
    with FeaturelensClient(services_address) as client:
        yield client


@pytest.fixture
async def aclient(services_address: str) -> AsyncIterator[AsyncFeaturelensClient]:
    async with AsyncFeaturelensClient(services_address) as client:
        yield client


def test_index_documents_streams_documents_and_records_in_messages(
    client: FeaturelensClient, fake_search: Any
) -> None:
    before = len(fake_search.indexed)
    documents = [
        Document(id=f"d{i}", title=f"T{i}", text=f"text {i}", categories=("cs.LG",)) for i in range(5)
    ]
    documents.append(
        Record(id="r1", title="A record", text="read from a corpus file", categories=("astro-ph.CO",))
    )

    progress = list(client.search.index_documents("arxiv", documents, documents_per_message=4))

    assert [p.indexed for p in progress] == [4, 6]
    sent = fake_search.indexed[before:]
    assert [d.id for d in sent] == ["d0", "d1", "d2", "d3", "d4", "r1"]
    assert list(sent[-1].categories) == ["astro-ph.CO"]


def test_index_documents_can_name_a_corpus_file_on_the_server(client: FeaturelensClient) -> None:
    [progress] = client.search.index_documents("arxiv", corpus_path="/data/arxiv.jsonl.gz", limit=3)

    assert progress.indexed == 3
    assert progress.progress.total == 3


def test_index_documents_refuses_both_documents_and_a_corpus_file(client: FeaturelensClient) -> None:
    with pytest.raises(ValueError, match="not both"):
        list(client.search.index_documents("arxiv", [Document(id="x")], corpus_path="/data/x.jsonl"))


def test_search_sends_every_option_and_returns_typed_hits(
    client: FeaturelensClient, fake_search: Any
) -> None:
    result = client.search.search(
        "arxiv",
        "dark matter",
        mode="hybrid",
        fusion="dbsf",
        sparse_weight=2.0,
        filter=Filter(categories=("astro-ph.CO",), date_from="2025-01-01", features_must_not_fire=(3,)),
        top_k=3,
        offset=10,
        explain=True,
        interventions=[Intervention(weight=1.5, feature=7), Intervention(weight=-1, family_id="fam-2")],
        with_rank_changes=True,
        with_text=True,
    )

    sent = fake_search.last_search
    assert sent.text == "dark matter"
    assert (sent.mode, sent.fusion) == (search_pb2.SEARCH_MODE_HYBRID, search_pb2.FUSION_DBSF)
    assert (sent.sparse_weight, sent.dense_weight) == (2.0, 0.0)
    assert list(sent.filter.categories) == ["astro-ph.CO"]
    assert list(sent.filter.features_must_not_fire) == [3]
    assert [i.WhichOneof("target") for i in sent.interventions] == ["feature", "family_id"]
    assert sent.interventions[0].mode == common_pb2.STEER_MODE_ADDITIVE
    assert [hit.rank for hit in result.hits] == [11, 12, 13]
    first = result.hits[0]
    assert first.document == Document(
        id="doc-0", title="Title 0", text="Body 0", categories=("cs.LG",), date="2025-04-01"
    )
    assert first.explanation[0].label == "galaxies"
    assert result.steer_cosine == pytest.approx(0.9)
    assert [hit.rank_before for hit in result.dropped] == [3]


def test_a_phrase_intervention_is_sent_as_a_phrase_and_the_result_names_the_feature_it_became(
    client: FeaturelensClient, fake_search: Any
) -> None:
    result = client.search.search(
        "arxiv",
        "cosmology",
        interventions=[
            Intervention(phrase="dark matter halos", weight=4.0),
            Intervention(feature=7, weight=-1.0, mode="clamp"),
            Intervention(family_id="fam-2", weight=2.0),
            Intervention(feature=9, weight=1.0),
        ],
    )

    sent = fake_search.last_search.interventions
    assert [i.WhichOneof("target") for i in sent] == ["phrase", "feature", "family_id", "feature"]
    assert sent[0].phrase == "dark matter halos"
    assert result.steered[0] == SteeredFeature(
        feature=3,
        label="dark matter halos; subhalo",
        weight=4.0,
        mode="additive",
        intervention=0,
        phrase="dark matter halos",
        match_score=0.75,
    )
    assert result.steered[1] == SteeredFeature(
        feature=7, label="galaxies", weight=-1.0, mode="clamp", intervention=1
    )
    assert [(s.feature, s.label, s.family_id, s.intervention) for s in result.steered[2:4]] == [
        (12, "exoplanet transits", "fam-2", 2),
        (20, "gravitational waves", "fam-2", 2),
    ]
    assert (result.steered[4].label, result.steered[4].phrase, result.steered[4].match_score) == (
        "",
        None,
        None,
    )


def test_an_unsteered_search_reports_no_steered_features(client: FeaturelensClient) -> None:
    assert client.search.search("arxiv", "cosmology").steered == ()


def test_a_phrase_that_matches_no_label_is_the_servers_not_found_error(client: FeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="no labelled feature matches the phrase 'quasars'"):
        client.search.search("arxiv", "q", interventions=[Intervention(phrase="quasars", weight=1.0)])


@pytest.mark.parametrize(
    "targets",
    [
        {},
        {"feature": 1, "phrase": "halos"},
        {"family_id": "f", "phrase": "halos"},
        {"feature": 1, "family_id": "f"},
    ],
)
def test_an_intervention_names_exactly_one_target(targets: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="exactly one of feature, family_id or phrase"):
        Intervention(weight=1.0, **targets)


def test_an_intervention_phrase_needs_some_text() -> None:
    with pytest.raises(ValueError, match="phrase must have some text"):
        Intervention(weight=1.0, phrase="  ")


def test_feature_documents_can_carry_their_stored_embeddings(client: FeaturelensClient) -> None:
    with_embeddings = client.search.top_documents("arxiv", 7, n=3, with_embedding=True)
    without = client.search.top_documents("arxiv", 7, n=3)

    assert [d.embedding.tolist() for d in with_embeddings if d.embedding is not None] == [
        [float(i)] * 8 for i in range(3)
    ]
    assert [d.embedding for d in without] == [None, None, None]
    assert with_embeddings == without


def test_hard_negatives_are_asked_for_with_a_vector_near_which_to_look(
    client: FeaturelensClient, fake_search: Any
) -> None:
    near = np.full(8, 40.0, dtype=np.float32)

    negatives = client.search.sample_documents("arxiv", 7, n=3, firing=False, near=near)

    assert [d.document.id for d in negatives] == ["doc-40", "doc-41", "doc-42"]
    with pytest.raises(ValueError, match="goes with firing=False"):
        client.search.sample_documents("arxiv", 7, near=near)


def test_search_by_vector_sends_the_vector_as_bytes(client: FeaturelensClient, fake_search: Any) -> None:
    vector = np.linspace(0, 1, 16, dtype=np.float32)

    client.search.search("arxiv", vector=vector)

    sent = fake_search.last_search
    assert sent.WhichOneof("query") == "vector"
    assert np.frombuffer(sent.vector.data, dtype="<f4").tolist() == vector.tolist()


def test_search_needs_exactly_one_of_text_and_vector(client: FeaturelensClient) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        client.search.search("arxiv")
    with pytest.raises(ValueError, match="exactly one"):
        client.search.search("arxiv", "q", vector=np.ones(4))


def test_an_unknown_corpus_is_a_not_found_error(client: FeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="no corpus named 'nope'"):
        client.search.search("nope", "q")


def test_feature_documents_export_listing_and_deletion(client: FeaturelensClient) -> None:
    top = client.search.top_documents("arxiv", 7, n=3)
    sample = client.search.sample_documents("arxiv", 7, n=4, firing=False, seed=3)
    batches = list(client.search.export_activations("arxiv", batch_size=2))
    [corpus] = client.search.list_corpora()

    assert [d.activation for d in top] == [3.0, 2.0, 1.0]
    assert len(sample) == 4
    assert all(d.activation == 0.0 for d in sample)
    assert sample == client.search.sample_documents("arxiv", 7, n=4, firing=False, seed=3)
    assert [b.doc_ids for b in batches] == [("doc-0", "doc-1"), ("doc-2", "doc-3"), ("doc-4",)]
    assert batches[0].latents[1].to_dict() == {1: 1.0, 31: 0.5}
    assert (corpus.corpus, corpus.documents, corpus.sae_ids) == ("arxiv", 5, ("sae-32-k2",))
    assert client.search.delete_documents("arxiv", ["doc-1", "doc-9"]) == 1


def test_search_of_an_attached_collection_sends_their_filter_and_returns_their_payload(
    client: FeaturelensClient, fake_search: Any
) -> None:
    their_filter = {"must": [{"key": "year", "range": {"gte": 2020}}]}
    result = client.search.search(
        "arxiv",
        "dark matter",
        qdrant_filter=their_filter,
        payload_fields=["lang", "year"],
        dense_vector="emb",
        top_k=2,
    )

    sent = fake_search.last_search
    assert json.loads(sent.qdrant_filter) == their_filter
    assert list(sent.payload_fields) == ["lang", "year"]
    assert sent.dense_vector == "emb"
    assert [hit.document.payload for hit in result.hits] == [
        {"lang": "lang-0", "year": "year-0"},
        {"lang": "lang-1", "year": "year-1"},
    ]


def test_a_qdrant_filter_given_as_json_text_is_sent_as_it_is(
    client: FeaturelensClient, fake_search: Any
) -> None:
    client.search.search("arxiv", "q", qdrant_filter='{"must": []}')
    assert fake_search.last_search.qdrant_filter == '{"must": []}'
    assert client.search.search("arxiv", "q").hits[0].document.payload == {}
    with pytest.raises(TypeError, match="payload_fields"):
        client.search.search("arxiv", "q", payload_fields="lang")


async def test_sync_and_async_search_clients_agree(
    client: FeaturelensClient, aclient: AsyncFeaturelensClient
) -> None:
    options: dict[str, Any] = {
        "mode": "sparse",
        "top_k": 4,
        "explain": True,
        "with_rank_changes": True,
        "qdrant_filter": {"must": [{"key": "lang", "match": {"value": "en"}}]},
        "payload_fields": ["lang"],
        "dense_vector": "emb",
    }
    assert client.search.search("arxiv", "q", **options) == await aclient.search.search(
        "arxiv", "q", **options
    )
    assert client.search.top_documents("arxiv", 1) == await aclient.search.top_documents("arxiv", 1)
    assert client.search.sample_documents("arxiv", 1, seed=5) == await aclient.search.sample_documents(
        "arxiv", 1, seed=5
    )
    assert client.search.list_corpora() == await aclient.search.list_corpora()
    assert client.search.delete_documents("arxiv", ["doc-0"]) == await aclient.search.delete_documents(
        "arxiv", ["doc-0"]
    )
    sync_batches = list(client.search.export_activations("arxiv"))
    async_batches = [b async for b in aclient.search.export_activations("arxiv")]
    assert [b.doc_ids for b in sync_batches] == [b.doc_ids for b in async_batches]

    async def documents() -> AsyncIterator[Document]:
        for i in range(3):
            yield Document(id=f"async-{i}", text="t")

    sync_progress = list(
        client.search.index_documents("arxiv", [Document(id=f"sync-{i}", text="t") for i in range(3)])
    )
    async_progress = [p async for p in aclient.search.index_documents("arxiv", documents())]
    assert sync_progress == async_progress


def test_per_service_addresses_route_each_sub_client_to_its_own_server(
    encoder_address: str, services_address: str
) -> None:
    with FeaturelensClient(services_address, encoder_address=encoder_address) as client:
        assert client.encoder.embed(["routed to the encoder"]).dim == 256
        assert client.sae.list_saes()[0].sae_id == "sae-32-k2"
        assert client.health("encoder") == "SERVING"
        assert client.health("search") == "SERVING"
        assert client.health() == "SERVING"
