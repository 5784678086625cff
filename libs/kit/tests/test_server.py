"""GrpcServer lifecycle on a real loopback server: health, reflection, graceful stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from typing import Any

import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from featurelens.kit import GrpcServer
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE = "featurelens.v1.EncoderService"


async def health_of(channel: aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return int(reply.status)


@pytest.mark.parametrize("service", ["", SERVICE])
async def test_health_is_not_serving_until_the_servicer_has_started(
    started_server: GrpcServer, channel: aio.Channel, fake: Any, service: str
) -> None:
    assert await health_of(channel, service) == NOT_SERVING

    fake.release_start.set()
    await started_server.wait_ready(timeout=10)

    assert await health_of(channel, service) == SERVING


async def test_health_watch_streams_the_change_to_serving(
    started_server: GrpcServer, channel: aio.Channel, fake: Any
) -> None:
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await watch.read()).status == NOT_SERVING

    fake.release_start.set()

    assert (await asyncio.wait_for(watch.read(), 10)).status == SERVING
    watch.cancel()


async def test_a_failing_start_is_reraised_by_wait_ready_and_health_stays_not_serving(fake: Any) -> None:
    async def failing_start() -> None:
        raise RuntimeError("weights file is missing")

    fake.start = failing_start
    server = GrpcServer([fake], host="127.0.0.1", port=0)
    await server.start()
    try:
        with pytest.raises(RuntimeError, match="weights file is missing"):
            await server.wait_ready(timeout=10)
        async with aio.insecure_channel(server.address) as own_channel:
            assert await health_of(own_channel, "") == NOT_SERVING
    finally:
        await server.stop(0)


async def test_reflection_lists_the_hosted_services(server: GrpcServer, channel: aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    replies = [reply async for reply in stub.ServerReflectionInfo(iter(requests))]

    names = {s.name for s in replies[0].list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    # grpcurl describes a service from its file descriptor, so that must resolve too.
    assert replies[1].file_descriptor_response.file_descriptor_proto


async def test_stop_turns_health_not_serving_and_lets_an_in_flight_call_finish(
    server: GrpcServer, channel: aio.Channel, fake: Any
) -> None:
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    assert (await watch.read()).status == SERVING
    slow_call = encoder_pb2_grpc.EncoderServiceStub(channel).Embed(encoder_pb2.EmbedRequest(texts=["slow"]))
    await fake.slow_call_entered.wait()

    stopping = asyncio.create_task(server.stop(grace=30))

    assert (await asyncio.wait_for(watch.read(), 10)).status == NOT_SERVING
    watch.cancel()
    fake.release_slow_call.set()
    reply = await slow_call
    assert reply.embeddings.count == 1
    await stopping
    assert fake.closed


async def test_binding_a_port_in_use_fails_instead_of_sharing_it(fake: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = GrpcServer([fake], host="127.0.0.1", port=port)
        with pytest.raises(OSError, match="could not bind"):
            await server.start()


async def test_serve_until_signalled_reports_ready_and_stops_gracefully_on_sigterm(fake: Any) -> None:
    server = GrpcServer([fake], host="127.0.0.1", port=0)
    ready = asyncio.Event()
    fake.release_start.set()

    serving = asyncio.create_task(server.serve_until_signalled(on_ready=ready.set))
    await asyncio.wait_for(ready.wait(), 10)
    async with aio.insecure_channel(server.address) as channel:
        assert await health_of(channel, "") == SERVING
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 30)

    assert fake.closed


async def test_serve_until_signalled_raises_when_a_servicer_fails_to_start(fake: Any) -> None:
    async def failing_start() -> None:
        raise RuntimeError("no model named 'nope'")

    fake.start = failing_start
    server = GrpcServer([fake], host="127.0.0.1", port=0)

    with pytest.raises(RuntimeError, match="no model named 'nope'"):
        await asyncio.wait_for(server.serve_until_signalled(), 30)
    assert fake.closed


def test_a_server_built_before_its_event_loop_runs_serves_in_that_loop(fake: Any) -> None:
    # What every service's __main__ does: GrpcServer(...) first, then asyncio.run(...).
    server = GrpcServer([fake], host="127.0.0.1", port=0)

    async def serve_and_check() -> int:
        await server.start()
        fake.release_start.set()
        await server.wait_ready(timeout=10)
        try:
            async with aio.insecure_channel(server.address) as channel:
                return await health_of(channel, "")
        finally:
            await server.stop(0)

    assert asyncio.run(serve_and_check()) == SERVING
