"""The encoder service: text to dense embeddings."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence

from featurelens.client import convert
from featurelens.client.options import NOT_GIVEN, NotGiven, stream_timeout
from featurelens.client.retries import rpc_path
from featurelens.client.transport import AsyncTransport, SyncTransport
from featurelens.client.types import Embeddings, ModelInfo
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

_SERVICE = "featurelens.v1.EncoderService"
_EMBED = rpc_path(_SERVICE, "Embed")
_LIST_MODELS = rpc_path(_SERVICE, "ListModels")


class EncoderClient:
    """Embeds texts with the models the encoder serves."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport
        self._stub = encoder_pb2_grpc.EncoderServiceStub(transport.channel)

    def embed(
        self, texts: Sequence[str], model: str | None = None, *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> Embeddings:
        """Embed a batch of texts with ``model`` (the server's default when None)."""
        request = convert.embed_request(texts, model)
        response = self._transport.unary(self._stub.Embed, request, rpc=_EMBED, timeout=timeout)
        return convert.embeddings(response)

    def embed_stream(
        self,
        batches: Iterable[Sequence[str]],
        model: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
        timeout_s: float | NotGiven | None = NOT_GIVEN,
    ) -> Iterator[Embeddings]:
        """Embed many batches over one stream; yields one ``Embeddings`` per batch, in order.

        Batches are sent as the server reads them, so ``batches`` may be a lazy generator, and
        the stream is never retried. ``timeout`` bounds the whole stream (no bound by default);
        ``timeout_s`` is its older, deprecated name.
        """
        bound = stream_timeout(timeout, timeout_s)
        requests = convert.embed_stream_requests(batches, model)
        responses = self._transport.bidi_stream(self._stub.EmbedStream, requests, bound)
        for batch_id, response in enumerate(responses):
            yield convert.stream_embeddings(response, batch_id)

    def list_models(self, *, timeout: float | NotGiven | None = NOT_GIVEN) -> list[ModelInfo]:
        """The models the encoder serves; ``is_default`` marks the one used when none is named."""
        request = encoder_pb2.ListModelsRequest()
        response = self._transport.unary(self._stub.ListModels, request, rpc=_LIST_MODELS, timeout=timeout)
        return convert.model_infos(response)


class AsyncEncoderClient:
    """Embeds texts with the models the encoder serves (asyncio)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    @property
    def _stub(self) -> encoder_pb2_grpc.EncoderServiceAsyncStub:
        return self._transport.stub("encoder", lambda channel: encoder_pb2_grpc.EncoderServiceStub(channel))

    async def embed(
        self, texts: Sequence[str], model: str | None = None, *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> Embeddings:
        """Embed a batch of texts with ``model`` (the server's default when None)."""
        request = convert.embed_request(texts, model)
        response = await self._transport.unary(self._stub.Embed, request, rpc=_EMBED, timeout=timeout)
        return convert.embeddings(response)

    async def embed_stream(
        self,
        batches: Iterable[Sequence[str]] | AsyncIterable[Sequence[str]],
        model: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
        timeout_s: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncIterator[Embeddings]:
        """Embed many batches over one stream; yields one ``Embeddings`` per batch, in order."""
        bound = stream_timeout(timeout, timeout_s)
        if isinstance(batches, AsyncIterable):
            requests: (
                Iterator[encoder_pb2.EmbedStreamRequest] | AsyncIterator[encoder_pb2.EmbedStreamRequest]
            ) = convert.embed_stream_requests_async(batches, model)
        else:
            requests = convert.embed_stream_requests(batches, model)
        batch_id = 0
        async for response in self._transport.bidi_stream(self._stub.EmbedStream, requests, bound):
            yield convert.stream_embeddings(response, batch_id)
            batch_id += 1

    async def list_models(self, *, timeout: float | NotGiven | None = NOT_GIVEN) -> list[ModelInfo]:
        """The models the encoder serves; ``is_default`` marks the one used when none is named."""
        request = encoder_pb2.ListModelsRequest()
        response = await self._transport.unary(
            self._stub.ListModels, request, rpc=_LIST_MODELS, timeout=timeout
        )
        return convert.model_infos(response)
