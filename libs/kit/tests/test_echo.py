"""What a service repeats back is bounded: a client's value in a sentence, every status detail, every
log line. A megabyte-long name gets the deliberate status with a short sentence."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import grpc
import pytest
from grpc import aio

from featurelens.kit import bounded, shown
from featurelens.kit.echo import MAX_DETAIL_CHARS
from featurelens.kit.logs import MAX_MESSAGE_CHARS, JsonFormatter, RedactingFilter, TextFormatter
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

FIVE_MB = 5_000_000


def test_shown_quotes_a_short_value_whole() -> None:
    assert shown("corpus.jsonl") == "'corpus.jsonl'"


def test_shown_cuts_a_long_value_and_gives_its_length() -> None:
    assert shown("z" * FIVE_MB) == f"{'z' * 200!r}... (5,000,000 characters)"
    assert shown("z" * 50, limit=10) == "'zzzzzzzzzz'... (50 characters)"
    assert shown(b"\xff" * 300).endswith("... (300 bytes)")


def test_bounded_leaves_short_text_alone_and_marks_a_cut_with_the_length() -> None:
    assert bounded("model 'x' is not served") == "model 'x' is not served"
    cut = bounded("y" * 5000, 100)
    assert cut == "y" * 100 + "... (cut from 5,000 characters)"


def test_bounded_also_bounds_the_utf8_bytes_without_splitting_a_character() -> None:
    cut = bounded("é" * 5000, 1000, max_bytes=999)

    assert cut.startswith("é" * 499 + "...")
    assert len(cut.split("...")[0].encode("utf-8")) <= 999


@pytest.fixture
def request_log() -> Iterator[io.StringIO]:
    """The request logger's lines as the services write them: JSON, redacted, bounded."""
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


@pytest.mark.parametrize("character", ["z", "é", "\U0001f600"], ids=["ascii", "latin", "emoji"])
async def test_an_unknown_model_of_five_megabytes_is_not_found_with_a_short_sentence(
    stub: encoder_pb2_grpc.EncoderServiceStub, request_log: io.StringIO, character: str
) -> None:
    # The fake repeats the whole name in its sentence, as the services did before they used shown().
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Embed(encoder_pb2.EmbedRequest(texts=["hello"], model=character * FIVE_MB))

    details = str(caught.value.details())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert details.startswith("model '" + character * 10)
    assert details.endswith(" characters)")
    assert len(details) <= MAX_DETAIL_CHARS + 50
    [entry] = [json.loads(line) for line in request_log.getvalue().splitlines()]
    assert "Embed NOT_FOUND" in entry["message"]
    assert len(entry["message"]) <= MAX_DETAIL_CHARS + 200


async def test_the_server_still_answers_after_a_refused_huge_name(
    stub: encoder_pb2_grpc.EncoderServiceStub,
) -> None:
    with pytest.raises(aio.AioRpcError):
        await stub.Embed(encoder_pb2.EmbedRequest(texts=["hello"], model="z" * FIVE_MB))

    assert (await stub.Embed(encoder_pb2.EmbedRequest(texts=["hello"]))).embeddings.count == 1


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_every_log_record_is_bounded_message_and_traceback(formatter: logging.Formatter) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("featurelens.tests.echo")
    logger.propagate = False
    logger.addHandler(handler)
    huge = "q" * FIVE_MB
    try:
        logger.warning("corpus %s not found", huge)
        try:
            raise LookupError(f"no corpus {huge}")
        except LookupError:
            logger.exception("lookup failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    written = buffer.getvalue()
    assert len(written) < 3 * MAX_MESSAGE_CHARS + 5000
    assert "(cut from 5,000,0" in written
    assert "LookupError" in written
