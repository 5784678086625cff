"""Calls to the encoder and sae services: deadlines on every call, failures as service errors.

A dependency that cannot be reached becomes UNAVAILABLE naming it and its address; one that
does not answer in time, DEADLINE_EXCEEDED; what it refuses keeps its code, with its sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from grpc import aio

from featurelens.client.arrays import (
    ArrayFormatError,
    from_dense_matrix,
    from_dense_vector,
    to_dense_matrix,
    to_dense_vector,
)
from featurelens.kit import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    ServiceError,
    UnavailableError,
    insecure_channel,
)
from featurelens.services.search import convert
from featurelens.store import SparseVec
from featurelens.v1 import common_pb2, encoder_pb2, encoder_pb2_grpc, sae_pb2, sae_pb2_grpc

logger = logging.getLogger(__name__)

T = TypeVar("T")

_KEEPS_CODE: dict[grpc.StatusCode, type[ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
}


@dataclass(frozen=True)
class Embedded:
    """Unit-norm embeddings of a batch of texts, in order, and the model that made them."""

    vectors: npt.NDArray[np.float32]
    model_id: str


@dataclass(frozen=True)
class SaeSummary:
    """What the search service needs to know about one SAE of the registry."""

    sae_id: str
    d_in: int
    num_latents: int
    embedding_model: str
    is_default: bool


@dataclass(frozen=True)
class Steered:
    """A steered query: the new vector, its cosine to the original, latents before and after."""

    sae_id: str
    vector: npt.NDArray[np.float32]
    cosine: float
    latents_before: SparseVec
    latents_after: SparseVec


class Dependency:
    """One service the search service calls: its name, address, channel and deadline."""

    def __init__(self, name: str, address: str, timeout_s: float) -> None:
        self.name = name
        self.address = address
        self.timeout_s = timeout_s
        self._channel: aio.Channel | None = None

    @property
    def channel(self) -> aio.Channel:
        # Opened on first use, inside the running loop (an aio channel binds to its loop).
        if self._channel is None:
            self._channel = insecure_channel(self.address)
        return self._channel

    async def call(self, call: Awaitable[T]) -> T:
        """Await a stub call; a failed status becomes the service error that says what happened."""
        try:
            return await call
        except aio.AioRpcError as error:
            raise self._error(error) from None

    def _error(self, error: aio.AioRpcError) -> ServiceError:
        code = error.code()
        details = error.details() or code.name
        where = f"the {self.name} service at {self.address}"
        if code == grpc.StatusCode.UNAVAILABLE:
            logger.warning("%s is unavailable: %s", where, details)
            return UnavailableError(f"{where} is unavailable ({details})")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceededError(f"{where} did not answer within {self.timeout_s:g} s")
        kept = _KEEPS_CODE.get(code)
        if kept is not None:
            return kept(f"the {self.name} service refused the call: {details}")
        # INTERNAL, UNIMPLEMENTED, CANCELLED ...: the dependency cannot do its part right now.
        logger.warning("%s failed with %s: %s", where, code.name, details)
        return UnavailableError(f"{where} failed ({code.name}: {details})")

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None


class Dependencies:
    """The encoder and sae services, called through the generated stubs."""

    def __init__(self, encoder: Dependency, sae: Dependency) -> None:
        self.encoder = encoder
        self.sae = sae

    @classmethod
    def at(
        cls, encoder_address: str, sae_address: str, encoder_timeout_s: float, sae_timeout_s: float
    ) -> Dependencies:
        return cls(
            Dependency("encoder", encoder_address, encoder_timeout_s),
            Dependency("sae", sae_address, sae_timeout_s),
        )

    async def embed(self, texts: Sequence[str], model: str = "") -> Embedded:
        """Embeddings of ``texts`` with ``model`` ("" = the encoder's default)."""
        stub = encoder_pb2_grpc.EncoderServiceStub(self.encoder.channel)
        request = encoder_pb2.EmbedRequest(texts=list(texts), model=model)
        response = await self.encoder.call(stub.Embed(request, timeout=self.encoder.timeout_s))
        vectors = self._matrix(response.embeddings, "encoder", len(texts))
        return Embedded(vectors, response.model_id)

    async def encode(self, sae_id: str, vectors: npt.NDArray[np.float32]) -> tuple[str, list[SparseVec]]:
        """The SAE's latents of each row of ``vectors``, and the SAE's id ("" = the default SAE)."""
        stub = sae_pb2_grpc.SaeServiceStub(self.sae.channel)
        request = sae_pb2.EncodeRequest(sae_id=sae_id, vectors=to_dense_matrix(vectors))
        response = await self.sae.call(stub.Encode(request, timeout=self.sae.timeout_s))
        if len(response.rows) != len(vectors):
            raise UnavailableError(
                f"the sae service at {self.sae.address} returned {len(response.rows)} rows for "
                f"{len(vectors)} vectors"
            )
        return response.sae_id, [convert.sparse_vec(row) for row in response.rows]

    async def steer(
        self,
        sae_id: str,
        vector: npt.NDArray[np.float32],
        interventions: Sequence[common_pb2.Intervention],
    ) -> Steered:
        """The query steered by feature interventions."""
        stub = sae_pb2_grpc.SaeServiceStub(self.sae.channel)
        request = sae_pb2.SteerRequest(
            sae_id=sae_id, vector=to_dense_vector(vector), interventions=list(interventions)
        )
        response = await self.sae.call(stub.Steer(request, timeout=self.sae.timeout_s))
        try:
            steered = np.array(from_dense_vector(response.vector), dtype=np.float32)
        except ArrayFormatError as error:
            raise UnavailableError(
                f"the sae service at {self.sae.address} sent a bad vector: {error}"
            ) from None
        return Steered(
            sae_id=response.sae_id,
            vector=steered,
            cosine=float(response.cosine_to_original),
            latents_before=convert.sparse_vec(response.latents_before),
            latents_after=convert.sparse_vec(response.latents_after),
        )

    async def list_saes(self) -> list[SaeSummary]:
        """Every SAE of the sae service's registry."""
        stub = sae_pb2_grpc.SaeServiceStub(self.sae.channel)
        response = await self.sae.call(stub.ListSaes(sae_pb2.ListSaesRequest(), timeout=self.sae.timeout_s))
        return [
            SaeSummary(
                sae_id=info.sae_id,
                d_in=info.config.d_in,
                num_latents=info.config.num_latents,
                embedding_model=info.embedding_model,
                is_default=info.is_default,
            )
            for info in response.saes
        ]

    def _matrix(self, message: common_pb2.DenseMatrix, service: str, rows: int) -> npt.NDArray[np.float32]:
        try:
            matrix = from_dense_matrix(message)
        except ArrayFormatError as error:
            raise UnavailableError(f"the {service} service sent a malformed matrix: {error}") from None
        if matrix.shape[0] != rows:
            raise UnavailableError(f"the {service} service returned {matrix.shape[0]} rows for {rows} inputs")
        return matrix

    async def close(self) -> None:
        await self.encoder.close()
        await self.sae.close()
