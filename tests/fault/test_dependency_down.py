"""A dependency down: the call fails UNAVAILABLE with a sentence naming it, the SDK retries it
(and succeeds once the dependency is back), and health says NOT_SERVING for a service that can no
longer serve at all (its Qdrant store gone), SERVING for one that still serves what needs no
missing peer (issue 13, point 3).

Real parts: the search tests' stack (wordllama encoder, an SAE trained on real abstracts, the corpus
in qdrant-edge) on loopback; the Qdrant server adapter (qdrant-client) pointed at a port nothing
listens on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import stack_fixtures
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from search_testing import CORPUS, CountingBackend, Stack, serve_stack

from featurelens.client import AsyncFeaturelensClient, Backoff, Intervention, UnavailableError
from featurelens.embedding.backends import EmbeddingBackend
from featurelens.kit import GrpcServer
from featurelens.kit.readiness import start_following
from featurelens.services.encoder.cache import MemoryEmbeddingCache
from featurelens.services.encoder.servicer import EncoderServicer
from featurelens.services.family.__main__ import build_servicer as build_family
from featurelens.services.family.settings import FamilySettings
from featurelens.services.labelling.__main__ import build_servicer as build_labelling
from featurelens.services.labelling.settings import LabellingSettings
from featurelens.services.search.__main__ import build_servicer as build_search
from featurelens.services.search.settings import SearchSettings
from featurelens.v1 import search_pb2, search_pb2_grpc

wordllama = stack_fixtures.wordllama
records = stack_fixtures.records
models_dir = stack_fixtures.models_dir
indexed_edge = stack_fixtures.indexed_edge
edge_copy = stack_fixtures.edge_copy

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
FAST_RETRIES = Backoff(initial_s=0.2, max_s=1.0)


@pytest.fixture(scope="session")
def corpus_docs() -> int:
    return 300


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def health_of(address: str, service: str) -> int:
    async with aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(reply.status)


async def eventually_health(address: str, service: str, status: int) -> None:
    deadline = time.monotonic() + 30
    while await health_of(address, service) != status:
        assert time.monotonic() < deadline, f"health of {service!r} never became {status}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def stack_without_encoder(
    wordllama: EmbeddingBackend, models_dir: Path, edge_copy: Path
) -> AsyncIterator[tuple[Stack, int]]:
    """The stack with search pointed at an encoder on a port nothing listens on (yet)."""
    port = free_port()
    async with serve_stack(
        CountingBackend(wordllama),
        models_dir,
        edge_copy,
        encoder_address=f"127.0.0.1:{port}",
        encoder_timeout_s=5.0,
    ) as stack:
        yield stack, port


async def test_with_the_encoder_down_search_is_unavailable_naming_it_and_an_sdk_retry_succeeds_once_back(
    stack_without_encoder: tuple[Stack, int], wordllama: EmbeddingBackend, caplog: pytest.LogCaptureFixture
) -> None:
    stack, port = stack_without_encoder
    caplog.set_level(logging.WARNING, logger="featurelens.kit.peers")
    address = stack.server.address

    async with AsyncFeaturelensClient(address, max_retries=0) as once:
        with pytest.raises(UnavailableError) as refused:
            await once.search.search(CORPUS, "dark matter halos", top_k=3)
    assert f"the encoder service at 127.0.0.1:{port} is unavailable" in refused.value.details
    # Search still serves what needs no encoder, so its health stays SERVING.
    assert await health_of(address, "featurelens.v1.SearchService") == SERVING

    caplog.clear()
    encoder = GrpcServer(
        [EncoderServicer({"wordllama": lambda: wordllama}, MemoryEmbeddingCache(1 << 20))],
        host="127.0.0.1",
        port=port,
    )
    async with AsyncFeaturelensClient(address, max_retries=8, backoff=FAST_RETRIES) as retrying:
        call = asyncio.create_task(retrying.search.search(CORPUS, "dark matter halos", top_k=3))
        # The encoder comes back only once the SDK's first attempt has failed on it.
        deadline = time.monotonic() + 30
        while not any("is unavailable" in record.getMessage() for record in caplog.records):
            assert time.monotonic() < deadline
            assert not call.done()
            await asyncio.sleep(0.01)
        await encoder.start()
        try:
            await encoder.wait_ready(30)
            result = await asyncio.wait_for(call, 60)
        finally:
            await encoder.stop(0)
    assert len(result.hits) == 3


async def test_with_the_sae_down_sparse_search_is_unavailable_naming_it_after_the_sdk_retries(
    wordllama: EmbeddingBackend, models_dir: Path, edge_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    caplog.set_level(logging.WARNING, logger="featurelens.kit.peers")
    async with serve_stack(
        CountingBackend(wordllama), models_dir, edge_copy, sae_address=f"127.0.0.1:{port}", sae_timeout_s=5.0
    ) as stack:
        async with AsyncFeaturelensClient(
            stack.server.address, max_retries=2, backoff=FAST_RETRIES
        ) as client:
            with pytest.raises(UnavailableError) as refused:
                await client.search.search(CORPUS, "dark matter halos", mode="sparse", top_k=3)
            dense = await client.search.search(CORPUS, "dark matter halos", top_k=3)
    assert f"the sae service at 127.0.0.1:{port} is unavailable" in refused.value.details
    tried = [
        r
        for r in caplog.records
        if r.name == "featurelens.kit.peers" and f"127.0.0.1:{port} is unavailable" in r.getMessage()
    ]
    assert len(tried) == 3, "the SDK did not retry the failed search twice"
    assert len(dense.hits) == 3


async def test_with_labelling_down_a_phrase_is_unavailable_naming_it_and_searches_go_on_without_labels(
    wordllama: EmbeddingBackend, models_dir: Path, edge_copy: Path
) -> None:
    port = free_port()
    async with serve_stack(
        CountingBackend(wordllama), models_dir, edge_copy, labelling_address=f"127.0.0.1:{port}"
    ) as stack:
        async with AsyncFeaturelensClient(
            stack.server.address, max_retries=1, backoff=FAST_RETRIES
        ) as client:
            with pytest.raises(UnavailableError) as refused:
                await client.search.search(
                    CORPUS, "galaxies", interventions=[Intervention(phrase="dark matter halos", weight=2.0)]
                )
            explained = await client.search.search(CORPUS, "galaxies", top_k=2, explain=True)
    assert f"the labelling service at 127.0.0.1:{port}" in refused.value.details
    assert len(explained.hits) == 2


async def test_the_qdrant_server_adapter_at_a_dead_port_makes_labelling_unavailable_naming_it_and_not_serving(
    tmp_path: Path,
) -> None:
    dead = free_port()
    settings = LabellingSettings(
        storage="server",
        qdrant_url=f"http://127.0.0.1:{dead}",
        qdrant_prefer_grpc=False,
        qdrant_timeout_s=2.0,
    )
    server = GrpcServer([build_labelling(settings)], host="127.0.0.1", port=0)
    await server.start()
    await server.wait_ready(30)
    following = start_following(server, interval_s=0.05)
    try:
        await eventually_health(server.address, "featurelens.v1.LabellingService", NOT_SERVING)
        await eventually_health(server.address, "", NOT_SERVING)
        async with AsyncFeaturelensClient(server.address, max_retries=1, backoff=FAST_RETRIES) as client:
            with pytest.raises(UnavailableError) as refused:
                await client.labelling.get_label("sae-x", 1)
    finally:
        following.cancel()
        await server.stop(0)
    assert "Qdrant server" in refused.value.details


async def test_the_search_service_with_its_qdrant_server_down_at_start_stays_not_serving_and_says_why() -> (
    None
):
    dead = free_port()
    settings = SearchSettings(
        storage="server",
        qdrant_url=f"http://127.0.0.1:{dead}",
        qdrant_prefer_grpc=False,
        qdrant_timeout_s=2.0,
    )
    server = GrpcServer([build_search(settings)], host="127.0.0.1", port=0)
    await server.start()
    try:
        with pytest.raises(Exception, match="Qdrant server"):
            await server.wait_ready(30)
        assert await health_of(server.address, "featurelens.v1.SearchService") == NOT_SERVING
        async with aio.insecure_channel(server.address) as channel:
            with pytest.raises(aio.AioRpcError) as refused:
                await search_pb2_grpc.SearchServiceStub(channel).ListCorpora(
                    search_pb2.ListCorporaRequest(), timeout=5
                )
    finally:
        await server.stop(0)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_qdrant_server_adapter_at_a_dead_port_makes_the_family_service_not_serving() -> None:
    dead = free_port()
    settings = FamilySettings(
        storage="server",
        qdrant_url=f"http://127.0.0.1:{dead}",
        qdrant_prefer_grpc=False,
        qdrant_timeout_s=2.0,
    )
    server = GrpcServer([build_family(settings)], host="127.0.0.1", port=0)
    await server.start()
    await server.wait_ready(30)
    following = start_following(server, interval_s=0.05)
    try:
        await eventually_health(server.address, "featurelens.v1.FamilyService", NOT_SERVING)
        await eventually_health(server.address, "", NOT_SERVING)
    finally:
        following.cancel()
        await server.stop(0)
