"""Helpers of the search tests: the real encoder (wordllama), sae and search servicers on loopback.

Everything is real: the wordllama model behind the encoder servicer, an SAE trained by the
library on wordllama embeddings of real astro-ph abstracts behind the sae servicer, and
qdrant-edge in a temporary folder behind the search servicer. The backend wrapper below only
counts the calls that reach the model (to prove when the encoder was not asked). The labelling
service is a small stand-in on its own loopback server (``serve_labelling``): labels from a dict,
phrases matched to labels by shared words; so is the family service (``serve_families``): families
from a dict.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from typing_extensions import override

from featurelens.corpus import Record, read_corpus
from featurelens.embedding.backends import EmbeddingBackend, EmbedResult
from featurelens.kit import GrpcServer, NotFoundError, Servicer
from featurelens.kit.peers import serve_in_process, stop_serving_in_process
from featurelens.sae import SaeConfig, TrainConfig, save_sae, train_sae
from featurelens.services.encoder.cache import MemoryEmbeddingCache
from featurelens.services.encoder.servicer import EncoderServicer
from featurelens.services.sae.registry import SaeRegistry
from featurelens.services.sae.servicer import SaeServicer
from featurelens.services.search.__main__ import build_servicer
from featurelens.services.search.families import FamilyExpander
from featurelens.services.search.servicer import SearchServicer
from featurelens.services.search.settings import SearchSettings
from featurelens.steering import FamilyMembers
from featurelens.store import DocumentStore
from featurelens.store.vectors import VectorReader
from featurelens.v1 import (
    common_pb2,
    family_pb2,
    family_pb2_grpc,
    labelling_pb2,
    labelling_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)

DATA_DIR = Path(
    os.environ.get("FEATURELENS_DATA_DIR", Path(__file__).resolve().parents[4] / "shared" / "data")
)
ASTRO = DATA_DIR / "arxiv_astro.jsonl.gz"
CORPUS = "astro"
#: Every 7th paper of the astro file: ~1,500 papers spread over the whole year and every category.
STRIDE = 7
DOCS = 1500


class CountingBackend:
    """Counts the calls and texts that reach the wrapped model."""

    def __init__(self, inner: EmbeddingBackend) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.backend = inner.backend
        self.dim = inner.dim
        self.max_input_tokens = inner.max_input_tokens
        self.calls = 0
        self.texts = 0
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        with self._lock:
            self.calls += 1
            self.texts += len(texts)
        return self.inner.embed(texts)


def astro_records(limit: int = DOCS) -> list[Record]:
    """Real astro-ph papers (skips the test without the data)."""
    if not ASTRO.is_file():
        pytest.skip(f"real corpus not found at {ASTRO} (set FEATURELENS_DATA_DIR)")
    return list(itertools.islice(read_corpus(ASTRO), 0, STRIDE * limit, STRIDE))


def document(record: Record) -> common_pb2.Document:
    return common_pb2.Document(
        id=record.id,
        title=record.title,
        text=record.text,
        categories=list(record.categories),
        date=record.date,
    )


def setup_message(corpus: str = CORPUS, **fields: Any) -> search_pb2.IndexDocumentsRequest:
    return search_pb2.IndexDocumentsRequest(setup=search_pb2.IndexSetup(corpus=corpus, **fields))


def batch_message(documents: Iterable[common_pb2.Document]) -> search_pb2.IndexDocumentsRequest:
    return search_pb2.IndexDocumentsRequest(documents=search_pb2.DocumentBatch(documents=list(documents)))


def index_requests(
    records: Sequence[Record], batch: int = 256, corpus: str = CORPUS, **setup: Any
) -> list[search_pb2.IndexDocumentsRequest]:
    """A setup message and the records in batches."""
    messages = [setup_message(corpus, batch_size=batch, **setup)]
    for start in range(0, len(records), batch):
        messages.append(batch_message(document(r) for r in records[start : start + batch]))
    return messages


@dataclass
class Stack:
    """The three servicers in one server on 127.0.0.1, with a search stub."""

    server: GrpcServer
    search: SearchServicer
    sae: SaeServicer
    backend: CountingBackend
    channel: aio.Channel
    stub: search_pb2_grpc.SearchServiceAsyncStub

    async def index(
        self, requests: Sequence[search_pb2.IndexDocumentsRequest]
    ) -> list[search_pb2.IndexDocumentsResponse]:
        """Run one IndexDocuments stream to its end; all its responses."""
        return [response async for response in self.stub.IndexDocuments(iter(requests))]


@asynccontextmanager
async def serve_stack(
    backend: CountingBackend,
    models_dir: Path,
    edge_path: Path,
    *,
    corpus_roots: Sequence[Path] = (),
    encoder_address: str | None = None,
    sae_address: str | None = None,
    open_store: Callable[[], DocumentStore] | None = None,
    families: FamilyExpander | None = None,
    labelling_address: str | None = None,
    family_address: str | None = None,
    also: Sequence[Servicer] = (),
    metrics_port: int | None = None,
    sae_vector_store: Callable[[], VectorReader] | None = None,
    **settings: Any,
) -> AsyncIterator[Stack]:
    """encoder + sae + search in one GrpcServer on 127.0.0.1:0, as the embedded mode hosts them.

    ``encoder_address`` / ``sae_address`` (default: this server) point the search service elsewhere;
    ``labelling_address`` (default: this server, which hosts no labelling service, so searches
    carry no labels and phrases are refused) points it at a labelling service, ``family_address``
    (default: this server, which hosts no family service, so family targets are refused) at a
    family service; ``open_store`` replaces the edge store of the settings; ``families`` replaces
    the family client; ``also`` are more servicers hosted in the same server (the labelling
    service's tests add theirs); ``metrics_port`` (0: a free one) serves /metrics;
    ``sae_vector_store`` is the Qdrant store the sae service trains from (none by default).
    """
    encoder = EncoderServicer({"wordllama": lambda: backend}, MemoryEmbeddingCache(64 * 1024 * 1024))
    sae = SaeServicer(SaeRegistry(models_dir), open_vector_store=sae_vector_store)
    options: dict[str, Any] = {"encoder_timeout_s": 20.0, "sae_timeout_s": 20.0} | settings
    search_settings = SearchSettings(
        storage="edge", edge_path=edge_path, corpus_roots=list(corpus_roots), **options
    )
    search = build_servicer(search_settings)
    if open_store is not None:
        search = SearchServicer(
            open_store,
            search.dependencies,
            search_settings,
            labels=search.labels,
            families=search.families,
            phrases=search.phrases,
        )
    if families is not None:
        search.families = families
    server = GrpcServer(
        [encoder, sae, search, *also], host="127.0.0.1", port=0, grace_period_s=2.0, metrics_port=metrics_port
    )
    await server.start()
    # The embedded mode picks its port before it builds the servicers; here port 0 is bound first
    # and the search service's dependencies (whose channels open on first use) pointed at it.
    search.dependencies.encoder.address = encoder_address or server.address
    search.dependencies.sae.address = sae_address or server.address
    search.dependencies.labelling.address = labelling_address or server.address
    search.dependencies.family.address = family_address or server.address
    # As the embedded host does: peers at this server's address may call its servicers in process
    # (search's Steer); SEARCH_TESTS_OVER_GRPC=1 runs the same tests with every call over gRPC.
    if not os.environ.get("SEARCH_TESTS_OVER_GRPC"):
        serve_in_process(server.address, [encoder, sae, search, *also])
    try:
        await server.wait_ready(timeout=60)
        async with aio.insecure_channel(server.address) as channel:
            yield Stack(server, search, sae, backend, channel, search_pb2_grpc.SearchServiceStub(channel))
    finally:
        stop_serving_in_process(server.address)
        await server.stop(0)


def train_default_sae(
    models: Path, wordllama: EmbeddingBackend, records: Sequence[Record], num_latents: int, k: int
) -> str:
    """An SAE trained on the papers' wordllama embeddings, saved in ``models`` as the default."""
    vectors = wordllama.embed([r.embedding_text for r in records]).vectors
    train_cfg = TrainConfig(batch_size=256, lr=2e-3, epochs=20, seed=0)
    result = train_sae(vectors, SaeConfig(d_in=wordllama.dim, num_latents=num_latents, k=k), train_cfg)
    save_sae(
        result.sae,
        models / result.sae_id,
        train_cfg=train_cfg,
        embedding_model=wordllama.model_id,
        data_fingerprint=result.data_fingerprint,
    )
    (models / "default").write_text(result.sae_id + "\n")
    return result.sae_id


def index_corpus(edge: Path, wordllama: EmbeddingBackend, models: Path, records: Sequence[Record]) -> None:
    """Index the papers as corpus "astro" into a qdrant-edge folder, through the services."""

    async def index() -> None:
        async with serve_stack(CountingBackend(wordllama), models, edge) as stack:
            responses = await stack.index(index_requests(records))
            assert responses[-1].indexed == len(records), responses[-1]

    asyncio.run(index())


def closed_address() -> str:
    """A loopback address nothing listens on (a service that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def copy_of(indexed_edge: Path, tmp_path: Path) -> Path:
    """A private copy of the indexed corpus's folder (its files are sparse: copied as such)."""
    edge = tmp_path / "qdrant"
    subprocess.run(["cp", "-a", "--sparse=always", str(indexed_edge), str(edge)], check=True)
    return edge


async def failure_of(call: Awaitable[object]) -> aio.AioRpcError:
    """The status error a call ends with (fails the test when the call succeeds)."""
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value


def hit_ids(response: search_pb2.SearchResponse) -> list[str]:
    return [hit.document.id for hit in response.hits]


class FakeLabelling(labelling_pb2_grpc.LabellingServiceServicer):
    """GetLabels and SearchFeatures over ``labels`` (sae_id → feature → label); counts the calls.

    SearchFeatures scores a label by the words it shares with the query (cosine of word sets), so
    a phrase matches the label that says the most of it; an SAE absent from ``labels`` is
    NOT_FOUND, one with no labels answers no matches.
    """

    def __init__(self, labels: Mapping[str, Mapping[int, str]]) -> None:
        self.labels = labels
        self.get_labels_requests: list[labelling_pb2.GetLabelsRequest] = []
        self.search_requests: list[labelling_pb2.SearchFeaturesRequest] = []

    def _labels_of(self, sae_id: str) -> Mapping[int, str] | None:
        return self.labels.get(sae_id)

    @override
    async def GetLabels(
        self, request: labelling_pb2.GetLabelsRequest, context: aio.ServicerContext
    ) -> labelling_pb2.GetLabelsResponse:
        self.get_labels_requests.append(request)
        known = self._labels_of(request.sae_id) or {}
        return labelling_pb2.GetLabelsResponse(
            labels=[
                labelling_pb2.FeatureLabel(sae_id=request.sae_id, feature=feature, label=known[feature])
                for feature in request.features
                if feature in known
            ]
        )

    @override
    async def SearchFeatures(
        self, request: labelling_pb2.SearchFeaturesRequest, context: aio.ServicerContext
    ) -> labelling_pb2.SearchFeaturesResponse:
        self.search_requests.append(request)
        known = self._labels_of(request.sae_id)
        if known is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"SAE {request.sae_id!r} has no features collection"
            )
        assert known is not None
        words = set(request.query.lower().split())
        scored = []
        for feature, label in known.items():
            label_words = set(label.lower().split())
            score = len(words & label_words) / math.sqrt(len(words) * len(label_words))
            if score > 0:
                scored.append((-score, feature, label))
        scored.sort()
        return labelling_pb2.SearchFeaturesResponse(
            matches=[
                labelling_pb2.SearchFeaturesResponse.Match(
                    label=labelling_pb2.FeatureLabel(sae_id=request.sae_id, feature=feature, label=label),
                    score=-negative,
                )
                for negative, feature, label in scored[: request.top_k or 10]
            ]
        )


