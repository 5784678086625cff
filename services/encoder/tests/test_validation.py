"""Bad requests get the right status code and a sentence naming what was wrong."""

from __future__ import annotations

import grpc
import pytest
from encoder_testing import MAX_TEXT_BYTES, MAX_TEXTS, CountingBackend, failure_of

from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

CASES = [
    pytest.param(
        [], grpc.StatusCode.INVALID_ARGUMENT, "texts is empty; send at least one text", id="no texts"
    ),
    pytest.param(["fine", "ok", ""], grpc.StatusCode.INVALID_ARGUMENT, "text 2 is empty", id="empty text"),
    pytest.param(
        ["fine", " \t\n "], grpc.StatusCode.INVALID_ARGUMENT, "text 1 is empty", id="whitespace-only text"
    ),
    pytest.param(
        ["text"] * (MAX_TEXTS + 1),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"{MAX_TEXTS + 1} texts in one call; the limit is {MAX_TEXTS}",
        id="too many texts",
    ),
    pytest.param(
        # 600 characters but 1,200 UTF-8 bytes: the limit is on bytes.
        ["fine", "é" * 600],
        grpc.StatusCode.INVALID_ARGUMENT,
        f"text 1 is 1,200 bytes; the limit is {MAX_TEXT_BYTES:,}",
        id="text over the byte limit",
    ),
]


@pytest.mark.parametrize(("texts", "code", "message"), CASES)
async def test_an_invalid_embed_request_is_refused_with_a_sentence_naming_the_problem(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub,
    counting: CountingBackend,
    texts: list[str],
    code: grpc.StatusCode,
    message: str,
) -> None:
    calls_before = counting.calls

    error = await failure_of(stub.Embed(encoder_pb2.EmbedRequest(texts=texts)))

    assert error.code() == code
    assert message in (error.details() or "")
    assert counting.calls == calls_before


@pytest.mark.parametrize(("texts", "code", "message"), CASES)
async def test_an_invalid_stream_batch_is_refused_naming_the_batch(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub, texts: list[str], code: grpc.StatusCode, message: str
) -> None:
    call = stub.EmbedStream(iter([encoder_pb2.EmbedStreamRequest(batch_id=41, texts=texts)]))

    error = await failure_of(call.read())

    assert error.code() == code
    assert (error.details() or "").startswith("batch 41: ")
    assert message in (error.details() or "")


async def test_a_text_exactly_at_the_byte_limit_is_accepted(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub,
) -> None:
    reply = await stub.Embed(encoder_pb2.EmbedRequest(texts=["é" * (MAX_TEXT_BYTES // 2)]))

    assert reply.embeddings.count == 1


async def test_an_unknown_model_is_not_found_and_the_error_lists_the_available_ones(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub,
) -> None:
    error = await failure_of(stub.Embed(encoder_pb2.EmbedRequest(texts=["text"], model="nope")))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "unknown model 'nope'; available: wordllama-l2-supercat-256"


async def test_a_huge_unknown_model_name_is_echoed_only_in_part(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub,
) -> None:
    # Issue 8, item 5: an 8 KB name came back as RESOURCE_EXHAUSTED instead of NOT_FOUND.
    error = await failure_of(stub.Embed(encoder_pb2.EmbedRequest(texts=["text"], model="m" * 10_000)))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert (error.details() or "").startswith(
        f"unknown model {'m' * 200!r}... (10,000 characters); available:"
    )
