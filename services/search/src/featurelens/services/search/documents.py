"""A feature's documents, for the labelling and family services: top-activating ones, seeded
samples of firing or non-firing ones, the non-firing ones nearest a vector (hard negatives), each
with its stored embedding on request, and every document's latents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from featurelens.kit import InvalidArgumentError
from featurelens.services.search import convert
from featurelens.services.search.corpora import Corpora, Corpus
from featurelens.services.search.dependencies import Dependencies
from featurelens.services.search.saes import resolve_sae
from featurelens.store import DocFilter, FeatureRef, QueryRequest, SearchMode, SparseVec, StoredPoint
from featurelens.v1 import search_pb2
from featurelens.wire.arrays import to_dense_vector


class FeatureDocuments:
    """Reads a feature's documents out of the corpora."""

    def __init__(self, corpora: Corpora, dependencies: Dependencies) -> None:
        self.corpora = corpora
        self.dependencies = dependencies

    async def _feature(self, corpus_name: str, sae_id: str, feature: int) -> tuple[Corpus, str]:
        corpus = await self.corpora.get(corpus_name)
        sae_id = await resolve_sae(corpus, sae_id, self.dependencies)
        corpus.check_feature(sae_id, feature)
        return corpus, sae_id

    async def top(
        self,
        corpus_name: str,
        sae_id: str,
        feature: int,
        n: int,
        with_text: bool,
        with_embedding: bool = False,
    ) -> list[search_pb2.ActivatedDocument]:
        """The ``n`` documents on which the feature fires most strongly, strongest first."""
        corpus, sae_id = await self._feature(corpus_name, sae_id, feature)
        # A sparse query on the one latent with value 1 scores each document by its activation.
        request = QueryRequest(
            mode=SearchMode.SPARSE,
            sparse=SparseVec([feature], [1.0]),
            sae_id=sae_id,
            top_k=n,
            with_payload=convert.hit_fields(with_text),
            with_dense=with_embedding,
        )
        hits = await self.corpora.search(corpus.name, request)
        return [_activated(h.doc_id, h.payload, h.score, h.dense) for h in hits if h.score > 0]

    async def nearest_silent(
        self,
        corpus_name: str,
        sae_id: str,
        feature: int,
        n: int,
        near: npt.NDArray[np.float32],
        with_text: bool,
        with_embedding: bool = False,
    ) -> list[search_pb2.ActivatedDocument]:
        """The ``n`` documents on which the feature does not fire that are nearest ``near`` by
        cosine, nearest first (hard negatives)."""
        corpus, sae_id = await self._feature(corpus_name, sae_id, feature)
        if near.shape[0] != corpus.dim:
            raise InvalidArgumentError(
                f"near has {near.shape[0]} dims, but corpus {corpus.name!r} holds {corpus.dim}-dim embeddings"
            )
        request = QueryRequest(
            mode=SearchMode.DENSE,
            dense=near,
            top_k=n,
            filter=DocFilter(must_not_fire=(FeatureRef(sae_id, feature),)),
            with_payload=convert.hit_fields(with_text),
            with_dense=with_embedding,
        )
        hits = await self.corpora.search(corpus.name, request)
        return [_activated(h.doc_id, h.payload, 0.0, h.dense) for h in hits]

    async def sample(
        self,
        corpus_name: str,
        sae_id: str,
        feature: int,
        n: int,
        firing: bool,
        seed: int,
        with_text: bool,
        with_embedding: bool = False,
    ) -> list[search_pb2.ActivatedDocument]:
        """A seeded sample of documents on which the feature fires (or does not)."""
        corpus, sae_id = await self._feature(corpus_name, sae_id, feature)
        ref = (FeatureRef(sae_id, feature),)
        doc_filter = DocFilter(must_fire=ref) if firing else DocFilter(must_not_fire=ref)
        points = await self.corpora.run(
            self.corpora.store.sample,
            corpus.name,
            n,
            seed,
            filter=doc_filter,
            with_payload=convert.hit_fields(with_text),
            with_dense=with_embedding,
            with_sparse=[sae_id],
        )
        return [_activated(p.doc_id, p.payload, _activation(p, sae_id, feature), p.dense) for p in points]

    async def export(
        self, corpus_name: str, sae_id: str, batch_size: int
    ) -> AsyncIterator[search_pb2.ExportActivationsResponse]:
        """Every document's latents of the SAE, ``batch_size`` documents per message."""
        corpus = await self.corpora.get(corpus_name)
        sae_id = await resolve_sae(corpus, sae_id, self.dependencies)
        offset: str | None = None
        while True:
            page = await self.corpora.run(
                self.corpora.store.scroll,
                corpus.name,
                limit=batch_size,
                offset=offset,
                with_payload=False,
                with_sparse=[sae_id],
            )
            if page.points:
                empty = SparseVec([], [])
                yield search_pb2.ExportActivationsResponse(
                    doc_ids=[p.doc_id for p in page.points],
                    latents=[convert.sparse_vector(p.sparse.get(sae_id, empty)) for p in page.points],
                )
            if page.next_offset is None:
                return
            offset = page.next_offset


def _activated(
    doc_id: str, payload: Mapping[str, Any], activation: float, dense: npt.NDArray[np.float32] | None
) -> search_pb2.ActivatedDocument:
    document = search_pb2.ActivatedDocument(document=convert.document(doc_id, payload), activation=activation)
    if dense is not None:
        document.embedding.CopyFrom(to_dense_vector(dense))
    return document


def _activation(point: StoredPoint, sae_id: str, feature: int) -> float:
    latents = point.sparse.get(sae_id)
    if latents is None:
        return 0.0
    where = (latents.indices == feature).nonzero()[0]
    return float(latents.values[where[0]]) if where.size else 0.0
