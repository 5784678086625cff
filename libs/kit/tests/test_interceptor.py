"""The request interceptor: request ids, and domain errors mapped to status codes by the one table."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from grpc import aio

from featurelens.kit import register_error, status_for
from featurelens.kit.interceptor import RequestInterceptor
from featurelens.kit.logs import JsonFormatter, RedactingFilter
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc


class LibraryError(Exception):
    """An error type of a core library, registered with the kit by the service that uses it."""


class SpecificLibraryError(LibraryError):
    pass


def embed(*texts: str) -> encoder_pb2.EmbedRequest:
    return encoder_pb2.EmbedRequest(texts=list(texts))


async def failure_of(call: Any) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_the_request_id_sent_in_metadata_comes_back_in_initial_metadata(
    stub: encoder_pb2_grpc.EncoderServiceStub, fake: Any
) -> None:
    call = stub.Embed(embed("hello"), metadata=(("x-request-id", "req-42"),))

    assert dict(await call.initial_metadata())["x-request-id"] == "req-42"
    await call
    assert fake.seen_request_ids == ["req-42"]


async def test_a_request_without_an_id_gets_a_generated_one(
    stub: encoder_pb2_grpc.EncoderServiceStub,
) -> None:
    first = stub.Embed(embed("hello"))
    second = stub.Embed(embed("hello"))

    first_id = dict(await first.initial_metadata())["x-request-id"]
    second_id = dict(await second.initial_metadata())["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", str(first_id))
    assert first_id != second_id


async def test_an_invalid_argument_error_becomes_invalid_argument_with_its_sentence(
    stub: encoder_pb2_grpc.EncoderServiceStub,
) -> None:
    error = await failure_of(stub.Embed(embed("invalid")))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "texts[0] is empty; every text needs at least one character"


async def test_a_not_found_error_becomes_not_found(stub: encoder_pb2_grpc.EncoderServiceStub) -> None:
    error = await failure_of(stub.Embed(embed("missing")))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "'nope' is not served" in str(error.details())


async def test_a_registered_library_error_maps_to_its_code(
    stub: encoder_pb2_grpc.EncoderServiceStub, fake: Any
) -> None:
    register_error(LibraryError, grpc.StatusCode.FAILED_PRECONDITION)
    fake.library_error = SpecificLibraryError

    error = await failure_of(stub.Embed(embed("library")))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "the library refused"


def test_a_subclass_of_a_registered_error_takes_its_nearest_registered_code() -> None:
    register_error(LibraryError, grpc.StatusCode.FAILED_PRECONDITION)

    assert status_for(SpecificLibraryError()) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(KeyError("x")) is None


async def test_an_unexpected_exception_becomes_internal_with_the_request_id_and_no_traceback(
    stub: encoder_pb2_grpc.EncoderServiceStub,
) -> None:
    error = await failure_of(stub.Embed(embed("boom"), metadata=(("x-request-id", "req-boom"),)))

    assert error.code() == grpc.StatusCode.INTERNAL
    details = str(error.details())
    assert "req-boom" in details
    for leak in ("Traceback", "RuntimeError", "hunter2", "secret internal state", ".py"):
        assert leak not in details


async def test_a_status_the_handler_aborts_with_passes_through_unchanged(
    stub: encoder_pb2_grpc.EncoderServiceStub,
) -> None:
    error = await failure_of(stub.Embed(embed("abort")))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "handler aborted on its own"


async def stream_of(*batches: list[str]) -> AsyncIterator[encoder_pb2.EmbedStreamRequest]:
    for batch_id, texts in enumerate(batches):
        yield encoder_pb2.EmbedStreamRequest(texts=texts, batch_id=batch_id)


async def test_a_streaming_handler_gets_the_same_error_mapping_after_earlier_responses(
    stub: encoder_pb2_grpc.EncoderServiceStub,
) -> None:
    call = stub.EmbedStream(stream_of(["fine"], ["invalid"]), metadata=(("x-request-id", "req-stream"),))
    received: list[int] = []

    async def read_all() -> None:
        async for reply in call:
            received.append(reply.batch_id)

    with pytest.raises(aio.AioRpcError) as caught:
        await read_all()

    assert received == [0]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "texts[0] is empty" in str(caught.value.details())
    assert dict(await call.initial_metadata())["x-request-id"] == "req-stream"


async def test_an_unexpected_exception_in_a_stream_becomes_internal_with_the_request_id(
    stub: encoder_pb2_grpc.EncoderServiceStub,
) -> None:
    call = stub.EmbedStream(stream_of(["boom"]), metadata=(("x-request-id", "req-stream-boom"),))
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in call:
            pass

    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "req-stream-boom" in str(caught.value.details())
    assert "hunter2" not in str(caught.value.details())


@pytest.fixture
def request_log() -> Iterator[io.StringIO]:
    """The request logger's lines as the services write them: JSON, redacted, with the request id."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    request_logger = logging.getLogger("featurelens.kit.requests")
    request_logger.addHandler(handler)
    previous_level = request_logger.level
    request_logger.setLevel(logging.INFO)
    yield buffer
    request_logger.removeHandler(handler)
    request_logger.setLevel(previous_level)


