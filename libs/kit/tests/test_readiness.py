"""Health follows what a running service can serve: NOT_SERVING while its readiness probe says it
cannot (its store gone), SERVING again when it can, and never SERVING again once draining."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from featurelens.kit import GrpcServer
from featurelens.kit.readiness import follow_readiness, start_following
from featurelens.v1 import encoder_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE = "featurelens.v1.EncoderService"


class StoreBackedService(encoder_pb2_grpc.EncoderServiceServicer):
    """A service whose store a test takes away (``reason``) and gives back (None)."""

    service_names: Sequence[str] = (SERVICE,)

    def __init__(self) -> None:
        self.reason: str | None = None
        self.probes = 0

    def add_to_server(self, server: aio.Server) -> None:
        encoder_pb2_grpc.add_EncoderServiceServicer_to_server(self, server)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def unready_reason(self) -> str | None:
        self.probes += 1
        if self.reason == "raise":
            raise ConnectionError("the store's socket closed")
        return self.reason


class PlainService(StoreBackedService):
    """A service without a probe (its health is left as the start made it)."""

    unready_reason = None  # type: ignore[assignment]


@pytest.fixture
async def served() -> AsyncIterator[tuple[GrpcServer, StoreBackedService, aio.Channel]]:
    service = StoreBackedService()
    server = GrpcServer([service], host="127.0.0.1", port=0, grace_period_s=1)
    port = await server.start()
    await server.wait_ready(10)
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    task = start_following(server, interval_s=0.02)
    yield server, service, channel
    task.cancel()
    await channel.close()
    await server.stop(0)


async def health_of(channel: aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def eventually_health(channel: aio.Channel, service: str, status: int) -> None:
    deadline = time.monotonic() + 30
    while await health_of(channel, service) != status:
        assert time.monotonic() < deadline, f"health of {service!r} never became {status}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("reason", ["the Qdrant server is unavailable", "raise"])
async def test_health_turns_not_serving_while_the_service_cannot_serve_and_serving_when_it_can_again(
    served: tuple[GrpcServer, StoreBackedService, aio.Channel], reason: str
) -> None:
    _, service, channel = served
    await eventually_health(channel, SERVICE, SERVING)

    service.reason = reason
    await eventually_health(channel, SERVICE, NOT_SERVING)
    await eventually_health(channel, "", NOT_SERVING)

    service.reason = None
    await eventually_health(channel, SERVICE, SERVING)
    await eventually_health(channel, "", SERVING)


async def test_a_draining_server_stays_not_serving_whatever_the_probe_says(
    served: tuple[GrpcServer, StoreBackedService, aio.Channel],
) -> None:
    server, service, channel = served
    server.calls.drain()
    await server.health.enter_graceful_shutdown()
    probes = service.probes
    deadline = time.monotonic() + 30
    while service.probes < probes + 3:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)

    assert await health_of(channel, SERVICE) == NOT_SERVING
    assert await health_of(channel, "") == NOT_SERVING


async def test_following_a_server_without_probes_returns_at_once() -> None:
    server = GrpcServer([PlainService()], host="127.0.0.1", port=0)

    await asyncio.wait_for(follow_readiness(server, interval_s=0.01), 5)