@asynccontextmanager
async def serve_labelling(
    labels: Mapping[str, Mapping[int, str]],
) -> AsyncIterator[tuple[str, FakeLabelling]]:
    """The stand-in labelling service on its own server at 127.0.0.1:0: its address and servicer."""
    servicer = FakeLabelling(labels)
    server = aio.server()
    labelling_pb2_grpc.add_LabellingServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)


class TableFamilies:
    """A family expander in the search process over a table of families (family id → members,
    direction norm 1, so each member gets the family's weight as sent), for the tests of how
    search checks what families expand to; explanations name no families. The family service's
    client is tested against ``serve_families``."""

    def __init__(self, table: Mapping[str, Iterable[int]]) -> None:
        self.table = {family_id: tuple(features) for family_id, features in table.items()}

    async def members(self, sae_id: str, family_id: str) -> FamilyMembers:
        if family_id not in self.table:
            raise NotFoundError(f"family {family_id!r} does not exist")
        return FamilyMembers(self.table[family_id], 1.0)

    async def families_of(self, sae_id: str, features: Sequence[int]) -> Mapping[int, Sequence[str]]:
        return {}


@dataclass(frozen=True)
class KnownFamily:
    """A family as the stand-in family service knows it: its members (parent first) and the length
    of the sum of their unit decoder directions."""

    features: tuple[int, ...]
    direction_norm: float


