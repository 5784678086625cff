"""The encoder service: text to dense embeddings."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence

from featurelens.client import convert
from featurelens.client.transport import AsyncTransport, SyncTransport
from featurelens.client.types import Embeddings, ModelInfo
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc


class EncoderClient:
    """Embeds texts with the models the encoder serves."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport
        self._stub = encoder_pb2_grpc.EncoderServiceStub(transport.channel)

    def embed(self, texts: Sequence[str], model: str | None = None) -> Embeddings:
        """Embed a batch of texts with ``model`` (the server's default when None)."""
        request = convert.embed_request(texts, model)
        response = self._transport.unary(self._stub.Embed, request)
        return convert.embeddings(response)

    def embed_stream(
        self, batches: Iterable[Sequence[str]], model: str | None = None, *, timeout_s: float | None = None
    ) -> Iterator[Embeddings]:
        """Embed many batches over one stream; yields one ``Embeddings`` per batch, in order.

        Batches are sent as the server reads them, so ``batches`` may be a lazy generator.
        ``timeout_s`` bounds the whole stream (no bound by default).
        """
        requests = convert.embed_stream_requests(batches, model)
        responses = self._transport.bidi_stream(self._stub.EmbedStream, requests, timeout_s)
        for batch_id, response in enumerate(responses):
            yield convert.stream_embeddings(response, batch_id)

    def list_models(self) -> list[ModelInfo]:
        """The models the encoder serves; ``is_default`` marks the one used when none is named."""
        response = self._transport.unary(self._stub.ListModels, encoder_pb2.ListModelsRequest())
        return convert.model_infos(response)


class AsyncEncoderClient:
    """Embeds texts with the models the encoder serves (asyncio)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    @property
    def _stub(self) -> encoder_pb2_grpc.EncoderServiceAsyncStub:
        return self._transport.stub("encoder", lambda channel: encoder_pb2_grpc.EncoderServiceStub(channel))

    async def embed(self, texts: Sequence[str], model: str | None = None) -> Embeddings:
        """Embed a batch of texts with ``model`` (the server's default when None)."""
        request = convert.embed_request(texts, model)
        response = await self._transport.unary(self._stub.Embed, request)
        return convert.embeddings(response)

    async def embed_stream(
        self,
        batches: Iterable[Sequence[str]] | AsyncIterable[Sequence[str]],
        model: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> AsyncIterator[Embeddings]:
        """Embed many batches over one stream; yields one ``Embeddings`` per batch, in order."""
        if isinstance(batches, AsyncIterable):
            requests: (
                Iterator[encoder_pb2.EmbedStreamRequest] | AsyncIterator[encoder_pb2.EmbedStreamRequest]
            ) = convert.embed_stream_requests_async(batches, model)
        else:
            requests = convert.embed_stream_requests(batches, model)
        batch_id = 0
        async for response in self._transport.bidi_stream(self._stub.EmbedStream, requests, timeout_s):
            yield convert.stream_embeddings(response, batch_id)
            batch_id += 1

    async def list_models(self) -> list[ModelInfo]:
        """The models the encoder serves; ``is_default`` marks the one used when none is named."""
        response = await self._transport.unary(self._stub.ListModels, encoder_pb2.ListModelsRequest())
        return convert.model_infos(response)
