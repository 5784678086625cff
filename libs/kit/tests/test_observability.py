"""Metrics and traces of a real server on loopback: /metrics over HTTP, spans across a gRPC hop,
the core's telemetry (LLM cache, tokens, dollars) against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from featurelens import telemetry
from featurelens.interp.llm import ChatClient, InMemoryChatCache, LlmConfig
from featurelens.kit import GrpcServer, Peer, tracing
from featurelens.kit.interceptor import served_in_process
from featurelens.kit.metrics import sample
from featurelens.kit.observer import MetricsObserver, install_observer
from featurelens.kit.settings import ServiceSettings
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

# The fake OpenAI server lives with the core's tests (standard library only).
_CORE_TESTS = Path(__file__).resolve().parents[2] / "core" / "tests"
if str(_CORE_TESTS) not in sys.path:
    sys.path.insert(0, str(_CORE_TESTS))

from fake_openai import serve_fake_openai  # noqa: E402

ENCODER = "featurelens.v1.EncoderService"


def embed(*texts: str) -> encoder_pb2.EmbedRequest:
    return encoder_pb2.EmbedRequest(texts=list(texts))


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples GET /metrics answers, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests_total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], rpc: str, code: str
) -> float:
    labels = frozenset({"service": ENCODER, "rpc": rpc, "code": code}.items())
    return samples.get(("featurelens_requests_total", labels), 0.0)


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        # A scrape's connection may linger in TIME_WAIT; SO_REUSEADDR still refuses a listened port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
async def metered(fake: Any) -> AsyncIterator[GrpcServer]:
    """The fake encoder's server, serving /metrics on a free port."""
    server = GrpcServer([fake], host="127.0.0.1", port=0, grace_period_s=5.0, metrics_port=0)
    fake.release_start.set()
    await server.start()
    await server.wait_ready(timeout=10)
    yield server
    fake.release_slow_call.set()
    await server.stop(0)


# -- metrics ----------------------------------------------------------------------------------------