class FakeFamilies(family_pb2_grpc.FamilyServiceServicer):
    """GetFamily and FeatureFamilies over ``families`` (sae_id → family id → family); keeps the
    requests. An unknown SAE or family is NOT_FOUND; a feature's families are listed smallest
    first (the most specific), as the family service lists them."""

    def __init__(self, families: Mapping[str, Mapping[str, KnownFamily]]) -> None:
        self.families = families
        self.get_requests: list[family_pb2.GetFamilyRequest] = []
        self.feature_requests: list[family_pb2.FeatureFamiliesRequest] = []

    @override
    async def GetFamily(
        self, request: family_pb2.GetFamilyRequest, context: aio.ServicerContext
    ) -> family_pb2.GetFamilyResponse:
        self.get_requests.append(request)
        family = self.families.get(request.sae_id, {}).get(request.family_id)
        if family is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"family {request.family_id!r} does not exist for SAE {request.sae_id!r}",
            )
        assert family is not None
        return family_pb2.GetFamilyResponse(
            family=family_pb2.Family(
                family_id=request.family_id,
                sae_id=request.sae_id,
                parent_feature=family.features[0],
                features=family.features,
                direction_norm=family.direction_norm,
            ),
            members=[family_pb2.FamilyMember(feature=feature) for feature in family.features],
        )

    @override
    async def FeatureFamilies(
        self, request: family_pb2.FeatureFamiliesRequest, context: aio.ServicerContext
    ) -> family_pb2.FeatureFamiliesResponse:
        self.feature_requests.append(request)
        return family_pb2.FeatureFamiliesResponse(
            features=[
                family_pb2.FeatureFamilyList(
                    feature=feature, family_ids=self.families_of(request.sae_id, feature)
                )
                for feature in request.features
            ]
        )

    def families_of(self, sae_id: str, feature: int) -> list[str]:
        """The ids of the families holding ``feature``, smallest first (ties by id)."""
        known = self.families.get(sae_id, {})
        holding = [
            (len(family.features), family_id)
            for family_id, family in known.items()
            if feature in family.features
        ]
        return [family_id for _, family_id in sorted(holding)]


@asynccontextmanager
async def serve_families(
    families: Mapping[str, Mapping[str, KnownFamily]],
) -> AsyncIterator[tuple[str, FakeFamilies]]:
    """The stand-in family service on its own server at 127.0.0.1:0: its address and servicer."""
    servicer = FakeFamilies(families)
    server = aio.server()
    family_pb2_grpc.add_FamilyServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)
