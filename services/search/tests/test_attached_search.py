"""Search, explain and steer a Qdrant collection made with plain qdrant-client once an SAE is attached.

The "user" builds their collection (their ids, their payload ``their_id`` / ``lang`` / ``day``,
their dense vector ``emb`` and an extra vector) with the same local-mode client the search
service's server store talks through, attaches the default SAE with AttachSae, and searches it
with their own Qdrant filter. The same papers indexed as a featurelens corpus are the yardstick:
their ``day`` is the paper's date as yyyymmdd, so a day range on the collection and a date range
on the corpus restrict the search to the same papers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from qdrant_client import QdrantClient, models
from search_testing import CountingBackend, Stack, failure_of, index_requests, serve_stack

from featurelens.corpus import Record
from featurelens.embedding.backends import EmbeddingBackend
from featurelens.store import schema
from featurelens.store.server import QdrantServerDocumentStore
from featurelens.v1 import common_pb2, search_pb2

THEIRS = "their-docs"
OURS = "ours"
N = 160
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _day(record: Record) -> int:
    return schema.date_int(record.date)


def _build(client: QdrantClient, wordllama: EmbeddingBackend, records: list[Record]) -> None:
    vectors = wordllama.embed([r.embedding_text for r in records]).vectors
    client.create_collection(
        THEIRS,
        vectors_config={
            "emb": models.VectorParams(size=wordllama.dim, distance=models.Distance.COSINE),
            "extra": models.VectorParams(size=3, distance=models.Distance.DOT),
        },
    )
    client.upsert(
        THEIRS,
        [
            models.PointStruct(
                id=1000 + i,
                vector={"emb": vectors[i].tolist(), "extra": [float(i), 1.0, 0.0]},
                payload={"their_id": r.id, "lang": "de" if i % 3 == 0 else "en", "day": _day(r)},
            )
            for i, r in enumerate(records)
        ],
    )


@pytest.fixture
def papers(records: list[Record]) -> list[Record]:
    return [r for r in records if r.date][:N]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "qdrant"


@pytest.fixture
async def attached(
    backend: CountingBackend,
    models_dir: Path,
    tmp_path: Path,
    folder: Path,
    wordllama: EmbeddingBackend,
    papers: list[Record],
) -> AsyncIterator[tuple[Stack, QdrantClient]]:
    """The search service on the server store over the user's folder, their collection attached
    and the same papers indexed as the corpus "ours"."""
    client = QdrantClient(path=str(folder))
    _build(client, wordllama, papers)
    async with serve_stack(
        backend, models_dir, tmp_path / "unused-edge", open_store=lambda: QdrantServerDocumentStore(client)
    ) as stack:
        request = search_pb2.AttachSaeRequest(collection=THEIRS, dense_vector="emb")
        assert [r async for r in stack.stub.AttachSae(request)][-1].progress.done == len(papers)
        assert (await stack.index(index_requests(papers, corpus=OURS)))[-1].indexed == len(papers)
        yield stack, client


def _steer(feature: int = 3, weight: float = 5.0) -> list[common_pb2.Intervention]:
    return [common_pb2.Intervention(feature=feature, weight=weight, mode=common_pb2.STEER_MODE_ADDITIVE)]


def _since(day: int) -> str:
    return json.dumps({"must": [{"key": "day", "range": {"gte": day}}]})


def _payload(hit: search_pb2.Hit) -> dict[str, Any]:
    return json_format.MessageToDict(hit.document.payload)


@pytest.mark.parametrize(
    "mode", [search_pb2.SEARCH_MODE_DENSE, search_pb2.SEARCH_MODE_SPARSE, search_pb2.SEARCH_MODE_HYBRID]
)
async def test_a_steered_search_with_their_filter_ranks_as_our_corpus_restricted_the_same_way(
    attached: tuple[Stack, QdrantClient], papers: list[Record], mode: search_pb2.SearchMode.ValueType
) -> None:
    stack, _ = attached
    middle = sorted(r.date for r in papers)[len(papers) // 2]
    query = "dark matter halos in galaxy clusters"

    ours = await stack.stub.Search(
        search_pb2.SearchRequest(
            corpus=OURS,
            text=query,
            mode=mode,
            top_k=10,
            interventions=_steer(),
            filter=search_pb2.Filter(date_from=middle),
            with_rank_changes=True,
        )
    )
    theirs = await stack.stub.Search(
        search_pb2.SearchRequest(
            corpus=THEIRS,
            text=query,
            mode=mode,
            top_k=10,
            interventions=_steer(),
            qdrant_filter=_since(schema.date_int(middle)),
            payload_fields=["their_id", "day"],
            with_rank_changes=True,
        )
    )

    assert theirs.hits, "the filter left no paper"
    assert all(_payload(hit)["day"] >= schema.date_int(middle) for hit in theirs.hits)
    assert [_payload(hit)["their_id"] for hit in theirs.hits] == [hit.document.id for hit in ours.hits]
    assert [hit.rank_before for hit in theirs.hits] == [hit.rank_before for hit in ours.hits]
    assert theirs.steer_cosine == pytest.approx(ours.steer_cosine)
    assert theirs.sae_id == ours.sae_id
    assert [hit.score for hit in theirs.hits] == pytest.approx([hit.score for hit in ours.hits], rel=1e-4)


async def test_hits_carry_their_point_ids_and_the_payload_fields_asked_for_and_explain_their_features(
    attached: tuple[Stack, QdrantClient], sae_id: str
) -> None:
    stack, client = attached
    response = await stack.stub.Search(
        search_pb2.SearchRequest(
            corpus=THEIRS,
            text="stellar spectra of white dwarfs",
            mode=search_pb2.SEARCH_MODE_SPARSE,
            top_k=5,
            explain=True,
            qdrant_filter=json.dumps({"must": [{"key": "lang", "match": {"value": "de"}}]}),
            payload_fields=["lang", "their_id"],
        )
    )

    assert len(response.hits) == 5
    for hit in response.hits:
        assert set(_payload(hit)) == {"lang", "their_id"}
        assert _payload(hit)["lang"] == "de"
        [point] = client.retrieve(THEIRS, [int(hit.document.id)], with_payload=True)
        assert point.payload is not None
        assert point.payload["their_id"] == _payload(hit)["their_id"]
        assert hit.explanation, "a sparse hit shares features with the query"
        firing = set(point.payload[schema.features_field(sae_id)])
        assert {c.feature for c in hit.explanation} <= firing


async def test_their_filter_is_anded_with_the_features_that_must_and_must_not_fire(
    attached: tuple[Stack, QdrantClient], sae_id: str
) -> None:
    stack, client = attached
    points, _ = client.scroll(THEIRS, limit=1000, with_payload=True)
    key = schema.features_field(sae_id)
    common = max(range(512), key=lambda f: sum(f in (p.payload or {})[key] for p in points))
    response = await stack.stub.Search(
        search_pb2.SearchRequest(
            corpus=THEIRS,
            text="galaxy",
            top_k=50,
            filter=search_pb2.Filter(features_must_fire=[common]),
            qdrant_filter=json.dumps({"must": [{"key": "lang", "match": {"value": "en"}}]}),
        )
    )
    wanted = {
        str(p.id) for p in points if p.payload and p.payload["lang"] == "en" and common in p.payload[key]
    }
    assert {hit.document.id for hit in response.hits} <= wanted
    assert len(response.hits) == min(50, len(wanted))

    excluded = await stack.stub.Search(
        search_pb2.SearchRequest(
            corpus=THEIRS, text="galaxy", top_k=50, filter=search_pb2.Filter(features_must_not_fire=[common])
        )
    )
    assert not {hit.document.id for hit in excluded.hits} & {
        str(p.id) for p in points if p.payload and common in p.payload[key]
    }


#: Requests an attached collection refuses (INVALID_ARGUMENT), and words the refusal says.
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"qdrant_filter": "{not json"}, "qdrant_filter is not JSON"),
    ({"qdrant_filter": "[1, 2]"}, "must be a JSON object"),
    ({"qdrant_filter": json.dumps({"must": [{"key": "day", "rnage": {"gte": 1}}]})}, "rnage"),
    ({"qdrant_filter": json.dumps({"must": [{"key": "x" * 70_000, "match": {"value": 1}}]})}, "65,536"),
    ({"qdrant_filter": "[" * 60_000}, "qdrant_filter is"),
    ({"payload_fields": [f"k{i}" for i in range(65)]}, "the limit is 64"),
    ({"payload_fields": [""]}, "1 to 256 bytes"),
    ({"dense_vector": "nope"}, "'emb' (256 dims)"),
    ({"dense_vector": "extra"}, "has 3 dims"),
    ({"filter": search_pb2.Filter(categories=["astro-ph.CO"])}, "qdrant_filter"),
    ({"filter": search_pb2.Filter(date_from="2024-01-01")}, "qdrant_filter"),
]


async def test_an_attached_search_refuses_bad_filters_and_options_with_a_sentence(
    attached: tuple[Stack, QdrantClient],
) -> None:
    stack, _ = attached
    for fields, words in REFUSED:
        request = search_pb2.SearchRequest(
            corpus=THEIRS, text="galaxy", mode=search_pb2.SEARCH_MODE_SPARSE, **fields
        )
        error = await failure_of(stack.stub.Search(request))
        assert error.code() == INVALID, (fields, error.details())
        assert words in (error.details() or ""), error.details()


async def test_a_featurelens_corpus_refuses_the_options_of_attached_collections(
    attached: tuple[Stack, QdrantClient],
) -> None:
    stack, _ = attached
    for fields in ({"qdrant_filter": _since(1)}, {"payload_fields": ["lang"]}, {"dense_vector": "emb"}):
        error = await failure_of(stack.stub.Search(search_pb2.SearchRequest(corpus=OURS, text="x", **fields)))
        assert error.code() == INVALID
        assert "use filter instead" in (error.details() or "")


async def test_other_calls_naming_the_attached_collection_refuse_it_cleanly(
    attached: tuple[Stack, QdrantClient],
) -> None:
    stack, _ = attached
    error = await failure_of(
        stack.stub.TopDocuments(search_pb2.TopDocumentsRequest(corpus=THEIRS, feature=1))
    )
    assert error.code() in (grpc.StatusCode.NOT_FOUND, INVALID)
    listed = await stack.stub.ListCorpora(search_pb2.ListCorporaRequest())
    assert [c.corpus for c in listed.corpora] == [OURS]


async def test_after_detaching_the_collection_is_not_found(
    attached: tuple[Stack, QdrantClient], sae_id: str
) -> None:
    stack, _ = attached
    await stack.stub.DetachSae(search_pb2.DetachSaeRequest(collection=THEIRS, sae_id=sae_id))
    error = await failure_of(stack.stub.Search(search_pb2.SearchRequest(corpus=THEIRS, text="galaxy")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no SAE attached" in (error.details() or "")
    missing = await failure_of(stack.stub.Search(search_pb2.SearchRequest(corpus="no-such", text="galaxy")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_a_restarted_search_service_finds_the_attached_collection_again(
    backend: CountingBackend,
    models_dir: Path,
    tmp_path: Path,
    folder: Path,
    wordllama: EmbeddingBackend,
    papers: list[Record],
) -> None:
    request = search_pb2.SearchRequest(
        corpus=THEIRS,
        text="cosmic microwave background",
        mode=search_pb2.SEARCH_MODE_HYBRID,
        interventions=_steer(),
        qdrant_filter=json.dumps({"must_not": [{"key": "lang", "match": {"value": "de"}}]}),
        payload_fields=["lang"],
    )
    client = QdrantClient(path=str(folder))
    _build(client, wordllama, papers[:60])
    async with serve_stack(
        backend, models_dir, tmp_path / "edge-1", open_store=lambda: QdrantServerDocumentStore(client)
    ) as first:
        [
            r
            async for r in first.stub.AttachSae(
                search_pb2.AttachSaeRequest(collection=THEIRS, dense_vector="emb")
            )
        ]
        before = await first.stub.Search(request)
    # Stopping the service closed the client, so the folder is free for a new process's client.
    reopened = QdrantClient(path=str(folder))
    async with serve_stack(
        backend, models_dir, tmp_path / "edge-2", open_store=lambda: QdrantServerDocumentStore(reopened)
    ) as second:
        after = await second.stub.Search(request)

    assert before.hits
    assert all(_payload(hit) == {"lang": "en"} for hit in before.hits)
    assert [hit.document.id for hit in after.hits] == [hit.document.id for hit in before.hits]
