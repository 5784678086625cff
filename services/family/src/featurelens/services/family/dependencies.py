"""Calls to the search, sae and labelling services, typed for the family service.

Each is a kit ``Peer`` (deadline, request id passed on, failures as service errors that name the
peer). Facts about an SAE and its decoder never change under one ``sae_id`` (the id is derived
from the config and the training data), so both are kept in memory: FeatureFamilies, which search
calls on every explained query, then costs no call to the sae service, and neighbours and matching
read a decoder once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from grpc import aio

from featurelens.families import activations_from_topk
from featurelens.kit import FailedPreconditionError, NotFoundError, ServiceError, UnavailableError
from featurelens.kit.peers import Peer
from featurelens.v1 import (
    labelling_pb2,
    labelling_pb2_grpc,
    sae_pb2,
    sae_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from featurelens.wire.arrays import ArrayFormatError, from_dense_matrix, from_sparse_vector

logger = logging.getLogger(__name__)

#: Documents per ExportActivations message.
EXPORT_BATCH = 5000
#: Features per GetLabels call (the labelling service's limit).
LABELS_BATCH = 1000
#: SAEs whose facts are kept (a few bytes each).
SAE_FACTS_KEPT = 256


@dataclass(frozen=True)
class SaeFacts:
    """What the family service needs to know about an SAE."""

    sae_id: str
    num_latents: int
    d_in: int


@dataclass(frozen=True)
class CorpusFacts:
    name: str
    documents: int


@dataclass(frozen=True)
class MemberLabel:
    """A feature's label and its score (embedding AUROC), as labelling stores them."""

    label: str
    score: float


