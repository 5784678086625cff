"""The sae service: dense vectors to sparse latents and back, steering, training, the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

import numpy.typing as npt

from featurelens.client import convert
from featurelens.client.convert import SparseInput
from featurelens.client.options import NOT_GIVEN, NotGiven, stream_timeout
from featurelens.client.retries import rpc_path
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
    TrainSource,
)
from featurelens.v1 import sae_pb2, sae_pb2_grpc

_SERVICE = "featurelens.v1.SaeService"
_ENCODE = rpc_path(_SERVICE, "Encode")
_DECODE = rpc_path(_SERVICE, "Decode")
_STEER = rpc_path(_SERVICE, "Steer")
_DECODER_DIRECTIONS = rpc_path(_SERVICE, "DecoderDirections")
_LIST_SAES = rpc_path(_SERVICE, "ListSaes")
_GET_SAE = rpc_path(_SERVICE, "GetSae")


class SaeClient:
    """Top-k sparse autoencoders: encode, decode, steer, train and list them.

    ``sae_id=None`` everywhere means the server's default SAE.
    """

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport
        self._stub = sae_pb2_grpc.SaeServiceStub(transport.channel)

    def encode(
        self,
        vectors: npt.ArrayLike,
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Latents:
        """The top-k latents of each row of a (count, d_in) array."""
        request = convert.encode_request(vectors, sae_id)
        response = self._transport.unary(self._stub.Encode, request, rpc=_ENCODE, timeout=timeout)
        return convert.latents(response)

    def decode(
        self,
        rows: Iterable[SparseInput],
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Decoded:
        """Dense vectors from sparse latent rows (``SparseVector`` or ``(indices, values)`` pairs)."""
        request = convert.decode_request(rows, sae_id)
        response = self._transport.unary(self._stub.Decode, request, rpc=_DECODE, timeout=timeout)
        return convert.decoded(response)

    def steer(
        self,
        vector: npt.ArrayLike,
        interventions: Iterable[Intervention],
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Steered:
        """Apply feature interventions to one dense vector (family and phrase targets are for search only)."""
        request = convert.steer_request(vector, interventions, sae_id)
        return convert.steered(self._transport.unary(self._stub.Steer, request, rpc=_STEER, timeout=timeout))

    def decoder_directions(
        self,
        features: Iterable[int],
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> DecoderDirections:
        """The unit-norm decoder directions of the given latents, in request order."""
        request = convert.decoder_directions_request(features, sae_id)
        return convert.decoder_directions(
            self._transport.unary(
                self._stub.DecoderDirections, request, rpc=_DECODER_DIRECTIONS, timeout=timeout
            )
        )

    def train(
        self,
        embeddings_path: TrainSource,
        config: SaeConfig,
        *,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        epochs: int | None = None,
        max_steps: int | None = None,
        seed: int | None = None,
        val_fraction: float | None = None,
        patience: int | None = None,
        input_noise: float | None = None,
        make_default: bool = False,
        timeout: float | NotGiven | None = NOT_GIVEN,
        timeout_s: float | NotGiven | None = NOT_GIVEN,
    ) -> Iterator[TrainProgress]:
        """Train an SAE on an embedding store the server can read; yields progress as it goes.

        ``embeddings_path`` is the store directory on the server, or a ``QdrantTrainSource`` (a
        named dense vector of a collection in the server's Qdrant store, e.g. a search stack's own)
        or a ``FileTrainSource`` (.npy / .parquet on the server); a source larger than its
        ``max_rows`` is reduced to a seeded sample.

        The last message's ``result`` is the new SAE. A setting left None is not sent, and the
        server uses featurelens-core's default for it (the same as ``featurelens sae train``; see
        ``TrainRequest`` in sae.proto); a value is used as sent, so ``val_fraction=0.0`` trains on
        every row without validation and ``patience=0`` runs every epoch (no early stopping; the
        epoch with the best validation NMSE is kept either way, see ``SaeMetrics.best_epoch``).
        ``input_noise`` (e.g. 0.04) adds seeded Gaussian noise to each training batch, a regulariser
        for small corpora.
        ``make_default`` makes the new SAE the one a call naming none gets; without it the default
        stays as it is (only a server's first SAE becomes it anyway).
        ``timeout`` bounds the whole run (no bound by default; ``timeout_s`` is its older,
        deprecated name).
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
            patience=patience,
            input_noise=input_noise,
            make_default=make_default,
        )
        bound = stream_timeout(timeout, timeout_s)
        for response in self._transport.server_stream(self._stub.Train, request, bound):
            yield convert.train_progress(response)

    def list_saes(self, *, timeout: float | NotGiven | None = NOT_GIVEN) -> list[SaeInfo]:
        """Every SAE in the registry."""
        request = sae_pb2.ListSaesRequest()
        response = self._transport.unary(self._stub.ListSaes, request, rpc=_LIST_SAES, timeout=timeout)
        return [convert.sae_info(info) for info in response.saes]

    def get_sae(self, sae_id: str, *, timeout: float | NotGiven | None = NOT_GIVEN) -> SaeInfo:
        """One SAE's config and metrics; ``NotFoundError`` when there is no such SAE."""
        request = sae_pb2.GetSaeRequest(sae_id=sae_id)
        response = self._transport.unary(self._stub.GetSae, request, rpc=_GET_SAE, timeout=timeout)
        return convert.sae_info(response.sae)


