"""The encoder as a gRPC server: health while loading, reflection, request ids, error statuses."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from encoder_testing import SERVICE, FailingBackend, GatedLoader, Running, failure_of, serve_encoder
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from featurelens.embedding.backends import BackendUnavailableError, EmbeddingBackend, EmbeddingBackendError
from featurelens.kit import GrpcServer
from featurelens.services.encoder.cache import MemoryEmbeddingCache
from featurelens.services.encoder.servicer import EncoderServicer
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_of(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def test_health_is_not_serving_while_the_models_load_and_serving_once_warm(
    wordllama: EmbeddingBackend,
) -> None:
    loader = GatedLoader(wordllama)
    async with serve_encoder({"wordllama": loader}, wait_ready=False) as running:
        await asyncio.to_thread(loader.entered.wait, 10)
        assert await health_of(running.channel) == NOT_SERVING
        assert await health_of(running.channel, SERVICE) == NOT_SERVING
        early = await failure_of(running.stub.Embed(encoder_pb2.EmbedRequest(texts=["too early"])))

        loader.release()
        await running.server.wait_ready(timeout=30)

        assert await health_of(running.channel) == SERVING
        assert await health_of(running.channel, SERVICE) == SERVING
    assert early.code() == grpc.StatusCode.UNAVAILABLE
    assert "still loading" in (early.details() or "")


async def test_reflection_lists_the_encoder_service(running: Running) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    replies = [
        reply
        async for reply in reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    ]

    names = {service.name for service in replies[0].list_services_response.service}
    assert SERVICE in names


async def test_the_request_id_sent_in_metadata_comes_back_in_initial_metadata(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub,
) -> None:
    call = stub.Embed(
        encoder_pb2.EmbedRequest(texts=["hello"]), metadata=(("x-request-id", "req-encoder-7"),)
    )

    assert dict(await call.initial_metadata())["x-request-id"] == "req-encoder-7"
    assert (await call).embeddings.count == 1


async def test_an_unexpected_error_is_internal_without_a_traceback(wordllama: EmbeddingBackend) -> None:
    failing = FailingBackend(wordllama, RuntimeError("secret detail: password=hunter2"))
    async with serve_encoder({"wordllama": lambda: failing}) as running:
        call = running.stub.Embed(
            encoder_pb2.EmbedRequest(texts=["boom"]), metadata=(("x-request-id", "req-9"),)
        )
        error = await failure_of(call)

    assert error.code() == grpc.StatusCode.INTERNAL
    details = error.details() or ""
    assert "req-9" in details
    assert "Traceback" not in details
    assert "hunter2" not in details


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BackendUnavailableError("the embeddings API failed 4 times"), grpc.StatusCode.UNAVAILABLE),
        (
            EmbeddingBackendError("the embeddings API refused the request (HTTP 401)"),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ],
)
async def test_a_backend_failure_maps_to_a_status_that_tells_whether_to_retry(
    wordllama: EmbeddingBackend, error: Exception, code: grpc.StatusCode
) -> None:
    failing = FailingBackend(wordllama, error)
    async with serve_encoder({"wordllama": lambda: failing}) as running:
        failure = await failure_of(running.stub.Embed(encoder_pb2.EmbedRequest(texts=["boom"])))

    assert failure.code() == code
    assert str(error) in (failure.details() or "")


async def test_a_default_model_that_was_not_loaded_fails_the_start(wordllama: EmbeddingBackend) -> None:
    servicer = EncoderServicer(
        {"wordllama": lambda: wordllama}, MemoryEmbeddingCache(1024), default_model="minilm"
    )
    server = GrpcServer([servicer], host="127.0.0.1", port=0)
    await server.start()
    try:
        with pytest.raises(ValueError, match="default model 'minilm' is not among the loaded models"):
            await server.wait_ready(timeout=30)
    finally:
        await server.stop(0)
