"""The SearchService: checks each request, hands it to indexing, querying or feature documents."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from grpc import aio
from typing_extensions import override

from featurelens.corpus import Record
from featurelens.kit import InvalidArgumentError, UnavailableError
from featurelens.services.search import attaching, convert, validation
from featurelens.services.search.corpora import Corpora
from featurelens.services.search.dependencies import Dependencies
from featurelens.services.search.documents import FeatureDocuments
from featurelens.services.search.explain import LabelLookup, NoLabels
from featurelens.services.search.families import FamilyExpander, NoFamilies
from featurelens.services.search.indexing import Indexer
from featurelens.services.search.jobs import check_setup
from featurelens.services.search.phrases import NoPhrases, PhraseResolver
from featurelens.services.search.querying import Searcher
from featurelens.services.search.settings import SearchSettings
from featurelens.store import DocumentStore
from featurelens.v1 import search_pb2, search_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name
#: Most documents one ExportActivations message carries, and one DeleteDocuments call deletes.
MAX_EXPORT_BATCH = 10_000
MAX_DELETE_IDS = 10_000

StoreOpener = Callable[[], DocumentStore]


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    """Indexes corpora and searches them, calling the encoder and sae services.

    ``open_store`` opens the document store; the server calls ``start()``, which opens it in a
    worker thread, and the service turns SERVING once it is open. ``labels`` names features in
    explanations and steered features, ``phrases`` resolves phrase interventions and
    ``families`` expands family interventions and names the families of explaining features (the
    defaults give no labels or families and refuse phrase and family targets;
    ``__main__.build_servicer`` wires the labelling and family services).
    """

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(
        self,
        open_store: StoreOpener,
        dependencies: Dependencies,
        settings: SearchSettings,
        labels: LabelLookup | None = None,
        families: FamilyExpander | None = None,
        phrases: PhraseResolver | None = None,
    ) -> None:
        self._open_store = open_store
        self.dependencies = dependencies
        self.settings = settings
        self.labels = labels or NoLabels()
        self.families = families or NoFamilies()
        self.phrases = phrases or NoPhrases()
        self.limits = validation.Limits(max_top_k=settings.max_top_k, max_offset=settings.max_offset)
        self._corpora: Corpora | None = None

    # -- lifecycle (the kit's Servicer protocol) --------------------------------------------

    def add_to_server(self, server: aio.Server) -> None:
        search_pb2_grpc.add_SearchServiceServicer_to_server(self, server)

    async def start(self) -> None:
        """Open the document store (and check it answers)."""
        store = await asyncio.to_thread(self._open_store)
        corpora = Corpora(store)
        names = await corpora.run(store.list_collections)
        self._corpora = corpora
        logger.info(
            "document store open (%s, %d corpora); encoder at %s, sae at %s, labelling at %s, family at %s",
            type(store).__name__,
            len(names),
            self.dependencies.encoder.address,
            self.dependencies.sae.address,
            self.dependencies.labelling.address,
            self.dependencies.family.address,
        )

    async def close(self) -> None:
        await self.dependencies.close()
        if self._corpora is not None:
            await self._corpora.close()
            self._corpora = None

    async def unready_reason(self) -> str | None:
        """None while the document store answers; else why not (the kit's readiness probe turns
        health NOT_SERVING meanwhile, see ``featurelens.kit.readiness``)."""
        corpora = self._corpora
        if corpora is None:
            return "its document store is not open yet"
        try:
            await corpora.run(corpora.store.list_collections)
        except UnavailableError as error:
            return str(error)
        return None

    @property
    def corpora(self) -> Corpora:
        if self._corpora is None:
            raise UnavailableError("the search service is still opening its document store; retry shortly")
        return self._corpora

    # -- RPCs ---------------------------------------------------------------------------------

    @override
    async def IndexDocuments(
        self, request_iterator: AsyncIterator[search_pb2.IndexDocumentsRequest], context: aio.ServicerContext
    ) -> AsyncIterator[search_pb2.IndexDocumentsResponse]:
        corpora = self.corpora
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("message") != "setup":
            raise InvalidArgumentError("the first message of IndexDocuments must be an IndexSetup")
        job = check_setup(first.setup, self.settings.corpus_roots, self.settings.index_batch_size)
        streamed = None if (job.corpus_path or job.sparse_only) else _streamed(request_iterator)
        indexer = Indexer(corpora, self.dependencies, self.settings.optimize_after_docs)
        async for response in indexer.run(job, streamed):
            yield response

    @override
    async def Search(
        self, request: search_pb2.SearchRequest, context: aio.ServicerContext
    ) -> search_pb2.SearchResponse:
        started = time.perf_counter()
        query = validation.search_query(request, self.limits)
        searcher = Searcher(self.corpora, self.dependencies, self.labels, self.families, self.phrases)
        response = await searcher.search(query)
        response.took_ms = (time.perf_counter() - started) * 1000
        return response

    @override
    async def TopDocuments(
        self, request: search_pb2.TopDocumentsRequest, context: aio.ServicerContext
    ) -> search_pb2.TopDocumentsResponse:
        corpus = validation.corpus_name(request.corpus)
        n = validation.count(request.n, "n", self.settings.max_top_k)
        documents = await self._documents().top(
            corpus, request.sae_id, request.feature, n, request.with_text, request.with_embedding
        )
        return search_pb2.TopDocumentsResponse(documents=documents)

    @override
    async def SampleDocuments(
        self, request: search_pb2.SampleDocumentsRequest, context: aio.ServicerContext
    ) -> search_pb2.SampleDocumentsResponse:
        corpus = validation.corpus_name(request.corpus)
        n = validation.count(request.n, "n", self.settings.max_top_k)
        near = validation.near_vector(request)
        documents = self._documents()
        if near is not None:
            found = await documents.nearest_silent(
                corpus, request.sae_id, request.feature, n, near, request.with_text, request.with_embedding
            )
        else:
            found = await documents.sample(
                corpus,
                request.sae_id,
                request.feature,
                n,
                request.firing,
                request.seed,
                request.with_text,
                request.with_embedding,
            )
        return search_pb2.SampleDocumentsResponse(documents=found)

    @override
    async def ExportActivations(
        self, request: search_pb2.ExportActivationsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[search_pb2.ExportActivationsResponse]:
        corpus = validation.corpus_name(request.corpus)
        if request.batch_size > MAX_EXPORT_BATCH:
            raise InvalidArgumentError(f"batch_size is {request.batch_size}; the limit is {MAX_EXPORT_BATCH}")
        async for response in self._documents().export(corpus, request.sae_id, request.batch_size or 1000):
            yield response

    @override
    async def ListCorpora(
        self, request: search_pb2.ListCorporaRequest, context: aio.ServicerContext
    ) -> search_pb2.ListCorporaResponse:
        corpora = await self.corpora.all()
        return search_pb2.ListCorporaResponse(corpora=[convert.corpus_info(c) for c in corpora])

    @override
    async def DeleteDocuments(
        self, request: search_pb2.DeleteDocumentsRequest, context: aio.ServicerContext
    ) -> search_pb2.DeleteDocumentsResponse:
        corpus = validation.corpus_name(request.corpus)
        if len(request.doc_ids) > MAX_DELETE_IDS:
            raise InvalidArgumentError(
                f"{len(request.doc_ids):,} doc ids; the limit is {MAX_DELETE_IDS:,} per call"
            )
        if any(not doc_id for doc_id in request.doc_ids):
            raise InvalidArgumentError("doc_ids holds an empty id")
        await self.corpora.get(corpus)
        deleted = await self.corpora.run(self.corpora.store.delete, corpus, list(request.doc_ids))
        return search_pb2.DeleteDocumentsResponse(deleted=deleted)

    @override
    async def AttachSae(
        self, request: search_pb2.AttachSaeRequest, context: aio.ServicerContext
    ) -> AsyncIterator[search_pb2.AttachSaeResponse]:
        async for response in attaching.run_attach(self.corpora, self.dependencies, request):
            yield response

    @override
    async def DetachSae(
        self, request: search_pb2.DetachSaeRequest, context: aio.ServicerContext
    ) -> search_pb2.DetachSaeResponse:
        return await attaching.run_detach(self.corpora, request)

    def _documents(self) -> FeatureDocuments:
        return FeatureDocuments(self.corpora, self.dependencies)


async def _streamed(requests: AsyncIterator[search_pb2.IndexDocumentsRequest]) -> AsyncIterator[list[Record]]:
    """The documents of the messages after the setup, as Records."""
    async for message in requests:
        if message.WhichOneof("message") != "documents":
            raise InvalidArgumentError("only the first message of IndexDocuments may be an IndexSetup")
        yield [convert.record(document) for document in message.documents.documents]