class AsyncSaeClient:
    """Top-k sparse autoencoders: encode, decode, steer, train and list them (asyncio)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    @property
    def _stub(self) -> sae_pb2_grpc.SaeServiceAsyncStub:
        return self._transport.stub("sae", lambda channel: sae_pb2_grpc.SaeServiceStub(channel))

    async def encode(
        self,
        vectors: npt.ArrayLike,
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Latents:
        """The top-k latents of each row of a (count, d_in) array."""
        request = convert.encode_request(vectors, sae_id)
        response = await self._transport.unary(self._stub.Encode, request, rpc=_ENCODE, timeout=timeout)
        return convert.latents(response)

    async def decode(
        self,
        rows: Iterable[SparseInput],
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Decoded:
        """Dense vectors from sparse latent rows (``SparseVector`` or ``(indices, values)`` pairs)."""
        request = convert.decode_request(rows, sae_id)
        response = await self._transport.unary(self._stub.Decode, request, rpc=_DECODE, timeout=timeout)
        return convert.decoded(response)

    async def steer(
        self,
        vector: npt.ArrayLike,
        interventions: Iterable[Intervention],
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Steered:
        """Apply feature interventions to one dense vector (family and phrase targets are for search only)."""
        request = convert.steer_request(vector, interventions, sae_id)
        return convert.steered(
            await self._transport.unary(self._stub.Steer, request, rpc=_STEER, timeout=timeout)
        )

    async def decoder_directions(
        self,
        features: Iterable[int],
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> DecoderDirections:
        """The unit-norm decoder directions of the given latents, in request order."""
        request = convert.decoder_directions_request(features, sae_id)
        return convert.decoder_directions(
            await self._transport.unary(
                self._stub.DecoderDirections, request, rpc=_DECODER_DIRECTIONS, timeout=timeout
            )
        )

    async def train(
        self,
        embeddings_path: TrainSource,
        config: SaeConfig,
        *,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        epochs: int | None = None,
        max_steps: int | None = None,
        seed: int | None = None,
        val_fraction: float | None = None,
        patience: int | None = None,
        input_noise: float | None = None,
        make_default: bool = False,
        timeout: float | NotGiven | None = NOT_GIVEN,
        timeout_s: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncIterator[TrainProgress]:
        """Train an SAE on an embedding store the server can read; yields progress as it goes.

        ``embeddings_path`` is the store directory on the server, or a ``QdrantTrainSource`` (a
        named dense vector of a collection in the server's Qdrant store, e.g. a search stack's own)
        or a ``FileTrainSource`` (.npy / .parquet on the server); a source larger than its
        ``max_rows`` is reduced to a seeded sample.

        As ``SaeClient.train``: a setting left None is the server's (featurelens-core's) default.
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
            patience=patience,
            input_noise=input_noise,
            make_default=make_default,
        )
        bound = stream_timeout(timeout, timeout_s)
        async for response in self._transport.server_stream(self._stub.Train, request, bound):
            yield convert.train_progress(response)

    async def list_saes(self, *, timeout: float | NotGiven | None = NOT_GIVEN) -> list[SaeInfo]:
        """Every SAE in the registry."""
        request = sae_pb2.ListSaesRequest()
        response = await self._transport.unary(self._stub.ListSaes, request, rpc=_LIST_SAES, timeout=timeout)
        return [convert.sae_info(info) for info in response.saes]

    async def get_sae(self, sae_id: str, *, timeout: float | NotGiven | None = NOT_GIVEN) -> SaeInfo:
        """One SAE's config and metrics; ``NotFoundError`` when there is no such SAE."""
        request = sae_pb2.GetSaeRequest(sae_id=sae_id)
        response = await self._transport.unary(self._stub.GetSae, request, rpc=_GET_SAE, timeout=timeout)
        return convert.sae_info(response.sae)
