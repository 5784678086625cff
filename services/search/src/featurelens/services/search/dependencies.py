"""Calls to the encoder and sae services, typed for the search service, and the peers of the
labelling and family services (whose calls ``labelling`` and ``families`` make, with the search
service's policy on failures).

Each is a kit ``Peer``: a deadline on every call, the request id passed on, and failures as
service errors that name the service and its address. In the embedded mode, where the encoder and
sae services run in this process, ``embed``, ``encode`` and ``steer`` call their servicers directly
(``Peer.in_process``): the same request, validation, work and deadline, and the same errors,
without the loopback gRPC hop (~1-2 ms a call on 2 cores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from featurelens.kit import UnavailableError
from featurelens.kit.peers import Peer
from featurelens.services.search import convert
from featurelens.store import SparseVec
from featurelens.v1 import common_pb2, encoder_pb2, encoder_pb2_grpc, sae_pb2, sae_pb2_grpc
from featurelens.wire.arrays import (
    ArrayFormatError,
    from_dense_matrix,
    from_dense_vector,
    to_dense_matrix,
    to_dense_vector,
)

_ENCODER_SERVICE = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name
_SAE_SERVICE = sae_pb2.DESCRIPTOR.services_by_name["SaeService"].full_name
_EMBED = f"/{_ENCODER_SERVICE}/Embed"
_ENCODE = f"/{_SAE_SERVICE}/Encode"
_STEER = f"/{_SAE_SERVICE}/Steer"


@runtime_checkable
class InProcessEncoder(Protocol):
    """What the encoder servicer offers a caller in its own process: Embed without the RPC."""

    async def embed(self, request: encoder_pb2.EmbedRequest) -> encoder_pb2.EmbedResponse: ...


@runtime_checkable
class InProcessSae(Protocol):
    """What the sae servicer offers a caller in its own process: Encode and Steer without the RPC."""

    async def encode(self, request: sae_pb2.EncodeRequest) -> sae_pb2.EncodeResponse: ...

    async def steer(self, request: sae_pb2.SteerRequest) -> sae_pb2.SteerResponse: ...


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


class Dependencies:
    """The encoder and sae services, called through the generated stubs, and the labelling and
    family peers."""

    def __init__(self, encoder: Peer, sae: Peer, labelling: Peer, family: Peer) -> None:
        self.encoder = encoder
        self.sae = sae
        self.labelling = labelling
        self.family = family

    @classmethod
    def at(
        cls,
        encoder_address: str,
        sae_address: str,
        encoder_timeout_s: float,
        sae_timeout_s: float,
        *,
        labelling_address: str,
        labelling_timeout_s: float,
        family_address: str,
        family_timeout_s: float,
    ) -> Dependencies:
        return cls(
            Peer("encoder", encoder_address, encoder_timeout_s),
            Peer("sae", sae_address, sae_timeout_s),
            Peer("labelling", labelling_address, labelling_timeout_s),
            Peer("family", family_address, family_timeout_s),
        )

    async def embed(self, texts: Sequence[str], model: str = "") -> Embedded:
        """Embeddings of ``texts`` with ``model`` ("" = the encoder's default)."""
        request = encoder_pb2.EmbedRequest(texts=list(texts), model=model)
        local = self.encoder.in_process(_ENCODER_SERVICE)
        if isinstance(local, InProcessEncoder):
            response = await self.encoder.call_in_process(_EMBED, local.embed(request))
        else:
            stub = encoder_pb2_grpc.EncoderServiceStub(self.encoder.channel)
            response = await self.encoder.call(stub.Embed(request, timeout=self.encoder.timeout_s))
        vectors = self._matrix(response.embeddings, "encoder", len(texts))
        return Embedded(vectors, response.model_id)

    async def encode(self, sae_id: str, vectors: npt.NDArray[np.float32]) -> tuple[str, list[SparseVec]]:
        """The SAE's latents of each row of ``vectors``, and the SAE's id ("" = the default SAE)."""
        request = sae_pb2.EncodeRequest(sae_id=sae_id, vectors=to_dense_matrix(vectors))
        local = self.sae.in_process(_SAE_SERVICE)
        if isinstance(local, InProcessSae):
            response = await self.sae.call_in_process(_ENCODE, local.encode(request))
        else:
            stub = sae_pb2_grpc.SaeServiceStub(self.sae.channel)
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
        request = sae_pb2.SteerRequest(
            sae_id=sae_id, vector=to_dense_vector(vector), interventions=list(interventions)
        )
        local = self.sae.in_process(_SAE_SERVICE)
        if isinstance(local, InProcessSae):
            response = await self.sae.call_in_process(_STEER, local.steer(request))
        else:
            stub = sae_pb2_grpc.SaeServiceStub(self.sae.channel)
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
        await self.labelling.close()
        await self.family.close()
