"""The sae service: dense vectors to sparse latents and back, steering, training, the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

import numpy.typing as npt

from featurelens.client import convert
from featurelens.client.convert import SparseInput
from featurelens.client.transport import AsyncTransport, SyncTransport
from featurelens.client.types import (
    Decoded,
    DecoderDirections,
    Intervention,
    Latents,
    SaeConfig,
    SaeInfo,
    Steered,
    TrainProgress,
)
from featurelens.v1 import sae_pb2, sae_pb2_grpc


class SaeClient:
    """Top-k sparse autoencoders: encode, decode, steer, train and list them.

    ``sae_id=None`` everywhere means the server's default SAE.
    """

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport
        self._stub = sae_pb2_grpc.SaeServiceStub(transport.channel)

    def encode(self, vectors: npt.ArrayLike, sae_id: str | None = None) -> Latents:
        """The top-k latents of each row of a (count, d_in) array."""
        response = self._transport.unary(self._stub.Encode, convert.encode_request(vectors, sae_id))
        return convert.latents(response)

    def decode(self, rows: Iterable[SparseInput], sae_id: str | None = None) -> Decoded:
        """Dense vectors from sparse latent rows (``SparseVector`` or ``(indices, values)`` pairs)."""
        response = self._transport.unary(self._stub.Decode, convert.decode_request(rows, sae_id))
        return convert.decoded(response)

    def steer(
        self, vector: npt.ArrayLike, interventions: Iterable[Intervention], sae_id: str | None = None
    ) -> Steered:
        """Apply feature interventions to one dense vector (family targets are for search only)."""
        request = convert.steer_request(vector, interventions, sae_id)
        return convert.steered(self._transport.unary(self._stub.Steer, request))

    def decoder_directions(self, features: Iterable[int], sae_id: str | None = None) -> DecoderDirections:
        """The unit-norm decoder directions of the given latents, in request order."""
        request = convert.decoder_directions_request(features, sae_id)
        return convert.decoder_directions(self._transport.unary(self._stub.DecoderDirections, request))

    def train(
        self,
        embeddings_path: str,
        config: SaeConfig,
        *,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        epochs: int | None = None,
        max_steps: int | None = None,
        seed: int = 0,
        val_fraction: float | None = None,
        make_default: bool = False,
        timeout_s: float | None = None,
    ) -> Iterator[TrainProgress]:
        """Train an SAE on an embedding store the server can read; yields progress as it goes.

        The last message's ``result`` is the new SAE. None means the server's default for a
        hyper-parameter; ``timeout_s`` bounds the whole run (no bound by default).
        """
        request = convert.train_request(
            embeddings_path,
            config,
            batch_size=batch_size,
            learning_rate=learning_rate,
            epochs=epochs,
            max_steps=max_steps,
            seed=seed,
            val_fraction=val_fraction,
            make_default=make_default,
        )
        for response in self._transport.server_stream(self._stub.Train, request, timeout_s):
            yield convert.train_progress(response)

    def list_saes(self) -> list[SaeInfo]:
        """Every SAE in the registry."""
        response = self._transport.unary(self._stub.ListSaes, sae_pb2.ListSaesRequest())
        return [convert.sae_info(info) for info in response.saes]

    def get_sae(self, sae_id: str) -> SaeInfo:
        """One SAE's config and metrics; ``NotFoundError`` when there is no such SAE."""
        response = self._transport.unary(self._stub.GetSae, sae_pb2.GetSaeRequest(sae_id=sae_id))
        return convert.sae_info(response.sae)


class AsyncSaeClient:
    """Top-k sparse autoencoders: encode, decode, steer, train and list them (asyncio)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    @property
    def _stub(self) -> sae_pb2_grpc.SaeServiceAsyncStub:
        return self._transport.stub("sae", lambda channel: sae_pb2_grpc.SaeServiceStub(channel))

    async def encode(self, vectors: npt.ArrayLike, sae_id: str | None = None) -> Latents:
        """The top-k latents of each row of a (count, d_in) array."""
        response = await self._transport.unary(self._stub.Encode, convert.encode_request(vectors, sae_id))
        return convert.latents(response)

    async def decode(self, rows: Iterable[SparseInput], sae_id: str | None = None) -> Decoded:
        """Dense vectors from sparse latent rows (``SparseVector`` or ``(indices, values)`` pairs)."""
        response = await self._transport.unary(self._stub.Decode, convert.decode_request(rows, sae_id))
        return convert.decoded(response)

    async def steer(
        self, vector: npt.ArrayLike, interventions: Iterable[Intervention], sae_id: str | None = None
    ) -> Steered:
        """Apply feature interventions to one dense vector (family targets are for search only)."""
        request = convert.steer_request(vector, interventions, sae_id)
        return convert.steered(await self._transport.unary(self._stub.Steer, request))

    async def decoder_directions(
        self, features: Iterable[int], sae_id: str | None = None
    ) -> DecoderDirections:
        """The unit-norm decoder directions of the given latents, in request order."""
        request = convert.decoder_directions_request(features, sae_id)
        return convert.decoder_directions(await self._transport.unary(self._stub.DecoderDirections, request))

    async def train(
        self,
        embeddings_path: str,
        config: SaeConfig,
        *,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        epochs: int | None = None,
        max_steps: int | None = None,
        seed: int = 0,
        val_fraction: float | None = None,
        make_default: bool = False,
        timeout_s: float | None = None,
    ) -> AsyncIterator[TrainProgress]:
        """Train an SAE on an embedding store the server can read; yields progress as it goes."""
        request = convert.train_request(
            embeddings_path,
            config,
            batch_size=batch_size,
            learning_rate=learning_rate,
            epochs=epochs,
            max_steps=max_steps,
            seed=seed,
            val_fraction=val_fraction,
            make_default=make_default,
        )
        async for response in self._transport.server_stream(self._stub.Train, request, timeout_s):
            yield convert.train_progress(response)

    async def list_saes(self) -> list[SaeInfo]:
        """Every SAE in the registry."""
        response = await self._transport.unary(self._stub.ListSaes, sae_pb2.ListSaesRequest())
        return [convert.sae_info(info) for info in response.saes]

    async def get_sae(self, sae_id: str) -> SaeInfo:
        """One SAE's config and metrics; ``NotFoundError`` when there is no such SAE."""
        response = await self._transport.unary(self._stub.GetSae, sae_pb2.GetSaeRequest(sae_id=sae_id))
        return convert.sae_info(response.sae)