async def test_metrics_count_calls_by_rpc_and_status_code_and_none_stay_in_flight(
    metered: GrpcServer,
) -> None:
    assert metered.metrics is not None
    port = metered.metrics.port
    before = await asyncio.to_thread(scrape, port)
    async with aio.insecure_channel(metered.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        await stub.Embed(embed("hello"))
        await stub.Embed(embed("hello", "again"))
        failures = {}
        for text in ("invalid", "missing", "abort", "boom"):
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.Embed(embed(text))
            failures[text] = caught.value.code()

    after = await asyncio.to_thread(scrape, port)

    def delta(code: str) -> float:
        return requests_total(after, "Embed", code) - requests_total(before, "Embed", code)

    assert failures["abort"] == grpc.StatusCode.PERMISSION_DENIED
    assert delta("OK") == 2
    assert delta("INVALID_ARGUMENT") == 1
    assert delta("NOT_FOUND") == 1
    assert delta("PERMISSION_DENIED") == 1
    assert delta("INTERNAL") == 1
    embed_labels = frozenset({"service": ENCODER, "rpc": "Embed"}.items())
    assert after[("featurelens_requests_in_flight", embed_labels)] == 0
    histogram_count = ("featurelens_request_duration_seconds_count", embed_labels)
    assert after[histogram_count] - before.get(histogram_count, 0.0) == 6


async def test_a_call_in_flight_is_counted_until_it_ends(metered: GrpcServer, fake: Any) -> None:
    labels = {"service": ENCODER, "rpc": "Embed"}
    async with aio.insecure_channel(metered.address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        slow = stub.Embed(embed("slow"))
        await fake.slow_call_entered.wait()
        during = sample("featurelens_requests_in_flight", labels)
        fake.release_slow_call.set()
        await slow

    assert during == 1
    assert sample("featurelens_requests_in_flight", labels) == 0


async def test_the_metrics_port_is_free_again_once_the_server_stopped(fake: Any) -> None:
    server = GrpcServer([fake], host="127.0.0.1", port=0, metrics_port=0)
    fake.release_start.set()
    await server.start()
    assert server.metrics is not None
    port = server.metrics.port
    serving = not port_is_free(port)

    await server.stop(0)

    assert serving
    assert port_is_free(port)


async def test_no_metrics_port_serves_no_metrics(server: GrpcServer) -> None:
    assert server.metrics is None
    assert ServiceSettings().metrics_port == 0


async def test_a_metrics_port_in_use_fails_the_start_and_frees_the_grpc_port(fake: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = GrpcServer([fake], host="127.0.0.1", port=0, metrics_port=taken.getsockname()[1])
        with pytest.raises(OSError, match="METRICS_PORT"):
            await server.start()
    assert port_is_free(server.port)


# -- the core's telemetry ---------------------------------------------------------------------------


async def test_llm_cache_lookups_tokens_dollars_and_call_time_are_counted() -> None:
    install_observer()
    model = "gpt-4o-mini"
    messages = [{"role": "user", "content": "Label these documents about weak lensing."}]
    labels_hit, labels_miss = {"cache": "llm", "result": "hit"}, {"cache": "llm", "result": "miss"}
    hits, misses = (
        sample("featurelens_cache_lookups_total", labels_hit),
        sample("featurelens_cache_lookups_total", labels_miss),
    )
    prompt = sample("featurelens_llm_tokens_total", {"model": model, "kind": "prompt"})
    dollars = sample("featurelens_llm_cost_usd_total", {"model": model})
    calls = sample(
        "featurelens_dependency_duration_seconds_count", {"dependency": "llm", "operation": "chat"}
    )
    with serve_fake_openai(model=model, responder=lambda body: '{"label": "weak lensing"}') as fake:
        config = LlmConfig(base_url=fake.base_url, api_key="sk-test-0123456789abcdef", timeout_s=5.0)
        async with ChatClient(config, cache=InMemoryChatCache()) as client:
            first = await client.complete(model, messages, "v1", 50)
            second = await client.complete(model, messages, "v1", 50)

    assert not first.cached
    assert second.cached
    assert fake.chat_calls == 1
    assert sample("featurelens_cache_lookups_total", labels_miss) - misses == 1
    assert sample("featurelens_cache_lookups_total", labels_hit) - hits == 1
    spent = sample("featurelens_llm_tokens_total", {"model": model, "kind": "prompt"}) - prompt
    assert spent == first.usage.prompt_tokens > 0
    assert sample("featurelens_llm_cost_usd_total", {"model": model}) - dollars == pytest.approx(
        first.usage.cost_usd
    )
    after = sample(
        "featurelens_dependency_duration_seconds_count", {"dependency": "llm", "operation": "chat"}
    )
    assert after - calls == 1


def test_without_an_observer_the_core_reports_go_nowhere() -> None:
    saved = telemetry.observer()
    telemetry.set_observer(None)
    try:
        with telemetry.operation("qdrant", "query", backend="edge"):
            pass
        telemetry.cache_lookups("embedding", 1, 1)
        assert not isinstance(telemetry.observer(), MetricsObserver)
    finally:
        telemetry.set_observer(saved)


# -- tracing ----------------------------------------------------------------------------------------


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for the test."""
    with tracing.recorded() as exporter:
        yield exporter


async def test_a_call_to_a_peer_is_a_child_span_in_the_same_trace_with_the_request_id(
    server: GrpcServer, fake: Any, spans: InMemorySpanExporter
) -> None:
    fake.peer = Peer("encoder", server.address, timeout_s=10)
    fake.release_slow_call.set()
    try:
        async with aio.insecure_channel(server.address) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            await stub.Embed(embed("relay"), metadata=(("x-request-id", "req-traced-1"),))
    finally:
        await fake.peer.close()

    finished = [s for s in spans.get_finished_spans() if s.name == f"{ENCODER}/Embed"]
    assert len(finished) == 2
    child, parent = finished  # the relayed call ends first
    assert parent.parent is None
    assert child.parent is not None
    assert parent.context is not None
    assert child.context is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id
    assert child.kind == parent.kind == trace.SpanKind.SERVER
    for span in (child, parent):
        attributes = span.attributes or {}
        assert attributes[tracing.REQUEST_ID_ATTRIBUTE] == "req-traced-1"
        assert attributes["rpc.grpc.status_code"] == "OK"


async def test_a_call_served_in_process_is_a_child_span_of_the_callers(spans: InMemorySpanExporter) -> None:
    async def answer() -> str:
        return "answered"

    with tracing.span("caller"):
        assert await served_in_process(f"/{ENCODER}/Embed", answer()) == "answered"
    by_name: dict[str, ReadableSpan] = {s.name: s for s in spans.get_finished_spans()}
    served, caller = by_name[f"{ENCODER}/Embed"], by_name["caller"]
    assert served.parent is not None
    assert caller.context is not None
    assert served.parent.span_id == caller.context.span_id
    assert served.kind == trace.SpanKind.SERVER


async def test_a_failed_call_and_a_dependency_call_are_spans(
    stub: encoder_pb2_grpc.EncoderServiceStub, spans: InMemorySpanExporter
) -> None:
    install_observer()
    with pytest.raises(aio.AioRpcError):
        await stub.Embed(embed("invalid"))
    with tracing.span("outer"), telemetry.operation("redis", "get"):
        pass

    by_name: dict[str, ReadableSpan] = {s.name: s for s in spans.get_finished_spans()}
    failed = by_name[f"{ENCODER}/Embed"]
    assert (failed.attributes or {})["rpc.grpc.status_code"] == "INVALID_ARGUMENT"
    assert not failed.status.is_ok
    inner, outer = by_name["redis.get"], by_name["outer"]
    assert inner.parent is not None
    assert outer.context is not None
    assert inner.parent.span_id == outer.context.span_id


async def test_span_attributes_never_carry_a_secret(spans: InMemorySpanExporter) -> None:
    with tracing.span(
        "call", {"url": "https://user:hunter2-secret@llm.example/v1", "key": "sk-abcdef0123456789"}
    ):
        pass

    (span,) = spans.get_finished_spans()
    text = repr(dict(span.attributes or {}))
    assert "hunter2-secret" not in text
    assert "sk-abcdef0123456789" not in text


async def test_tracing_is_off_by_default_and_makes_no_spans(
    stub: encoder_pb2_grpc.EncoderServiceStub,
) -> None:
    # A provider installed globally by someone else does not turn featurelens tracing on.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    await stub.Embed(embed("hello"))
    with tracing.span("nothing") as nothing:
        injected = tracing.inject()

    assert not tracing.enabled()
    assert ServiceSettings().otlp_endpoint == ""
    assert not tracing.configure("featurelens-test", "")
    assert nothing is None
    assert injected == ()
    assert tracing.server_span("/x.Y/Z", ()) is None
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.received.append((self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()


async def test_an_otlp_endpoint_turns_tracing_on_and_spans_reach_the_collector(
    stub: encoder_pb2_grpc.EncoderServiceStub,
) -> None:
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    collector.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        assert tracing.configure("featurelens-test", f"http://127.0.0.1:{collector.server_port}")
        await stub.Embed(embed("hello"), metadata=(("x-request-id", "req-exported"),))
        await asyncio.to_thread(tracing.shutdown)  # flushes the batch
    finally:
        tracing.install(None)
        collector.shutdown()
        collector.server_close()

    received = collector.received  # type: ignore[attr-defined]
    assert [path for path, _ in received] == ["/v1/traces"]
    assert b"req-exported" in received[0][1]
    assert b"featurelens-test" in received[0][1]
