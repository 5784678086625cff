"""Peer calls: the request id passed on, deadlines, and failures as errors that name the peer."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from featurelens.kit import (
    DeadlineExceededError,
    GrpcServer,
    InvalidArgumentError,
    NotFoundError,
    Peer,
    ServiceError,
    UnavailableError,
)
from featurelens.kit.context import reset_request_id, set_request_id
from featurelens.kit.peers import serve_in_process, stop_serving_in_process
from featurelens.store import InvalidQueryError
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

ENCODER_SERVICE = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name


def closed_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
async def encoder(server: GrpcServer) -> AsyncIterator[Peer]:
    peer = Peer("encoder", server.address, timeout_s=5.0)
    yield peer
    await peer.close()


async def embed(peer: Peer, *texts: str) -> encoder_pb2.EmbedResponse:
    stub = encoder_pb2_grpc.EncoderServiceStub(peer.channel)
    return await peer.call(stub.Embed(encoder_pb2.EmbedRequest(texts=list(texts)), timeout=peer.timeout_s))


async def test_a_peer_call_carries_the_id_of_the_request_being_served(encoder: Peer, fake: object) -> None:
    token = set_request_id("req-search-1")
    try:
        await embed(encoder, "hello")
    finally:
        reset_request_id(token)

    assert fake.seen_request_ids == ["req-search-1"]  # type: ignore[attr-defined]


async def test_a_streaming_peer_call_carries_it_too(encoder: Peer, fake: object) -> None:
    async def batches() -> AsyncIterator[encoder_pb2.EmbedStreamRequest]:
        yield encoder_pb2.EmbedStreamRequest(batch_id=1, texts=["one"])
        yield encoder_pb2.EmbedStreamRequest(batch_id=2, texts=["two"])

    token = set_request_id("req-stream-2")
    try:
        stub = encoder_pb2_grpc.EncoderServiceStub(encoder.channel)
        replies = [reply.batch_id async for reply in stub.EmbedStream(batches(), timeout=5.0)]
    finally:
        reset_request_id(token)

    assert replies == [1, 2]
    assert fake.seen_request_ids == ["req-stream-2", "req-stream-2"]  # type: ignore[attr-defined]


async def test_an_id_the_caller_set_itself_is_kept(encoder: Peer, fake: object) -> None:
    token = set_request_id("req-outer")
    try:
        stub = encoder_pb2_grpc.EncoderServiceStub(encoder.channel)
        await stub.Embed(encoder_pb2.EmbedRequest(texts=["hi"]), metadata=(("x-request-id", "req-own"),))
    finally:
        reset_request_id(token)

    assert fake.seen_request_ids == ["req-own"]  # type: ignore[attr-defined]


async def test_outside_a_request_the_peer_gets_no_id_and_makes_its_own(encoder: Peer, fake: object) -> None:
    await embed(encoder, "hello")

    [seen] = fake.seen_request_ids  # type: ignore[attr-defined]
    assert re.fullmatch(r"[0-9a-f]{16}", str(seen))


async def test_what_a_peer_refuses_keeps_its_code_and_sentence_with_the_peers_name(encoder: Peer) -> None:
    with pytest.raises(InvalidArgumentError) as invalid:
        await embed(encoder, "invalid")
    with pytest.raises(NotFoundError) as missing:
        await embed(encoder, "missing")

    assert str(invalid.value) == (
        "the encoder service refused the call: texts[0] is empty; every text needs at least one character"
    )
    assert str(missing.value).startswith("the encoder service refused the call: model 'nope'")


async def test_a_peer_that_cannot_be_reached_is_unavailable_naming_it_and_its_address() -> None:
    address = closed_address()
    peer = Peer("sae", address, timeout_s=5.0)
    try:
        with pytest.raises(UnavailableError, match=f"the sae service at {address} is unavailable"):
            await embed(peer, "hello")
    finally:
        await peer.close()


async def test_a_peer_that_does_not_answer_in_time_is_a_deadline_exceeded(server: GrpcServer) -> None:
    peer = Peer("encoder", server.address, timeout_s=0.2)
    try:
        with pytest.raises(DeadlineExceededError) as caught:
            await embed(peer, "slow")
    finally:
        await peer.close()

    assert str(caught.value) == f"the encoder service at {server.address} did not answer within 0.2 s"


async def test_a_peer_that_fails_internally_is_unavailable_without_its_internals(encoder: Peer) -> None:
    with pytest.raises(UnavailableError) as caught:
        await embed(encoder, "boom")

    assert str(caught.value).startswith(f"the encoder service at {encoder.address} failed (INTERNAL: ")
    assert "hunter2" not in str(caught.value)


async def test_a_new_address_takes_effect_after_close(encoder: Peer, server: GrpcServer) -> None:
    await embed(encoder, "hello")
    encoder.address = closed_address()
    await encoder.close()

    with pytest.raises(UnavailableError, match=encoder.address):
        await embed(encoder, "hello")


# -- in process (the embedded host's route): the same answers and errors as over gRPC -------------


async def embed_in_process(peer: Peer, *texts: str) -> encoder_pb2.EmbedResponse:
    servicer = peer.in_process(ENCODER_SERVICE)
    assert servicer is not None, "nothing is served in process at the peer's address"
    request = encoder_pb2.EmbedRequest(texts=list(texts))
    # The fake reads no context.
    return await peer.call_in_process(f"/{ENCODER_SERVICE}/Embed", servicer.Embed(request, None))


@pytest.fixture
def in_process(server: GrpcServer, fake: object) -> Iterator[None]:
    serve_in_process(server.address, [fake])
    yield
    stop_serving_in_process(server.address)


@pytest.mark.usefixtures("in_process")
@pytest.mark.parametrize("text", ["invalid", "missing", "library", "boom"])
async def test_a_call_in_process_fails_as_the_same_call_over_grpc(
    encoder: Peer, fake: object, text: str
) -> None:
    fake.library_error = InvalidQueryError  # type: ignore[attr-defined]  # a core error in the table
    with pytest.raises(ServiceError) as over_grpc:
        await embed(encoder, text)
    with pytest.raises(ServiceError) as in_process:
        await embed_in_process(encoder, text)

    assert type(in_process.value) is type(over_grpc.value)
    if text == "boom":  # INTERNAL: the request id differs, the sentence does not; no internals
        pattern = r"\(INTERNAL: internal error; quote request id \S+ to the operator\)"
        assert re.sub(pattern, "", str(in_process.value)) == re.sub(pattern, "", str(over_grpc.value))
        assert "hunter2" not in str(in_process.value)
    else:
        assert str(in_process.value) == str(over_grpc.value)


@pytest.mark.usefixtures("in_process")
async def test_a_call_in_process_answers_as_over_grpc_and_keeps_the_request_id(
    encoder: Peer, fake: object
) -> None:
    token = set_request_id("req-local-1")
    try:
        over_grpc = await embed(encoder, "hello")
        in_process = await embed_in_process(encoder, "hello")
    finally:
        reset_request_id(token)

    assert in_process == over_grpc
    assert fake.seen_request_ids == ["req-local-1", "req-local-1"]  # type: ignore[attr-defined]


@pytest.mark.usefixtures("in_process")
async def test_a_call_in_process_that_does_not_answer_in_time_is_the_same_deadline_exceeded(
    server: GrpcServer,
) -> None:
    peer = Peer("encoder", server.address, timeout_s=0.2)
    try:
        with pytest.raises(DeadlineExceededError) as caught:
            await embed_in_process(peer, "slow")
    finally:
        await peer.close()

    assert str(caught.value) == f"the encoder service at {server.address} did not answer within 0.2 s"


async def test_nothing_is_served_in_process_at_another_address(encoder: Peer, fake: object) -> None:
    elsewhere = closed_address()
    serve_in_process(elsewhere, [fake])
    try:
        assert encoder.in_process(ENCODER_SERVICE) is None
    finally:
        stop_serving_in_process(elsewhere)
