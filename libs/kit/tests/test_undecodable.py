"""Bytes that are not a valid protobuf message: INVALID_ARGUMENT with a sentence, for every kind of
call, before the service's code runs (grpcio alone answers UNKNOWN or INTERNAL)."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
import pytest
from grpc import aio

from featurelens.kit import GrpcServer
from featurelens.v1 import encoder_pb2

KINDS = "featurelens.test.Kinds"
#: Not a message of any type: field 31 with wire type 7, which does not exist.
GARBAGE = b"\xff\xff\xff"
#: A string field (texts, field 1) holding bytes that are not UTF-8.
BAD_UTF8 = b"\x0a\x02\xff\xfe"


def hello() -> bytes:
    return encoder_pb2.EmbedRequest(texts=["hello"]).SerializeToString()


def reply() -> encoder_pb2.EmbedResponse:
    return encoder_pb2.EmbedResponse(model_id="kinds")


class KindsServicer:
    """One RPC of each of the four kinds, all taking EmbedRequest; each counts the requests it saw."""

    service_names: Sequence[str] = (KINDS,)

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def add_to_server(self, server: aio.Server) -> None:
        def handler(kind: Any, behaviour: Any) -> grpc.RpcMethodHandler:
            return kind(  # type: ignore[no-any-return]
                behaviour,
                request_deserializer=encoder_pb2.EmbedRequest.FromString,
                response_serializer=encoder_pb2.EmbedResponse.SerializeToString,
            )

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    KINDS,
                    {
                        "UnaryStream": handler(grpc.unary_stream_rpc_method_handler, self.unary_stream),
                        "StreamUnary": handler(grpc.stream_unary_rpc_method_handler, self.stream_unary),
                        "StreamStream": handler(grpc.stream_stream_rpc_method_handler, self.stream_stream),
                    },
                ),
            )
        )

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def unary_stream(self, request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        self.seen.append(request)
        yield reply()

    async def stream_unary(self, requests: AsyncIterator[Any], context: aio.ServicerContext) -> Any:
        async for request in requests:
            self.seen.append(request)
        return reply()

    async def stream_stream(
        self, requests: AsyncIterator[Any], context: aio.ServicerContext
    ) -> AsyncIterator[Any]:
        async for request in requests:
            self.seen.append(request)
            yield reply()


@pytest.fixture
def kinds() -> KindsServicer:
    return KindsServicer()


@pytest.fixture
async def served(fake: Any, kinds: KindsServicer) -> AsyncIterator[GrpcServer]:
    server = GrpcServer([fake, kinds], host="127.0.0.1", port=0)
    await server.start()
    fake.release_start.set()
    await server.wait_ready(timeout=10)
    yield server
    await server.stop(0)


@pytest.fixture
async def raw(served: GrpcServer) -> AsyncIterator[aio.Channel]:
    """A channel whose calls send and receive bytes, as a hostile client would."""
    async with aio.insecure_channel(served.address) as channel:
        yield channel


@pytest.fixture
def request_log() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    request_logger = logging.getLogger("featurelens.kit.requests")
    request_logger.addHandler(handler)
    previous_level = request_logger.level
    request_logger.setLevel(logging.INFO)
    yield buffer
    request_logger.removeHandler(handler)
    request_logger.setLevel(previous_level)


async def failure(call: Any) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value


async def read_all(call: Any) -> list[bytes]:
    return [message async for message in call]


async def stream_of(*messages: bytes) -> AsyncIterator[bytes]:
    for message in messages:
        yield message


@pytest.mark.parametrize(
    ("method", "message_type", "payload"),
    [
        ("/featurelens.v1.EncoderService/Embed", "featurelens.v1.EmbedRequest", GARBAGE),
        ("/featurelens.v1.EncoderService/Embed", "featurelens.v1.EmbedRequest", BAD_UTF8),
        ("/featurelens.v1.EncoderService/ListModels", "featurelens.v1.ListModelsRequest", GARBAGE),
        ("/grpc.health.v1.Health/Check", "grpc.health.v1.HealthCheckRequest", GARBAGE),
        ("/grpc.health.v1.Health/Check", "grpc.health.v1.HealthCheckRequest", BAD_UTF8),
    ],
    ids=["embed-garbage", "embed-bad-utf8", "list-models-garbage", "health-garbage", "health-bad-utf8"],
)
async def test_a_unary_call_with_bytes_that_are_no_message_is_invalid_argument(
    raw: aio.Channel, method: str, message_type: str, payload: bytes
) -> None:
    error = await failure(raw.unary_unary(method)(payload, timeout=10))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(error.details()).startswith(f"the request is not a valid {message_type} message: ")


async def test_a_response_stream_with_bytes_that_are_no_message_is_invalid_argument(
    raw: aio.Channel, kinds: KindsServicer
) -> None:
    error = await failure(read_all(raw.unary_stream(f"/{KINDS}/UnaryStream")(GARBAGE, timeout=10)))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid featurelens.v1.EmbedRequest message: Wire format was corrupt" in str(error.details())
    assert kinds.seen == []


async def test_the_health_watch_with_bytes_that_are_no_message_is_invalid_argument(raw: aio.Channel) -> None:
    # Watch writes with context.write() instead of yielding: the other kind of streaming handler.
    call = raw.unary_stream("/grpc.health.v1.Health/Watch")(GARBAGE, timeout=10)
    error = await failure(read_all(call))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "grpc.health.v1.HealthCheckRequest" in str(error.details())


async def test_a_request_stream_with_a_message_that_is_no_message_is_invalid_argument(
    raw: aio.Channel, kinds: KindsServicer
) -> None:
    call = raw.stream_unary(f"/{KINDS}/StreamUnary")(stream_of(hello(), GARBAGE, hello()), timeout=10)
    error = await failure(call)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid featurelens.v1.EmbedRequest message" in str(error.details())
    assert [request.texts for request in kinds.seen] == [["hello"]]


@pytest.mark.parametrize("method", [f"/{KINDS}/StreamStream", "/featurelens.v1.EncoderService/EmbedStream"])
async def test_a_bidirectional_stream_answers_the_good_messages_then_invalid_argument(
    raw: aio.Channel, method: str
) -> None:
    good = encoder_pb2.EmbedStreamRequest(texts=["hello"]).SerializeToString()
    call = raw.stream_stream(method)(stream_of(good, GARBAGE), timeout=10)
    answers: list[bytes] = []

    async def collect() -> None:
        async for answer in call:
            answers.append(answer)

    error = await failure(collect())

    assert len(answers) == 1
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not a valid featurelens.v1." in str(error.details())


async def test_the_server_logs_the_refusal_and_keeps_serving(
    raw: aio.Channel, request_log: io.StringIO
) -> None:
    await failure(raw.unary_unary("/featurelens.v1.EncoderService/Embed")(GARBAGE, timeout=10))

    answer = await raw.unary_unary("/featurelens.v1.EncoderService/Embed")(hello(), timeout=10)

    assert encoder_pb2.EmbedResponse.FromString(answer).embeddings.count == 1
    lines = request_log.getvalue().splitlines()
    assert any("Embed INVALID_ARGUMENT" in line and "not a valid" in line for line in lines)
    assert not any("UNKNOWN" in line or "INTERNAL" in line for line in lines)
