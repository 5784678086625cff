"""Calls to the search, encoder and sae services, typed for the labelling service.

Each is a kit ``Peer`` (deadline, request id passed on, failures as service errors that name the
peer). ``SearchDocuments`` is the core's ``DocumentSource`` over the search service: a
feature's top documents, seeded samples, and the hard negatives nearest a vector, each with its
text and stored embedding. ``EncoderEmbedder`` is the core's ``Embedder`` over the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from grpc import aio

from featurelens.interp.types import ExampleDocument, Vector
from featurelens.kit import FailedPreconditionError, NotFoundError, UnavailableError
from featurelens.kit.peers import Peer
from featurelens.v1 import (
    encoder_pb2,
    encoder_pb2_grpc,
    sae_pb2,
    sae_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from featurelens.wire.arrays import ArrayFormatError, from_dense_matrix, from_dense_vector, to_dense_vector

#: Documents per ExportActivations message when counting where features fire.
EXPORT_BATCH = 5000
#: Random documents whose embeddings tell the offline labeller what the corpus at large is like.
BACKGROUND_DOCUMENTS = 256


@dataclass(frozen=True)
class CorpusFacts:
    """What labelling needs to know about an indexed corpus."""

    name: str
    documents: int
    dim: int
    embedding_model: str
    sae_ids: tuple[str, ...]


@dataclass(frozen=True)
class SaeFacts:
    """What labelling needs to know about an SAE."""

    sae_id: str
    num_latents: int
    embedding_model: str


class Peers:
    """The three services the labelling service calls."""

    def __init__(self, search: Peer, encoder: Peer, sae: Peer) -> None:
        self.search = search
        self.encoder = encoder
        self.sae = sae

    @classmethod
    def at(cls, search: str, encoder: str, sae: str, timeout_s: float) -> Peers:
        return cls(
            Peer("search", search, timeout_s),
            Peer("encoder", encoder, timeout_s),
            Peer("sae", sae, timeout_s),
        )

    async def corpus(self, name: str, sae_id: str) -> CorpusFacts:
        """The corpus, which must hold the SAE's latents (NOT_FOUND / FAILED_PRECONDITION otherwise)."""
        stub = search_pb2_grpc.SearchServiceStub(self.search.channel)
        response = await self.search.call(
            stub.ListCorpora(search_pb2.ListCorporaRequest(), timeout=self.search.timeout_s)
        )
        for info in response.corpora:
            if info.corpus == name:
                facts = CorpusFacts(
                    info.corpus, info.documents, info.dim, info.embedding_model, tuple(info.sae_ids)
                )
                break
        else:
            raise NotFoundError(f"corpus {name!r} is not indexed ({self.search.where} lists its corpora)")
        if sae_id not in facts.sae_ids:
            indexed = ", ".join(facts.sae_ids) or "none"
            raise FailedPreconditionError(
                f"corpus {name!r} has no latents of SAE {sae_id!r} (it has: {indexed}); "
                "index it with that SAE first"
            )
        return facts

    async def sae_facts(self, sae_id: str) -> SaeFacts:
        """The SAE's size and embedding model (NOT_FOUND from the sae service for an unknown SAE)."""
        stub = sae_pb2_grpc.SaeServiceStub(self.sae.channel)
        response = await self.sae.call(
            stub.GetSae(sae_pb2.GetSaeRequest(sae_id=sae_id), timeout=self.sae.timeout_s)
        )
        sae = response.sae
        return SaeFacts(sae.sae_id, int(sae.config.num_latents), sae.embedding_model)

    async def firing_counts(self, corpus: str, sae_id: str, num_latents: int) -> npt.NDArray[np.int64]:
        """On how many documents of the corpus each latent fires (one pass over its latents)."""
        stub = search_pb2_grpc.SearchServiceStub(self.search.channel)
        request = search_pb2.ExportActivationsRequest(corpus=corpus, sae_id=sae_id, batch_size=EXPORT_BATCH)
        counts = np.zeros(num_latents, dtype=np.int64)
        try:
            async for message in stub.ExportActivations(request, timeout=max(self.search.timeout_s, 600.0)):
                for latents in message.latents:
                    indices = np.fromiter(latents.indices, dtype=np.int64, count=len(latents.indices))
                    values = np.fromiter(latents.values, dtype=np.float32, count=len(latents.values))
                    fired = indices[(values > 0) & (indices < num_latents)]
                    counts[fired] += 1
        except aio.AioRpcError as error:
            raise self.search.error(error) from None
        return counts

    async def embed(self, texts: Sequence[str], model: str) -> npt.NDArray[np.float32]:
        """Unit embeddings of ``texts`` with ``model``, one row each."""
        stub = encoder_pb2_grpc.EncoderServiceStub(self.encoder.channel)
        request = encoder_pb2.EmbedRequest(texts=list(texts), model=model)
        response = await self.encoder.call(stub.Embed(request, timeout=self.encoder.timeout_s))
        try:
            matrix = from_dense_matrix(response.embeddings)
        except ArrayFormatError as error:
            raise UnavailableError(f"{self.encoder.where} sent a malformed matrix: {error}") from None
        if matrix.shape[0] != len(texts):
            raise UnavailableError(
                f"{self.encoder.where} returned {matrix.shape[0]} rows for {len(texts)} texts"
            )
        return matrix

    async def close(self) -> None:
        await self.search.close()
        await self.encoder.close()
        await self.sae.close()


