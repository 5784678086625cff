"""Observability through the real stack (encoder, sae, search on loopback): /metrics after a
search, Qdrant and job metrics, and one trace across the search → encoder hop."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from search_testing import CORPUS, CountingBackend, Stack, index_requests, serve_stack

from featurelens.corpus import Record
from featurelens.kit import tracing
from featurelens.kit.observer import install_observer
from featurelens.v1 import search_pb2

SEARCH = "featurelens.v1.SearchService"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def metered_stack(
    backend: CountingBackend, models_dir: Path, indexed_edge: Path, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The stack over a private copy of the indexed corpus, serving /metrics on a free port."""
    install_observer()
    edge = tmp_path / "qdrant"
    subprocess.run(["cp", "-a", "--sparse=always", str(indexed_edge), str(edge)], check=True)
    async with serve_stack(backend, models_dir, edge, metrics_port=0) as running:
        yield running


async def test_metrics_show_searches_by_status_code_qdrant_calls_and_the_embedding_cache(
    metered_stack: Stack,
) -> None:
    metrics = metered_stack.server.metrics
    assert metrics is not None
    before = await asyncio.to_thread(scrape, metrics.port)
    request = search_pb2.SearchRequest(corpus=CORPUS, text="quasars and active galactic nuclei")

    await metered_stack.stub.Search(request)
    await metered_stack.stub.Search(request)  # the query's embedding now comes from the cache
    with pytest.raises(aio.AioRpcError) as refused:
        await metered_stack.stub.Search(search_pb2.SearchRequest(corpus=CORPUS))
    after = await asyncio.to_thread(scrape, metrics.port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert value(after, "featurelens_requests_total", service=SEARCH, rpc="Search", code="OK") >= 2
    assert delta("featurelens_requests_total", service=SEARCH, rpc="Search", code="OK") == 2
    assert delta("featurelens_requests_total", service=SEARCH, rpc="Search", code="INVALID_ARGUMENT") == 1
    encoder = "featurelens.v1.EncoderService"
    assert delta("featurelens_requests_total", service=encoder, rpc="Embed", code="OK") == 2
    assert value(after, "featurelens_requests_in_flight", service=SEARCH, rpc="Search") == 0
    assert delta("featurelens_request_duration_seconds_count", service=SEARCH, rpc="Search") == 3
    qdrant = {"dependency": "qdrant", "operation": "query"}
    assert delta("featurelens_dependency_duration_seconds_count", **qdrant) >= 2
    assert delta("featurelens_dependency_duration_seconds_sum", **qdrant) > 0
    assert delta("featurelens_cache_lookups_total", cache="embedding", result="miss") == 1
    assert delta("featurelens_cache_lookups_total", cache="embedding", result="hit") == 1


async def test_an_indexing_job_reports_its_progress_as_metrics(
    metered_stack: Stack, records: list[Record]
) -> None:
    labels = {"service": SEARCH, "rpc": "IndexDocuments", "stage": "index"}
    metrics = metered_stack.server.metrics
    assert metrics is not None
    before = await asyncio.to_thread(scrape, metrics.port)

    await metered_stack.index(index_requests(records[:120], batch=50, corpus="metered"))
    after = await asyncio.to_thread(scrape, metrics.port)

    assert (
        value(after, "featurelens_job_items_total", **labels)
        - value(before, "featurelens_job_items_total", **labels)
        == 120
    )
    assert value(after, "featurelens_job_done", **labels) == 120
    upserts = {"dependency": "qdrant", "operation": "upsert"}
    assert value(after, "featurelens_dependency_duration_seconds_count", **upserts) > value(
        before, "featurelens_dependency_duration_seconds_count", **upserts
    )


async def test_the_metrics_port_closes_with_the_stack(
    backend: CountingBackend, models_dir: Path, indexed_edge: Path, tmp_path: Path
) -> None:
    edge = tmp_path / "qdrant"
    subprocess.run(["cp", "-a", "--sparse=always", str(indexed_edge), str(edge)], check=True)
    async with serve_stack(backend, models_dir, edge, metrics_port=0) as running:
        assert running.server.metrics is not None
        port = running.server.metrics.port
        await asyncio.to_thread(scrape, port)

    with socket.socket() as probe:
        # SO_REUSEADDR: the scrape's connection may linger in TIME_WAIT; a listener would still refuse.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))  # raises while anything still listens there


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for the test."""
    with tracing.recorded() as exporter:
        yield exporter


async def test_a_search_and_its_call_to_the_encoder_are_one_trace_joined_by_the_request_id(
    metered_stack: Stack, spans: InMemorySpanExporter
) -> None:
    request = search_pb2.SearchRequest(corpus=CORPUS, text="dark matter halos in galaxy clusters")

    await metered_stack.stub.Search(request, metadata=(("x-request-id", "req-traced-search"),))

    finished = {span.name: span for span in spans.get_finished_spans()}
    search = finished[f"{SEARCH}/Search"]
    embed = finished["featurelens.v1.EncoderService/Embed"]
    query = finished["qdrant.query"]
    assert search.context is not None
    assert embed.context is not None
    assert query.context is not None
    assert search.parent is None
    assert embed.parent is not None
    assert embed.parent.span_id == search.context.span_id
    assert query.parent is not None
    assert query.parent.span_id == search.context.span_id
    assert embed.context.trace_id == search.context.trace_id == query.context.trace_id
    for span in (search, embed, query):
        assert (span.attributes or {})[tracing.REQUEST_ID_ATTRIBUTE] == "req-traced-search"
    assert (query.attributes or {})["backend"] == "edge"
