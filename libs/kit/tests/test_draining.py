"""Shutdown drains: a call in flight finishes, with the calls it makes back to its own server (as
search calls encoder and sae in ``featurelens up``), while new calls are refused."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from featurelens.kit import GrpcServer, Peer
from featurelens.kit.inflight import InFlightCalls
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def embed(text: str) -> encoder_pb2.EmbedRequest:
    return encoder_pb2.EmbedRequest(texts=[text])


async def health_of(channel: aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


async def until_not_serving(channel: aio.Channel) -> None:
    for _ in range(500):
        if await health_of(channel) == NOT_SERVING:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("health never turned NOT_SERVING")


@pytest.fixture
async def relaying(server: GrpcServer, fake: Any) -> AsyncIterator[Any]:
    """The fake encoder able to call its own server, as an embedded search calls the encoder."""
    fake.peer = Peer("encoder", server.address, timeout_s=10)
    yield fake
    await fake.peer.close()


async def test_stop_lets_a_call_in_flight_finish_its_calls_back_to_the_same_server(
    server: GrpcServer, channel: aio.Channel, relaying: Any
) -> None:
    stub = encoder_pb2_grpc.EncoderServiceStub(channel)
    in_flight = stub.Embed(embed("relay"), metadata=(("x-request-id", "req-search"),))
    await relaying.slow_call_entered.wait()

    stopping = asyncio.create_task(server.stop(grace=30))
    await until_not_serving(channel)
    refused = stub.Embed(embed("hello"))
    with pytest.raises(aio.AioRpcError) as caught:
        await refused
    relaying.release_slow_call.set()
    reply = await in_flight
    await asyncio.wait_for(stopping, 30)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in str(caught.value.details())
    assert reply.embeddings.count == 1
    # The sub-call got through, under the request id of the call that made it.
    assert [r.embeddings.count for r in relaying.relayed] == [1]
    assert relaying.seen_request_ids == ["req-search", "req-search"]
    assert relaying.closed


async def test_sigterm_drains_a_relaying_call_before_the_server_stops(fake: Any) -> None:
    server = GrpcServer([fake], host="127.0.0.1", port=0, grace_period_s=30)
    fake.release_start.set()
    ready = asyncio.Event()
    serving = asyncio.create_task(server.serve_until_signalled(on_ready=ready.set))
    await asyncio.wait_for(ready.wait(), 10)
    fake.peer = Peer("encoder", server.address, timeout_s=10)
    try:
        async with aio.insecure_channel(server.address) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            in_flight = stub.Embed(embed("relay"))
            await fake.slow_call_entered.wait()

            os.kill(os.getpid(), signal.SIGTERM)
            await until_not_serving(channel)
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.ListModels(encoder_pb2.ListModelsRequest())
            fake.release_slow_call.set()
            reply = await in_flight
        await asyncio.wait_for(serving, 30)
    finally:
        await fake.peer.close()

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert reply.embeddings.count == 1
    assert len(fake.relayed) == 1


async def test_a_call_still_running_when_the_grace_period_ends_is_cancelled(
    server: GrpcServer, channel: aio.Channel, fake: Any
) -> None:
    in_flight = encoder_pb2_grpc.EncoderServiceStub(channel).Embed(embed("slow"))
    await fake.slow_call_entered.wait()

    await asyncio.wait_for(server.stop(grace=0.2), 30)

    with pytest.raises(aio.AioRpcError) as caught:
        await in_flight
    assert caught.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert fake.closed


async def test_stop_returns_at_once_when_no_call_is_in_flight(server: GrpcServer, fake: Any) -> None:
    # A long grace period costs nothing when there is nothing to wait for.
    await asyncio.wait_for(server.stop(grace=300), 10)

    assert fake.closed


def test_draining_admits_only_the_request_ids_in_flight() -> None:
    calls = InFlightCalls()
    assert calls.admit("search-1")
    calls.drain()

    assert calls.admit("search-1")  # search's call to the encoder
    assert not calls.admit("someone-new")
    calls.release("search-1")
    calls.release("search-1")
    assert len(calls) == 0
    assert not calls.admit("search-1")  # finished: its id no longer opens the door