class EncoderEmbedder:
    """The core's ``Embedder`` over the encoder service, with one model (the corpus's)."""

    def __init__(self, peers: Peers, model: str) -> None:
        self.peers = peers
        self.model = model

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return await self.peers.embed(texts, self.model)


def document_text(document: search_pb2.ActivatedDocument) -> str:
    """What a prompt shows of a document: its title, then its text."""
    title = document.document.title.strip()
    text = document.document.text.strip()
    return f"{title}. {text}" if title and text else title or text


class SearchDocuments:
    """The core's ``DocumentSource`` over the search service, for one corpus and SAE."""

    def __init__(self, peers: Peers, corpus: str, sae_id: str) -> None:
        self.peers = peers
        self.corpus = corpus
        self.sae_id = sae_id

    @property
    def _stub(self) -> search_pb2_grpc.SearchServiceAsyncStub:
        return search_pb2_grpc.SearchServiceStub(self.peers.search.channel)

    async def top(self, feature: int, n: int) -> list[ExampleDocument]:
        request = search_pb2.TopDocumentsRequest(
            corpus=self.corpus, sae_id=self.sae_id, feature=feature, n=n, with_text=True, with_embedding=True
        )
        search = self.peers.search
        response = await search.call(self._stub.TopDocuments(request, timeout=search.timeout_s))
        return [self._example(d) for d in response.documents]

    async def sample(self, feature: int, n: int, firing: bool, seed: int) -> list[ExampleDocument]:
        request = search_pb2.SampleDocumentsRequest(
            corpus=self.corpus,
            sae_id=self.sae_id,
            feature=feature,
            n=n,
            firing=firing,
            seed=seed,
            with_text=True,
            with_embedding=True,
        )
        search = self.peers.search
        response = await search.call(self._stub.SampleDocuments(request, timeout=search.timeout_s))
        return [self._example(d) for d in response.documents]

    async def nearest_non_firing(self, feature: int, vector: Vector, n: int) -> list[ExampleDocument]:
        request = search_pb2.SampleDocumentsRequest(
            corpus=self.corpus,
            sae_id=self.sae_id,
            feature=feature,
            n=n,
            firing=False,
            with_text=True,
            with_embedding=True,
            near=to_dense_vector(vector),
        )
        search = self.peers.search
        response = await search.call(self._stub.SampleDocuments(request, timeout=search.timeout_s))
        return [self._example(d) for d in response.documents]

    async def background(
        self, feature: int, seed: int, n: int = BACKGROUND_DOCUMENTS
    ) -> list[ExampleDocument]:
        """About ``n`` documents drawn at random from the corpus, with texts and embeddings: a seeded
        sample of the documents on which ``feature`` does not fire (all but a few per cent of it)."""
        documents = await self.sample(feature, n, firing=False, seed=seed)
        return [d for d in documents if d.embedding is not None]

    def _example(self, document: search_pb2.ActivatedDocument) -> ExampleDocument:
        embedding = None
        if document.HasField("embedding"):
            try:
                embedding = np.asarray(from_dense_vector(document.embedding), dtype=np.float32)
            except ArrayFormatError as error:
                raise UnavailableError(f"{self.peers.search.where} sent a bad embedding: {error}") from None
        return ExampleDocument(
            document.document.id, document_text(document), float(document.activation), embedding
        )
