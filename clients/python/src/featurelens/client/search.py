"""The search service: indexing corpora, dense / sparse / hybrid / steered search, feature documents."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy.typing as npt

from featurelens.client import convert
from featurelens.client.options import NOT_GIVEN, NotGiven, stream_timeout
from featurelens.client.retries import rpc_path
from featurelens.client.transport import AsyncTransport, SyncTransport
from featurelens.client.types import (
    ActivatedDocument,
    ActivationBatch,
    AttachUpdate,
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

_SERVICE = "featurelens.v1.SearchService"
_SEARCH = rpc_path(_SERVICE, "Search")
_TOP_DOCUMENTS = rpc_path(_SERVICE, "TopDocuments")
_SAMPLE_DOCUMENTS = rpc_path(_SERVICE, "SampleDocuments")
_EXPORT_ACTIVATIONS = rpc_path(_SERVICE, "ExportActivations")
_LIST_CORPORA = rpc_path(_SERVICE, "ListCorpora")
_DELETE_DOCUMENTS = rpc_path(_SERVICE, "DeleteDocuments")
_ATTACH_SAE = rpc_path(_SERVICE, "AttachSae")
_DETACH_SAE = rpc_path(_SERVICE, "DetachSae")


def _check_index_source(documents: object, corpus_path: str | None) -> None:
    if documents is not None and corpus_path:
        raise ValueError("give documents or corpus_path, not both")


class SearchClient:
    """Indexes corpora and searches them, optionally steered by features, families or phrases.

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
        timeout: float | NotGiven | None = NOT_GIVEN,
        timeout_s: float | NotGiven | None = NOT_GIVEN,
    ) -> Iterator[IndexProgress]:
        """Index streamed ``documents`` (``Document`` or ``featurelens.corpus.Record``), or a corpus
        file the server can read (``corpus_path``); yields progress as the server reports it.

        ``embeddings_path`` names an embedding store on the server whose vectors are used for the
        documents it holds, so they are not embedded again. Never retried: the documents are
        consumed as they are sent. ``timeout`` bounds the whole stream (no bound by default);
        ``timeout_s`` is its older, deprecated name."""
        _check_index_source(documents, corpus_path)
        bound = stream_timeout(timeout, timeout_s)
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
        for response in self._transport.bidi_stream(self._stub.IndexDocuments, requests, bound):
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
        qdrant_filter: Mapping[str, Any] | str | None = None,
        payload_fields: Sequence[str] = (),
        dense_vector: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> SearchResult:
        """Search ``corpus`` by ``text`` or by a query ``vector``, optionally steered.

        With ``interventions`` the result's ``steered`` names each feature steered (its label, and
        for a phrase the feature it resolved to and how well they matched); ``explain`` adds each
        hit's shared features with their labels.

        ``corpus`` may name a Qdrant collection an SAE is attached to (``attach_sae``); there
        ``qdrant_filter`` (a Qdrant filter as a dict or JSON string, ANDed with ``filter``'s
        features) filters the collection's own payload, each hit's ``document.id`` is the point id
        and ``document.payload`` holds the ``payload_fields`` asked for, and ``dense_vector`` names
        the dense vector to search (default: the one of the SAE's size).
        """
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
            qdrant_filter=qdrant_filter,
            payload_fields=payload_fields,
            dense_vector=dense_vector,
        )
        return convert.search_result(
            self._transport.unary(self._stub.Search, request, rpc=_SEARCH, timeout=timeout)
        )

    def top_documents(
        self,
        corpus: str,
        feature: int,
        *,
        sae_id: str | None = None,
        n: int = 10,
        with_text: bool = False,
        with_embedding: bool = False,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[ActivatedDocument]:
        """The documents on which ``feature`` fires most strongly, strongest first.

        ``with_embedding`` returns each document's stored embedding in ``embedding``."""
        request = search_pb2.TopDocumentsRequest(
            corpus=corpus,
            sae_id=sae_id or "",
            feature=feature,
            n=n,
            with_text=with_text,
            with_embedding=with_embedding,
        )
        response = self._transport.unary(
            self._stub.TopDocuments, request, rpc=_TOP_DOCUMENTS, timeout=timeout
        )
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
        with_embedding: bool = False,
        near: npt.ArrayLike | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[ActivatedDocument]:
        """A seeded random sample of documents on which ``feature`` fires (or, ``firing=False``, not).

        With ``firing=False`` and a ``near`` vector (of the corpus's dimension), the ``n``
        non-firing documents nearest it by cosine instead: hard negatives (``seed`` is then
        unused). ``with_embedding`` returns each document's stored embedding in ``embedding``.
        """
        request = convert.sample_documents_request(
            corpus,
            feature,
            sae_id=sae_id,
            n=n,
            firing=firing,
            seed=seed,
            with_text=with_text,
            with_embedding=with_embedding,
            near=near,
        )
        response = self._transport.unary(
            self._stub.SampleDocuments, request, rpc=_SAMPLE_DOCUMENTS, timeout=timeout
        )
        return convert.activated_documents(response)

    def export_activations(
        self,
        corpus: str,
        *,
        sae_id: str | None = None,
        batch_size: int | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        timeout_s: float | NotGiven | None = NOT_GIVEN,
    ) -> Iterator[ActivationBatch]:
        """Every document's SAE latents, in batches.

        Retried like a read until the first batch arrives, not after. ``timeout`` bounds the
        whole stream (no bound by default); ``timeout_s`` is its older, deprecated name.
        """
        bound = stream_timeout(timeout, timeout_s)
        request = search_pb2.ExportActivationsRequest(
            corpus=corpus, sae_id=sae_id or "", batch_size=batch_size or 0
        )
        for response in self._transport.server_stream(
            self._stub.ExportActivations, request, bound, rpc=_EXPORT_ACTIVATIONS
        ):
            yield convert.activation_batch(response)

    def list_corpora(self, *, timeout: float | NotGiven | None = NOT_GIVEN) -> list[CorpusInfo]:
        """The indexed corpora."""
        request = search_pb2.ListCorporaRequest()
        response = self._transport.unary(self._stub.ListCorpora, request, rpc=_LIST_CORPORA, timeout=timeout)
        return convert.corpus_infos(response)

    def delete_documents(
        self, corpus: str, doc_ids: Sequence[str], *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> int:
        """Delete documents by id; returns how many existed and were deleted.

        Never retried: an attempt that failed on the way back may have deleted them, and a
        second would report 0.
        """
        request = search_pb2.DeleteDocumentsRequest(
            corpus=corpus, doc_ids=convert.text_list(doc_ids, "doc_ids")
        )
        return self._transport.unary(
            self._stub.DeleteDocuments, request, rpc=_DELETE_DOCUMENTS, timeout=timeout
        ).deleted

    def attach_sae(
        self,
        collection: str,
        *,
        sae_id: str | None = None,
        dense_vector: str = "",
        batch_size: int | None = None,
        dry_run: bool = False,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Iterator[AttachUpdate]:
        """Attach an SAE to a Qdrant collection featurelens did not create; the plan, then progress.

        ``dense_vector`` "" is the unnamed default vector. Resumable: run it again after a failure
        and it writes only the points still without the SAE's vector. ``timeout`` bounds the whole
        stream (no bound by default).
        """
        bound = stream_timeout(timeout, NOT_GIVEN)
        request = search_pb2.AttachSaeRequest(
            collection=collection,
            sae_id=sae_id or "",
            dense_vector=dense_vector,
            batch_size=batch_size or 0,
            dry_run=dry_run,
        )
        for response in self._transport.server_stream(self._stub.AttachSae, request, bound, rpc=_ATTACH_SAE):
            yield convert.attach_update(response)

    def detach_sae(
        self, collection: str, sae_id: str, *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> bool:
        """Remove an attached SAE's sparse vector and payload key; whether it was attached."""
        request = search_pb2.DetachSaeRequest(collection=collection, sae_id=sae_id)
        return self._transport.unary(
            self._stub.DetachSae, request, rpc=_DETACH_SAE, timeout=timeout
        ).was_attached


class AsyncSearchClient:
    """Indexes corpora and searches them, optionally steered by features, families or phrases (asyncio)."""

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
        timeout: float | NotGiven | None = NOT_GIVEN,
        timeout_s: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncIterator[IndexProgress]:
        """Index streamed ``documents`` or a corpus file the server can read; yields progress."""
        _check_index_source(documents, corpus_path)
        bound = stream_timeout(timeout, timeout_s)
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
        async for response in self._transport.bidi_stream(self._stub.IndexDocuments, requests, bound):
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
        qdrant_filter: Mapping[str, Any] | str | None = None,
        payload_fields: Sequence[str] = (),
        dense_vector: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> SearchResult:
        """Search ``corpus`` by ``text`` or by a query ``vector``, optionally steered.

        With ``interventions`` the result's ``steered`` names each feature steered (its label, and
        for a phrase the feature it resolved to and how well they matched); ``explain`` adds each
        hit's shared features with their labels.

        ``corpus`` may name a Qdrant collection an SAE is attached to (``attach_sae``); there
        ``qdrant_filter`` (a Qdrant filter as a dict or JSON string, ANDed with ``filter``'s
        features) filters the collection's own payload, each hit's ``document.id`` is the point id
        and ``document.payload`` holds the ``payload_fields`` asked for, and ``dense_vector`` names
        the dense vector to search (default: the one of the SAE's size).
        """
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
            qdrant_filter=qdrant_filter,
            payload_fields=payload_fields,
            dense_vector=dense_vector,
        )
        return convert.search_result(
            await self._transport.unary(self._stub.Search, request, rpc=_SEARCH, timeout=timeout)
        )

    async def top_documents(
        self,
        corpus: str,
        feature: int,
        *,
        sae_id: str | None = None,
        n: int = 10,
        with_text: bool = False,
        with_embedding: bool = False,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[ActivatedDocument]:
        """The documents on which ``feature`` fires most strongly, strongest first.

        ``with_embedding`` returns each document's stored embedding in ``embedding``."""
        request = search_pb2.TopDocumentsRequest(
            corpus=corpus,
            sae_id=sae_id or "",
            feature=feature,
            n=n,
            with_text=with_text,
            with_embedding=with_embedding,
        )
        response = await self._transport.unary(
            self._stub.TopDocuments, request, rpc=_TOP_DOCUMENTS, timeout=timeout
        )
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
        with_embedding: bool = False,
        near: npt.ArrayLike | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[ActivatedDocument]:
        """A seeded random sample of documents on which ``feature`` fires (or, ``firing=False``, not).

        With ``firing=False`` and a ``near`` vector (of the corpus's dimension), the ``n``
        non-firing documents nearest it by cosine instead: hard negatives (``seed`` is then
        unused). ``with_embedding`` returns each document's stored embedding in ``embedding``.
        """
        request = convert.sample_documents_request(
            corpus,
            feature,
            sae_id=sae_id,
            n=n,
            firing=firing,
            seed=seed,
            with_text=with_text,
            with_embedding=with_embedding,
            near=near,
        )
        response = await self._transport.unary(
            self._stub.SampleDocuments, request, rpc=_SAMPLE_DOCUMENTS, timeout=timeout
        )
        return convert.activated_documents(response)

    async def export_activations(
        self,
        corpus: str,
        *,
        sae_id: str | None = None,
        batch_size: int | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        timeout_s: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncIterator[ActivationBatch]:
        """Every document's SAE latents, in batches.

        Retried like a read until the first batch arrives, not after. ``timeout`` bounds the
        whole stream (no bound by default); ``timeout_s`` is its older, deprecated name.
        """
        bound = stream_timeout(timeout, timeout_s)
        request = search_pb2.ExportActivationsRequest(
            corpus=corpus, sae_id=sae_id or "", batch_size=batch_size or 0
        )
        async for response in self._transport.server_stream(
            self._stub.ExportActivations, request, bound, rpc=_EXPORT_ACTIVATIONS
        ):
            yield convert.activation_batch(response)

    async def list_corpora(self, *, timeout: float | NotGiven | None = NOT_GIVEN) -> list[CorpusInfo]:
        """The indexed corpora."""
        request = search_pb2.ListCorporaRequest()
        response = await self._transport.unary(
            self._stub.ListCorpora, request, rpc=_LIST_CORPORA, timeout=timeout
        )
        return convert.corpus_infos(response)

    async def delete_documents(
        self, corpus: str, doc_ids: Sequence[str], *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> int:
        """Delete documents by id; returns how many existed and were deleted.

        Never retried: an attempt that failed on the way back may have deleted them, and a
        second would report 0.
        """
        request = search_pb2.DeleteDocumentsRequest(
            corpus=corpus, doc_ids=convert.text_list(doc_ids, "doc_ids")
        )
        return (
            await self._transport.unary(
                self._stub.DeleteDocuments, request, rpc=_DELETE_DOCUMENTS, timeout=timeout
            )
        ).deleted

    async def attach_sae(
        self,
        collection: str,
        *,
        sae_id: str | None = None,
        dense_vector: str = "",
        batch_size: int | None = None,
        dry_run: bool = False,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncIterator[AttachUpdate]:
        """Attach an SAE to a Qdrant collection featurelens did not create; the plan, then progress.

        ``dense_vector`` "" is the unnamed default vector. Resumable: run it again after a failure
        and it writes only the points still without the SAE's vector. ``timeout`` bounds the whole
        stream (no bound by default).
        """
        bound = stream_timeout(timeout, NOT_GIVEN)
        request = search_pb2.AttachSaeRequest(
            collection=collection,
            sae_id=sae_id or "",
            dense_vector=dense_vector,
            batch_size=batch_size or 0,
            dry_run=dry_run,
        )
        async for response in self._transport.server_stream(
            self._stub.AttachSae, request, bound, rpc=_ATTACH_SAE
        ):
            yield convert.attach_update(response)

    async def detach_sae(
        self, collection: str, sae_id: str, *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> bool:
        """Remove an attached SAE's sparse vector and payload key; whether it was attached."""
        request = search_pb2.DetachSaeRequest(collection=collection, sae_id=sae_id)
        response = await self._transport.unary(
            self._stub.DetachSae, request, rpc=_DETACH_SAE, timeout=timeout
        )
        return response.was_attached