class Peers:
    """The three services the family service calls."""

    def __init__(
        self,
        search: Peer,
        sae: Peer,
        labelling: Peer,
        *,
        export_timeout_s: float,
        labelling_timeout_s: float,
        decoder_batch: int,
        decoder_cache: int,
    ) -> None:
        self.search = search
        self.sae = sae
        self.labelling = labelling
        self.export_timeout_s = export_timeout_s
        self.labelling_timeout_s = labelling_timeout_s
        self.decoder_batch = decoder_batch
        self.decoder_cache = decoder_cache
        self._facts: OrderedDict[str, SaeFacts] = OrderedDict()
        self._decoders: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()

    # -- sae -------------------------------------------------------------------------------------

    async def sae_facts(self, sae_id: str) -> SaeFacts:
        """The SAE's size (NOT_FOUND from the sae service for an unknown SAE); "" = the default SAE,
        asked every time since the default can change."""
        known = self._facts.get(sae_id) if sae_id else None
        if known is not None:
            return known
        stub = sae_pb2_grpc.SaeServiceStub(self.sae.channel)
        response = await self.sae.call(
            stub.GetSae(sae_pb2.GetSaeRequest(sae_id=sae_id), timeout=self.sae.timeout_s)
        )
        config = response.sae.config
        facts = SaeFacts(response.sae.sae_id, int(config.num_latents), int(config.d_in))
        self._facts[facts.sae_id] = facts
        while len(self._facts) > SAE_FACTS_KEPT:
            self._facts.popitem(last=False)
        return facts

    async def directions(self, sae_id: str, features: Sequence[int]) -> npt.NDArray[np.float32]:
        """The unit decoder directions of ``features``, one row each, in order."""
        stub = sae_pb2_grpc.SaeServiceStub(self.sae.channel)
        rows: list[npt.NDArray[np.float32]] = []
        for start in range(0, len(features), self.decoder_batch):
            chunk = [int(f) for f in features[start : start + self.decoder_batch]]
            request = sae_pb2.DecoderDirectionsRequest(sae_id=sae_id, features=chunk)
            response = await self.sae.call(stub.DecoderDirections(request, timeout=self.sae.timeout_s))
            try:
                matrix = from_dense_matrix(response.directions)
            except ArrayFormatError as error:
                raise UnavailableError(f"{self.sae.where} sent malformed directions: {error}") from None
            if matrix.shape[0] != len(chunk):
                raise UnavailableError(f"{self.sae.where} sent {matrix.shape[0]} directions for {len(chunk)}")
            rows.append(np.asarray(matrix, dtype=np.float32))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(rows)

    async def decoder(self, sae: SaeFacts) -> npt.NDArray[np.float32]:
        """Every unit decoder direction of the SAE, (num_latents, d_in); kept for the next call."""
        cached = self._decoders.get(sae.sae_id)
        if cached is not None:
            self._decoders.move_to_end(sae.sae_id)
            return cached
        decoder = await self.directions(sae.sae_id, range(sae.num_latents))
        if self.decoder_cache:
            self._decoders[sae.sae_id] = decoder
            while len(self._decoders) > self.decoder_cache:
                self._decoders.popitem(last=False)
        return decoder

    # -- search ----------------------------------------------------------------------------------

    async def corpus(self, name: str, sae_id: str) -> CorpusFacts:
        """The corpus, which must hold the SAE's latents (NOT_FOUND / FAILED_PRECONDITION otherwise)."""
        stub = search_pb2_grpc.SearchServiceStub(self.search.channel)
        response = await self.search.call(
            stub.ListCorpora(search_pb2.ListCorporaRequest(), timeout=self.search.timeout_s)
        )
        for info in response.corpora:
            if info.corpus == name:
                break
        else:
            raise NotFoundError(f"corpus {name!r} is not indexed ({self.search.where} lists its corpora)")
        if sae_id not in info.sae_ids:
            indexed = ", ".join(info.sae_ids) or "none"
            raise FailedPreconditionError(
                f"corpus {name!r} has no latents of SAE {sae_id!r} (it has: {indexed}); "
                "index it with that SAE first"
            )
        return CorpusFacts(info.corpus, int(info.documents))

    async def activation_batches(self, corpus: str, sae: SaeFacts) -> AsyncIterator[sp.csr_array]:
        """The corpus's binary activations under the SAE, one (documents, num_latents) CSR block per
        ExportActivations message, in the order search sends them."""
        stub = search_pb2_grpc.SearchServiceStub(self.search.channel)
        request = search_pb2.ExportActivationsRequest(
            corpus=corpus, sae_id=sae.sae_id, batch_size=EXPORT_BATCH
        )
        try:
            async for message in stub.ExportActivations(request, timeout=self.export_timeout_s):
                yield self._block(message, sae.num_latents)
        except aio.AioRpcError as error:
            raise self.search.error(error) from None

    def _block(self, message: search_pb2.ExportActivationsResponse, num_latents: int) -> sp.csr_array:
        rows = []
        try:
            rows = [from_sparse_vector(latents, dim=num_latents) for latents in message.latents]
        except ArrayFormatError as error:
            raise UnavailableError(f"{self.search.where} sent malformed activations: {error}") from None
        width = max((len(indices) for indices, _ in rows), default=0)
        # Padded with value 0, which never fires: activations_from_topk keeps the one firing rule.
        indices = np.zeros((len(rows), width), dtype=np.int64)
        values = np.zeros((len(rows), width), dtype=np.float32)
        for row, (row_indices, row_values) in enumerate(rows):
            indices[row, : len(row_indices)] = row_indices
            values[row, : len(row_values)] = row_values
        return activations_from_topk(indices, num_latents, values)

    # -- labelling -------------------------------------------------------------------------------

    async def labels(self, sae_id: str, features: Sequence[int]) -> dict[int, MemberLabel]:
        """The stored labels of those ``features`` that have one; empty (logged) when the labelling
        service cannot answer: a label is a courtesy here, never a reason to fail."""
        stub = labelling_pb2_grpc.LabellingServiceStub(self.labelling.channel)
        unique = list(dict.fromkeys(int(f) for f in features))
        found: dict[int, MemberLabel] = {}
        try:
            for start in range(0, len(unique), LABELS_BATCH):
                chunk = unique[start : start + LABELS_BATCH]
                request = labelling_pb2.GetLabelsRequest(sae_id=sae_id, features=chunk)
                response = await self.labelling.call(
                    stub.GetLabels(request, timeout=self.labelling.timeout_s)
                )
                for label in response.labels:
                    found[int(label.feature)] = MemberLabel(label.label, float(label.embedding_auroc))
        except ServiceError as error:
            logger.warning("feature labels of SAE %r left out: %s", sae_id, error)
        return found

    def label_families(
        self, request: labelling_pb2.LabelFamiliesRequest
    ) -> AsyncIterator[labelling_pb2.LabelFamiliesResponse]:
        """The labelling service's LabelFamilies stream (failures raised as the peer's errors)."""
        stub = labelling_pb2_grpc.LabellingServiceStub(self.labelling.channel)
        return self._stream(stub.LabelFamilies(request, timeout=self.labelling_timeout_s))

    async def _stream(
        self, call: AsyncIterable[labelling_pb2.LabelFamiliesResponse]
    ) -> AsyncIterator[labelling_pb2.LabelFamiliesResponse]:
        try:
            async for message in call:
                yield message
        except aio.AioRpcError as error:
            raise self.labelling.error(error) from None

    async def close(self) -> None:
        await self.search.close()
        await self.sae.close()
        await self.labelling.close()
