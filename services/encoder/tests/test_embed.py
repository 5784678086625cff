"""Embed, EmbedStream and ListModels through the generated stub, on a real loopback server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np
from encoder_testing import (
    CountingBackend,
    Running,
    TruncatingBackend,
    failure_of,
    rows_of,
    serve_encoder,
)

from featurelens.embedding.backends import EmbeddingBackend
from featurelens.services.encoder.cache import MemoryEmbeddingCache
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

WORDLLAMA_ID = "wordllama-l2-supercat-256"
TEXTS = [
    "Weak lensing constraints on the matter power spectrum.",
    "Star formation quenching in massive galaxies at cosmic noon.",
    "A transformer for photometric redshift estimation.",
]


async def test_embed_returns_unit_norm_rows_in_request_order_matching_the_backend(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub, wordllama: EmbeddingBackend
) -> None:
    reply = await stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))

    rows = rows_of(reply.embeddings)
    assert rows.shape == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(rows, wordllama.embed(TEXTS).vectors, atol=1e-6)
    assert reply.model_id == WORDLLAMA_ID
    assert list(reply.truncated) == [False, False, False]
    assert reply.cached_count == 0


async def test_a_model_can_be_named_by_its_id_or_by_the_spec_it_was_loaded_from(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub,
) -> None:
    by_id = await stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS[:1], model=WORDLLAMA_ID))
    by_spec = await stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS[:1], model="wordllama"))

    assert by_id.model_id == by_spec.model_id == WORDLLAMA_ID


async def test_a_second_call_is_served_from_the_in_process_cache(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub, counting: CountingBackend
) -> None:
    first = await stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))
    calls_after_first = counting.calls

    second = await stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))

    assert second.cached_count == 3
    assert counting.calls == calls_after_first
    assert second.embeddings.data == first.embeddings.data


async def test_only_the_texts_missing_from_the_cache_reach_the_model(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub, counting: CountingBackend
) -> None:
    await stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS[:2]))
    counting.texts.clear()

    reply = await stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))

    assert counting.texts == [TEXTS[2]]
    assert reply.cached_count == 2
    assert rows_of(reply.embeddings).shape == (3, 256)


async def test_a_text_repeated_in_one_batch_is_embedded_once(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub, counting: CountingBackend
) -> None:
    counting.texts.clear()

    reply = await stub.Embed(encoder_pb2.EmbedRequest(texts=[TEXTS[0], TEXTS[1], TEXTS[0]]))

    assert counting.texts == [TEXTS[0], TEXTS[1]]
    rows = rows_of(reply.embeddings)
    np.testing.assert_array_equal(rows[0], rows[2])
    assert not np.array_equal(rows[0], rows[1])


async def test_a_batch_larger_than_batch_size_reaches_the_model_in_chunks(
    wordllama: EmbeddingBackend,
) -> None:
    counting = CountingBackend(wordllama)
    async with serve_encoder({"wordllama": lambda: counting}, batch_size=3) as running:
        counting.calls = 0
        texts = [f"Galaxy survey number {i}." for i in range(8)]

        reply = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=texts))

    assert counting.calls == 3
    np.testing.assert_allclose(rows_of(reply.embeddings), wordllama.embed(texts).vectors, atol=1e-6)


async def test_truncated_flags_are_reported_for_computed_and_for_cached_rows(
    wordllama: EmbeddingBackend,
) -> None:
    truncating = TruncatingBackend(wordllama, "short-window", max_chars=40)
    texts = ["short text", "a text that is much longer than the forty characters the model reads"]
    async with serve_encoder({"short": lambda: truncating}) as running:
        computed = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=texts))
        cached = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=texts))

    assert list(computed.truncated) == [False, True]
    assert cached.cached_count == 2
    assert list(cached.truncated) == [False, True]


async def test_embed_stream_answers_every_batch_in_order_with_its_batch_id(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub, wordllama: EmbeddingBackend
) -> None:
    batches = {
        batch_id: [f"Batch {batch_id}, text {i}." for i in range(batch_id % 3 + 1)]
        for batch_id in range(10, 22)
    }

    async def requests() -> AsyncIterator[encoder_pb2.EmbedStreamRequest]:
        for batch_id, texts in batches.items():
            yield encoder_pb2.EmbedStreamRequest(batch_id=batch_id, texts=texts)

    replies = [reply async for reply in stub.EmbedStream(requests())]

    assert [reply.batch_id for reply in replies] == list(batches)
    for reply in replies:
        expected = wordllama.embed(batches[reply.batch_id]).vectors
        np.testing.assert_allclose(rows_of(reply.embeddings), expected, atol=1e-6)
        assert reply.model_id == WORDLLAMA_ID
        assert len(reply.truncated) == len(batches[reply.batch_id])


async def test_embed_stream_answers_a_client_that_waits_for_each_answer_before_sending_more(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub,
) -> None:
    call = stub.EmbedStream()
    for batch_id in range(3):
        await call.write(encoder_pb2.EmbedStreamRequest(batch_id=batch_id, texts=[f"text {batch_id}"]))
        reply = await call.read()
        assert reply.batch_id == batch_id
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF


async def test_embed_stream_reports_an_unknown_model_naming_its_batch(running: Running) -> None:
    requests = [
        encoder_pb2.EmbedStreamRequest(batch_id=1, texts=["first"], model="wordllama"),
        encoder_pb2.EmbedStreamRequest(batch_id=2, texts=["second"], model="other"),
    ]
    call = running.stub.EmbedStream(iter(requests))
    first = await call.read()

    error = await failure_of(call.read())

    assert first.batch_id == 1
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "batch 2" in (error.details() or "")


async def test_embed_stream_names_the_batch_and_the_text_that_is_invalid(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub,
) -> None:
    requests = [
        encoder_pb2.EmbedStreamRequest(batch_id=7, texts=["fine"]),
        encoder_pb2.EmbedStreamRequest(batch_id=8, texts=["fine", "  "]),
    ]
    call = stub.EmbedStream(iter(requests))
    assert (await call.read()).batch_id == 7

    error = await failure_of(call.read())

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "batch 8: text 1 is empty (or only whitespace)"


async def test_embed_stream_refuses_to_switch_between_two_served_models(wordllama: EmbeddingBackend) -> None:
    loaders = {"wordllama": lambda: wordllama, "other": lambda: CountingBackend(wordllama, "other-model")}
    async with serve_encoder(loaders) as running:
        requests = [
            encoder_pb2.EmbedStreamRequest(batch_id=1, texts=["first"]),
            encoder_pb2.EmbedStreamRequest(batch_id=2, texts=["second"], model="other-model"),
        ]
        call = running.stub.EmbedStream(iter(requests))
        assert (await call.read()).model_id == WORDLLAMA_ID

        error = await failure_of(call.read())

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch 2" in (error.details() or "")
    assert "one stream per model" in (error.details() or "")


async def test_list_models_describes_every_model_and_marks_the_default(wordllama: EmbeddingBackend) -> None:
    truncating = TruncatingBackend(wordllama, "short-window", max_chars=400)
    loaders = {"wordllama": lambda: wordllama, "short": lambda: truncating}
    async with serve_encoder(loaders, MemoryEmbeddingCache(0), default_model="short") as running:
        reply = await running.stub.ListModels(encoder_pb2.ListModelsRequest())
        embedded = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=["which model?"]))

    assert [(m.id, m.backend, m.dim, m.max_input_tokens, m.is_default) for m in reply.models] == [
        (WORDLLAMA_ID, "wordllama", 256, 0, False),
        ("short-window", "wordllama", 256, 100, True),
    ]
    assert embedded.model_id == "short-window"


async def test_a_stream_the_client_cancels_midway_leaves_the_server_serving(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub,
) -> None:
    call = stub.EmbedStream()
    for batch_id in range(4):
        texts = [f"cancelled stream {batch_id}"]
        await call.write(encoder_pb2.EmbedStreamRequest(batch_id=batch_id, texts=texts))
    assert (await call.read()).batch_id == 0

    call.cancel()

    reply = await stub.Embed(encoder_pb2.EmbedRequest(texts=["after the cancelled stream"]))
    assert reply.embeddings.count == 1