async def test_each_call_is_logged_once_with_its_request_id_and_outcome(
    stub: encoder_pb2_grpc.EncoderServiceStub, request_log: io.StringIO
) -> None:
    await stub.Embed(embed("hello"), metadata=(("x-request-id", "req-ok"),))
    await failure_of(stub.Embed(embed("invalid"), metadata=(("x-request-id", "req-bad"),)))
    await failure_of(stub.Embed(embed("boom"), metadata=(("x-request-id", "req-boom"),)))

    entries = [json.loads(line) for line in request_log.getvalue().splitlines()]
    by_id = {entry["request_id"]: entry for entry in entries}
    assert len(entries) == 3
    assert "/featurelens.v1.EncoderService/Embed OK" in by_id["req-ok"]["message"]
    assert "INVALID_ARGUMENT" in by_id["req-bad"]["message"]
    assert by_id["req-bad"]["level"] == "WARNING"
    # The operator gets the traceback the caller did not, with secrets still redacted.
    assert by_id["req-boom"]["level"] == "ERROR"
    assert "RuntimeError" in by_id["req-boom"]["exception"]
    assert "hunter2" not in by_id["req-boom"]["exception"]


class _BareContext:
    """Just enough of a servicer context for a handler wrapper run outside a server."""

    async def send_initial_metadata(self, metadata: object) -> None:
        pass


async def test_a_streaming_handler_finalised_from_another_context_closes_cleanly() -> None:
    # The event loop finalises an abandoned async generator in a task with its own context,
    # where the request id's context-variable token cannot be reset.
    async def behaviour(request: object, context: object) -> AsyncIterator[int]:
        yield 1
        yield 2

    wrapped = RequestInterceptor()._wrap_stream(behaviour, "/test.Service/Stream", "req-final")
    generator = wrapped(None, _BareContext())
    assert await generator.__anext__() == 1

    await asyncio.create_task(generator.aclose(), context=contextvars.Context())


async def test_a_client_leaving_a_stream_early_is_logged_as_cancelled_without_errors(
    stub: encoder_pb2_grpc.EncoderServiceStub, request_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    async def endless() -> AsyncIterator[encoder_pb2.EmbedStreamRequest]:
        batch_id = 0
        while True:
            yield encoder_pb2.EmbedStreamRequest(texts=["again"], batch_id=batch_id)
            batch_id += 1

    call = stub.EmbedStream(endless(), metadata=(("x-request-id", "req-leaves"),))
    assert (await call.read()).batch_id == 0
    call.cancel()
    # A unary call after it proves the server is healthy and lets the stream's end be logged first.
    await stub.ListModels(encoder_pb2.ListModelsRequest())
    for _ in range(100):
        if "req-leaves" in request_log.getvalue():
            break
        await asyncio.sleep(0.01)

    entries = [json.loads(line) for line in request_log.getvalue().splitlines()]
    assert [e["message"].split()[1] for e in entries if e.get("request_id") == "req-leaves"] == ["CANCELLED"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
