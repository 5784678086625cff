"""The search service: indexing corpora, dense / sparse / hybrid / steered search, feature documents."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence

import numpy.typing as npt

from featurelens.client import convert
from featurelens.client.transport import AsyncTransport, SyncTransport
from featurelens.client.types import (
    ActivatedDocument,
    ActivationBatch,
    CorpusInfo,
    DocumentLike,
    Filter,
    Fusion,
    IndexProgress,
    Intervention,
    SearchMode,
    SearchResult,
)
from featurelens.v1 import search_pb2, search_pb2_grpc

DOCUMENTS_PER_MESSAGE = 256


def _check_index_source(documents: object, corpus_path: str | None) -> None:
    if documents is not None and corpus_path:
        raise ValueError("give documents or corpus_path, not both")


class SearchClient:
    """Indexes corpora and searches them, optionally steered by features or families.

    ``sae_id=None`` everywhere means the server's default SAE.
    """

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport
        self._stub = search_pb2_grpc.SearchServiceStub(transport.channel)

    def index_documents(
        self,
        corpus: str,
        documents: Iterable[DocumentLike] | None = None,
        *,
        corpus_path: str | None = None,
        embedding_model: str | None = None,
        sae_ids: Sequence[str] = (),
        batch_size: int | None = None,
        limit: int | None = None,
        sparse_only: bool = False,
        embeddings_path: str | None = None,
        documents_per_message: int = DOCUMENTS_PER_MESSAGE,
        timeout_s: float | None = None,
    ) -> Iterator[IndexProgress]:
        """Index streamed ``documents`` (``Document`` or ``featurelens.corpus.Record``), or a corpus
        file the server can read (``corpus_path``); yields progress as the server reports it.

        ``embeddings_path`` names an embedding store on the server whose vectors are used for the
        documents it holds, so they are not embedded again."""
        _check_index_source(documents, corpus_path)
        setup = convert.index_setup(
            corpus,
            corpus_path=corpus_path,
            embedding_model=embedding_model,
            sae_ids=sae_ids,
            batch_size=batch_size,
            limit=limit,
            sparse_only=sparse_only,
            embeddings_path=embeddings_path,
        )
        requests = convert.index_requests(setup, documents or (), documents_per_message)
        for response in self._transport.bidi_stream(self._stub.IndexDocuments, requests, timeout_s):
            yield convert.index_progress(response)

    def search(
        self,
        corpus: str,
        text: str | None = None,
        *,
        vector: npt.ArrayLike | None = None,
        mode: SearchMode = "dense",
        sae_id: str | None = None,
        fusion: Fusion = "rrf",
        dense_weight: float | None = None,
        sparse_weight: float | None = None,
        filter: Filter | None = None,
        top_k: int = 10,
        offset: int = 0,
        explain: bool = False,
        interventions: Iterable[Intervention] = (),
        with_rank_changes: bool = False,
        with_text: bool = False,
    ) -> SearchResult:
        """Search ``corpus`` by ``text`` or by a query ``vector``, optionally steered."""
        request = convert.search_request(
            corpus,
            text=text,
            vector=vector,
            mode=mode,
            sae_id=sae_id,
            fusion=fusion,
            dense_weight=dense_weight,
            sparse_weight=sparse_weight,
            filter=filter,
            top_k=top_k,
            offset=offset,
            explain=explain,
            interventions=interventions,
            with_rank_changes=with_rank_changes,
            with_text=with_text,
        )
        return convert.search_result(self._transport.unary(self._stub.Search, request))

    def top_documents(
        self, corpus: str, feature: int, *, sae_id: str | None = None, n: int = 10, with_text: bool = False
    ) -> list[ActivatedDocument]:
        """The documents on which ``feature`` fires most strongly, strongest first."""
        request = search_pb2.TopDocumentsRequest(
            corpus=corpus, sae_id=sae_id or "", feature=feature, n=n, with_text=with_text
        )
        response = self._transport.unary(self._stub.TopDocuments, request)
        return convert.activated_documents(response)

    def sample_documents(
        self,
        corpus: str,
        feature: int,
        *,
        sae_id: str | None = None,
        n: int = 10,
        firing: bool = True,
        seed: int = 0,
        with_text: bool = False,
    ) -> list[ActivatedDocument]:
        """A seeded random sample of documents on which ``feature`` fires (or, ``firing=False``, not)."""
        request = search_pb2.SampleDocumentsRequest(
            corpus=corpus,
            sae_id=sae_id or "",
            feature=feature,
            n=n,
            firing=firing,
            seed=seed,
            with_text=with_text,
        )
        response = self._transport.unary(self._stub.SampleDocuments, request)
        return convert.activated_documents(response)

    def export_activations(
        self,
        corpus: str,
        *,
        sae_id: str | None = None,
        batch_size: int | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[ActivationBatch]:
        """Every document's SAE latents, in batches."""
        request = search_pb2.ExportActivationsRequest(
            corpus=corpus, sae_id=sae_id or "", batch_size=batch_size or 0
        )
        for response in self._transport.server_stream(self._stub.ExportActivations, request, timeout_s):
            yield convert.activation_batch(response)

    def list_corpora(self) -> list[CorpusInfo]:
        """The indexed corpora."""
        response = self._transport.unary(self._stub.ListCorpora, search_pb2.ListCorporaRequest())
        return convert.corpus_infos(response)

    def delete_documents(self, corpus: str, doc_ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many existed and were deleted."""
        request = search_pb2.DeleteDocumentsRequest(
            corpus=corpus, doc_ids=convert.text_list(doc_ids, "doc_ids")
        )
        return self._transport.unary(self._stub.DeleteDocuments, request).deleted


class AsyncSearchClient:
    """Indexes corpora and searches them, optionally steered by features or families (asyncio)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    @property
    def _stub(self) -> search_pb2_grpc.SearchServiceAsyncStub:
        return self._transport.stub("search", lambda channel: search_pb2_grpc.SearchServiceStub(channel))

    async def index_documents(
        self,
        corpus: str,
        documents: Iterable[DocumentLike] | AsyncIterable[DocumentLike] | None = None,
        *,
        corpus_path: str | None = None,
        embedding_model: str | None = None,
        sae_ids: Sequence[str] = (),
        batch_size: int | None = None,
        limit: int | None = None,
        sparse_only: bool = False,
        embeddings_path: str | None = None,
        documents_per_message: int = DOCUMENTS_PER_MESSAGE,
        timeout_s: float | None = None,
    ) -> AsyncIterator[IndexProgress]:
        """Index streamed ``documents`` or a corpus file the server can read; yields progress."""
        _check_index_source(documents, corpus_path)
        setup = convert.index_setup(
            corpus,
            corpus_path=corpus_path,
            embedding_model=embedding_model,
            sae_ids=sae_ids,
            batch_size=batch_size,
            limit=limit,
            sparse_only=sparse_only,
            embeddings_path=embeddings_path,
        )
        if isinstance(documents, AsyncIterable):
            requests: (
                Iterator[search_pb2.IndexDocumentsRequest] | AsyncIterator[search_pb2.IndexDocumentsRequest]
            ) = convert.index_requests_async(setup, documents, documents_per_message)
        else:
            requests = convert.index_requests(setup, documents or (), documents_per_message)
        async for response in self._transport.bidi_stream(self._stub.IndexDocuments, requests, timeout_s):
            yield convert.index_progress(response)

    async def search(
        self,
        corpus: str,
        text: str | None = None,
        *,
        vector: npt.ArrayLike | None = None,
        mode: SearchMode = "dense",
        sae_id: str | None = None,
        fusion: Fusion = "rrf",
        dense_weight: float | None = None,
        sparse_weight: float | None = None,
        filter: Filter | None = None,
        top_k: int = 10,
        offset: int = 0,
        explain: bool = False,
        interventions: Iterable[Intervention] = (),
        with_rank_changes: bool = False,
        with_text: bool = False,
    ) -> SearchResult:
        """Search ``corpus`` by ``text`` or by a query ``vector``, optionally steered."""
        request = convert.search_request(
            corpus,
            text=text,
            vector=vector,
            mode=mode,
            sae_id=sae_id,
            fusion=fusion,
            dense_weight=dense_weight,
            sparse_weight=sparse_weight,
            filter=filter,
            top_k=top_k,
            offset=offset,
            explain=explain,
            interventions=interventions,
            with_rank_changes=with_rank_changes,
            with_text=with_text,
        )
        return convert.search_result(await self._transport.unary(self._stub.Search, request))

    async def top_documents(
        self, corpus: str, feature: int, *, sae_id: str | None = None, n: int = 10, with_text: bool = False
    ) -> list[ActivatedDocument]:
        """The documents on which ``feature`` fires most strongly, strongest first."""
        request = search_pb2.TopDocumentsRequest(
            corpus=corpus, sae_id=sae_id or "", feature=feature, n=n, with_text=with_text
        )
        response = await self._transport.unary(self._stub.TopDocuments, request)
        return convert.activated_documents(response)

    async def sample_documents(
        self,
        corpus: str,
        feature: int,
        *,
        sae_id: str | None = None,
        n: int = 10,
        firing: bool = True,
        seed: int = 0,
        with_text: bool = False,
    ) -> list[ActivatedDocument]:
        """A seeded random sample of documents on which ``feature`` fires (or, ``firing=False``, not)."""
        request = search_pb2.SampleDocumentsRequest(
            corpus=corpus,
            sae_id=sae_id or "",
            feature=feature,
            n=n,
            firing=firing,
            seed=seed,
            with_text=with_text,
        )
        response = await self._transport.unary(self._stub.SampleDocuments, request)
        return convert.activated_documents(response)

    async def export_activations(
        self,
        corpus: str,
        *,
        sae_id: str | None = None,
        batch_size: int | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[ActivationBatch]:
        """Every document's SAE latents, in batches."""
        request = search_pb2.ExportActivationsRequest(
            corpus=corpus, sae_id=sae_id or "", batch_size=batch_size or 0
        )
        async for response in self._transport.server_stream(self._stub.ExportActivations, request, timeout_s):
            yield convert.activation_batch(response)

    async def list_corpora(self) -> list[CorpusInfo]:
        """The indexed corpora."""
        response = await self._transport.unary(self._stub.ListCorpora, search_pb2.ListCorporaRequest())
        return convert.corpus_infos(response)

    async def delete_documents(self, corpus: str, doc_ids: Sequence[str]) -> int:
        """Delete documents by id; returns how many existed and were deleted."""
        request = search_pb2.DeleteDocumentsRequest(
            corpus=corpus, doc_ids=convert.text_list(doc_ids, "doc_ids")
        )
        return (await self._transport.unary(self._stub.DeleteDocuments, request)).deleted
