"""The encoder or the sae service down or slow: UNAVAILABLE / DEADLINE_EXCEEDED naming it; health."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from search_testing import CORPUS, CountingBackend, Stack, failure_of, index_requests, serve_stack
from typing_extensions import override

from featurelens.corpus import Record
from featurelens.embedding.backends import EmbeddingBackend
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc, search_pb2
from featurelens.wire.arrays import to_dense_vector


def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def edge_copy(indexed_edge: Path, tmp_path: Path) -> Path:
    edge = tmp_path / "qdrant"
    subprocess.run(["cp", "-a", "--sparse=always", str(indexed_edge), str(edge)], check=True)
    return edge


class SlowEncoder(encoder_pb2_grpc.EncoderServiceServicer):
    """An encoder that takes far longer than any deadline."""

    @override
    async def Embed(
        self, request: encoder_pb2.EmbedRequest, context: aio.ServicerContext
    ) -> encoder_pb2.EmbedResponse:
        await asyncio.sleep(30)
        return encoder_pb2.EmbedResponse()


@pytest.fixture
async def slow_encoder() -> AsyncIterator[str]:
    server = aio.server()
    encoder_pb2_grpc.add_EncoderServiceServicer_to_server(SlowEncoder(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


async def test_the_search_service_reports_serving_once_its_store_is_open(stack: Stack) -> None:
    health = health_pb2_grpc.HealthStub(stack.channel)

    reply = await health.Check(health_pb2.HealthCheckRequest(service="featurelens.v1.SearchService"))

    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_with_the_sae_service_down_sparse_search_is_unavailable_naming_it_and_dense_search_works(
    backend: CountingBackend, models_dir: Path, edge_copy: Path
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    async with serve_stack(backend, models_dir, edge_copy, sae_address=address) as stack:
        error = await failure_of(
            stack.stub.Search(
                search_pb2.SearchRequest(corpus=CORPUS, text="quasars", mode=search_pb2.SEARCH_MODE_SPARSE)
            )
        )
        dense = await stack.stub.Search(search_pb2.SearchRequest(corpus=CORPUS, text="quasars"))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert f"the sae service at {address} is unavailable" in (error.details() or "")
    assert len(dense.hits) == 10


async def test_with_the_encoder_down_text_search_is_unavailable_and_vector_search_works(
    backend: CountingBackend, models_dir: Path, edge_copy: Path, wordllama: EmbeddingBackend
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    vector = to_dense_vector(wordllama.embed(["quasars"]).vectors[0])
    async with serve_stack(backend, models_dir, edge_copy, encoder_address=address) as stack:
        error = await failure_of(stack.stub.Search(search_pb2.SearchRequest(corpus=CORPUS, text="quasars")))
        hybrid = await stack.stub.Search(
            search_pb2.SearchRequest(corpus=CORPUS, vector=vector, mode=search_pb2.SEARCH_MODE_HYBRID)
        )

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert f"the encoder service at {address} is unavailable" in (error.details() or "")
    assert len(hybrid.hits) == 10


async def test_an_indexing_job_stops_unavailable_when_the_sae_service_goes_down(
    backend: CountingBackend, models_dir: Path, edge_copy: Path, records: list[Record]
) -> None:
    async with serve_stack(backend, models_dir, edge_copy) as stack:
        stack.search.dependencies.sae.address = f"127.0.0.1:{closed_port()}"
        await stack.search.dependencies.sae.close()  # the next call opens a channel to the new address

        error = await failure_of(stack.index(index_requests(records[:20], corpus="late")))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "the sae service at 127.0.0.1:" in (error.details() or "")
    assert "run it again to resume" in (error.details() or "")


async def test_a_dependency_that_does_not_answer_in_time_is_a_deadline_exceeded(
    backend: CountingBackend, models_dir: Path, edge_copy: Path, slow_encoder: str
) -> None:
    async with serve_stack(
        backend, models_dir, edge_copy, encoder_address=slow_encoder, encoder_timeout_s=0.3
    ) as stack:
        error = await failure_of(stack.stub.Search(search_pb2.SearchRequest(corpus=CORPUS, text="quasars")))

    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert f"the encoder service at {slow_encoder} did not answer within 0.3 s" in (error.details() or "")
