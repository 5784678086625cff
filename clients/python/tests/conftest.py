"""Real loopback servers for the SDK and CLI tests.

Each server runs a kit ``GrpcServer`` in its own thread and event loop, so that blocking
clients (and typer's CliRunner) can call it from the test thread. The encoder is the real
``EncoderServicer`` with wordllama; the sae and search services are small in-test servicers
(their real ones come later) that answer from their requests, so the SDK's conversions can be
checked in both directions. The labelling service is an in-test servicer too, with a few canned
labels, that the faked search service also reads to report the features it was steered by. The
family service is faked with three canned families of DEFAULT_SAE (a small tree, a family nested
in it and an unlabelled one), neighbours computed from the latent ids and matches to OTHER_SAE.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import grpc
import numpy as np
import pytest
from grpc import aio
from typing_extensions import override

from featurelens.embedding.backends import load_backend
from featurelens.kit import (
    FailedPreconditionError,
    GrpcServer,
    InvalidArgumentError,
    NotFoundError,
)
from featurelens.kit.server import Servicer
from featurelens.services.encoder.cache import MemoryEmbeddingCache
from featurelens.services.encoder.servicer import EncoderServicer
from featurelens.v1 import (
    common_pb2,
    family_pb2,
    family_pb2_grpc,
    labelling_pb2,
    labelling_pb2_grpc,
    sae_pb2,
    sae_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from featurelens.wire.arrays import from_dense_matrix, from_dense_vector, to_dense_matrix, to_dense_vector

FAKE_DIM = 8
FAKE_LATENTS = 32
DEFAULT_SAE = "sae-32-k2"


class BackgroundServer:
    """A GrpcServer in a thread of its own; ``address`` is valid once ``start`` returns.
    ``server_options`` go to the GrpcServer (``auth=``, ``tls=``)."""

    def __init__(self, servicers: Sequence[Servicer], **server_options: Any) -> None:
        self._servicers = list(servicers)
        self._server_options = server_options
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-grpc-server", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.address = ""

    def start(self) -> BackgroundServer:
        self._thread.start()
        if not self._ready.wait(60):
            raise TimeoutError("the test server did not start within 60 s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        server = GrpcServer(
            self._servicers, host="127.0.0.1", port=0, grace_period_s=1.0, **self._server_options
        )
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await server.start()
        try:
            await server.wait_ready(timeout=60)
            self.address = server.address
            self._ready.set()
            await self._stop.wait()
        finally:
            await server.stop(0)


# -- the sae service, faked ------------------------------------------------------------------------


def _sae_info(sae_id: str) -> sae_pb2.SaeInfo:
    return sae_pb2.SaeInfo(
        sae_id=sae_id,
        config=sae_pb2.SaeConfig(d_in=FAKE_DIM, num_latents=FAKE_LATENTS, k=2),
        metrics=sae_pb2.SaeMetrics(
            train_nmse=0.2,
            val_nmse=0.25,
            dead_fraction=0.1,
            steps=30,
            samples=960,
            best_epoch=3,
            stopped_early=True,
        ),
        embedding_model="wordllama-l2-supercat-256",
        created_unix=1_700_000_000,
        is_default=sae_id == DEFAULT_SAE,
    )


def _top2(vector: np.ndarray) -> common_pb2.SparseVector:
    """The two largest coordinates of a vector as latents (latent i = coordinate i)."""
    indices = np.argsort(-vector, kind="stable")[:2]
    return common_pb2.SparseVector(indices=indices.tolist(), values=vector[indices].tolist())


class FakeSae(sae_pb2_grpc.SaeServiceServicer):
    """Latent i is coordinate i of the input; decoding puts values back at their coordinates."""

    service_names: Sequence[str] = ("featurelens.v1.SaeService",)

    def add_to_server(self, server: aio.Server) -> None:
        sae_pb2_grpc.add_SaeServiceServicer_to_server(self, server)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    @staticmethod
    def _sae(sae_id: str) -> str:
        if sae_id not in ("", DEFAULT_SAE):
            raise NotFoundError(f"no SAE with id {sae_id!r}; ListSaes names the trained ones")
        return DEFAULT_SAE

    @override
    async def Encode(
        self, request: sae_pb2.EncodeRequest, context: aio.ServicerContext
    ) -> sae_pb2.EncodeResponse:
        sae_id = self._sae(request.sae_id)
        if request.vectors.dim != FAKE_DIM:
            raise InvalidArgumentError(
                f"vectors have dim {request.vectors.dim} but the SAE's d_in is {FAKE_DIM}"
            )
        vectors = from_dense_matrix(request.vectors)
        return sae_pb2.EncodeResponse(sae_id=sae_id, rows=[_top2(v) for v in vectors])

    @override
    async def Decode(
        self, request: sae_pb2.DecodeRequest, context: aio.ServicerContext
    ) -> sae_pb2.DecodeResponse:
        dense = np.zeros((len(request.rows), FAKE_DIM), dtype=np.float32)
        for i, row in enumerate(request.rows):
            dense[i, list(row.indices)] = list(row.values)
        return sae_pb2.DecodeResponse(sae_id=self._sae(request.sae_id), vectors=to_dense_matrix(dense))

    @override
    async def Steer(
        self, request: sae_pb2.SteerRequest, context: aio.ServicerContext
    ) -> sae_pb2.SteerResponse:
        before = np.array(from_dense_vector(request.vector))
        after = before.copy()
        for intervention in request.interventions:
            if intervention.mode == common_pb2.STEER_MODE_CLAMP:
                after[intervention.feature] = intervention.weight
            else:
                after[intervention.feature] += intervention.weight
        cosine = float(before @ after / (np.linalg.norm(before) * np.linalg.norm(after)))
        return sae_pb2.SteerResponse(
            sae_id=self._sae(request.sae_id),
            vector=to_dense_vector(after),
            cosine_to_original=cosine,
            latents_before=_top2(before),
            latents_after=_top2(after),
        )

    @override
    async def DecoderDirections(
        self, request: sae_pb2.DecoderDirectionsRequest, context: aio.ServicerContext
    ) -> sae_pb2.DecoderDirectionsResponse:
        directions = np.eye(FAKE_LATENTS, FAKE_DIM, dtype=np.float32)[list(request.features)]
        return sae_pb2.DecoderDirectionsResponse(
            sae_id=self._sae(request.sae_id), directions=to_dense_matrix(directions)
        )

    @override
    async def Train(
        self, request: sae_pb2.TrainRequest, context: aio.ServicerContext
    ) -> AsyncIterator[sae_pb2.TrainResponse]:
        if request.embeddings_path == "missing":
            raise NotFoundError("no embedding store at 'missing'")
        steps = request.max_steps or 3
        for step in range(1, steps + 1):
            progress = common_pb2.Progress(
                stage="train", done=step, total=steps, rate_per_s=10.0, eta_s=steps - step
            )
            yield sae_pb2.TrainResponse(progress=progress, loss=1.0 / step, nmse=0.5 / step, val_nmse=-1)
        yield sae_pb2.TrainResponse(
            progress=common_pb2.Progress(stage="done", done=steps, total=steps),
            val_nmse=0.25,
            result=_sae_info(DEFAULT_SAE),
        )

    @override
    async def ListSaes(
        self, request: sae_pb2.ListSaesRequest, context: aio.ServicerContext
    ) -> sae_pb2.ListSaesResponse:
        return sae_pb2.ListSaesResponse(saes=[_sae_info(DEFAULT_SAE)])

    @override
    async def GetSae(
        self, request: sae_pb2.GetSaeRequest, context: aio.ServicerContext
    ) -> sae_pb2.GetSaeResponse:
        if request.sae_id == "boom":
            raise RuntimeError("registry file is corrupt")
        if request.sae_id == "slow":
            # Outlasts any test's deadline; grpc cancels it when the caller's deadline passes.
            await asyncio.sleep(60)
        return sae_pb2.GetSaeResponse(sae=_sae_info(self._sae(request.sae_id)))


# -- canned labels, read by the faked labelling and search services ---------------------------------


def canned_label(
    feature: int,
    label: str,
    pearson_r: float | None,
    *,
    sae_id: str = DEFAULT_SAE,
    interpreter_model: str = "gpt-4o-mini",
    score_note: str = "",
) -> labelling_pb2.FeatureLabel:
    """A label with every field set, so that each one's conversion is checked."""
    message = labelling_pb2.FeatureLabel(
        sae_id=sae_id,
        feature=feature,
        label=label,
        f1=0.75,
        interpreter_model=interpreter_model,
        predictor_model="gpt-4o-mini",
        density=0.012,
        created_unix=1_750_000_000,
        auroc=0.91,
        auroc_hard=0.8,
        balanced_accuracy=0.82,
        embedding_auroc=0.88,
        embedding_auroc_hard=0.7,
        prompt_version="interp-v1",
        cost_usd=0.0021,
        tokens=1234,
        parse_failures=2,
        scored_documents=40,
        example_ids=[f"doc-{feature}-{i}" for i in range(3)],
        score_note=score_note,
    )
    if pearson_r is not None:
        message.pearson_r = pearson_r
    return message


STORED_LABELS = {
    label.feature: label
    for label in [
        canned_label(3, "dark matter halos; subhalo", 0.83),
        canned_label(7, "galaxies", 0.61),
        canned_label(12, "exoplanet transits", 0.72),
        canned_label(20, "gravitational waves", None, score_note="predictions constant: pearson_r undefined"),
        canned_label(25, "neural network training", -0.05),
    ]
}
"""The labels the faked labelling service has stored for DEFAULT_SAE."""
FAMILIES = {"fam-2": [12, 20]}
"""The families the faked search service expands."""
FAILING_FEATURE = 5
"""The feature the faked labelling service fails to label."""
ALLOWED_LLM_URL = "http://127.0.0.1:9/v1"
"""The only endpoint (besides the default) the faked labelling service accepts."""
LLM_COST_PER_FEATURE = 0.002
"""Dollars the faked labelling service spends per feature it labels with LLM calls (odd features)."""


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def match_score(query: str, label: str) -> float:
    """A stand-in for the cosine between a query and a label: the Jaccard overlap of their words."""
    query_words, label_words = _words(query), _words(label)
    union = query_words | label_words
    return len(query_words & label_words) / len(union) if union else 0.0


def best_label(query: str) -> tuple[labelling_pb2.FeatureLabel, float] | None:
    """The stored label closest to a query, and its score; None when no label shares a word."""
    scored = sorted(
        ((match_score(query, label.label), label) for label in STORED_LABELS.values()),
        key=lambda pair: (-pair[0], pair[1].feature),
    )
    if not scored or scored[0][0] == 0:
        return None
    return scored[0][1], scored[0][0]


def _check_sae(sae_id: str) -> str:
    if sae_id not in ("", DEFAULT_SAE):
        raise NotFoundError(f"no SAE with id {sae_id!r}; ListSaes names the trained ones")
    return DEFAULT_SAE


# -- the labelling service, faked ------------------------------------------------------------------


class FakeLabelling(labelling_pb2_grpc.LabellingServiceServicer):
    """Answers from STORED_LABELS; labels features 0-9 by default (skipping the stored ones, failing
    FAILING_FEATURE); with an interpreter model, odd features cost LLM calls and even ones are
    cache hits. ``fail`` plans failures; ``requests`` records what each RPC was sent."""

    service_names: Sequence[str] = ("featurelens.v1.LabellingService",)

    def __init__(self) -> None:
        self.requests: dict[str, list[object]] = {}
        self.plans: dict[str, list[grpc.StatusCode]] = {}

    def fail(self, rpc: str, code: grpc.StatusCode, times: int = 1) -> None:
        """Fail the next ``times`` calls of ``rpc`` with ``code``."""
        self.plans.setdefault(rpc, []).extend([code] * times)

    def reset(self) -> None:
        self.requests.clear()
        self.plans.clear()

    def add_to_server(self, server: aio.Server) -> None:
        labelling_pb2_grpc.add_LabellingServiceServicer_to_server(self, server)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def _enter(self, rpc: str, request: object, context: aio.ServicerContext) -> None:
        self.requests.setdefault(rpc, []).append(request)
        plan = self.plans.get(rpc)
        if plan:
            code = plan.pop(0)
            await context.abort(code, f"planned {code.name} of {rpc}")

    @override
    async def LabelFeatures(
        self, request: labelling_pb2.LabelFeaturesRequest, context: aio.ServicerContext
    ) -> AsyncIterator[labelling_pb2.LabelFeaturesResponse]:
        await self._enter("LabelFeatures", request, context)
        sae_id = _check_sae(request.sae_id)
        if request.corpus != "arxiv":
            raise NotFoundError(f"no corpus named {request.corpus!r}")
        if request.llm_base_url not in ("", ALLOWED_LLM_URL):
            raise FailedPreconditionError(
                f"the LLM endpoint {request.llm_base_url} is not one this server allows"
            )
        features = list(request.features) or list(range(10))
        if any(f >= FAKE_LATENTS for f in features):
            raise InvalidArgumentError(f"features must be below the SAE's {FAKE_LATENTS} latents")
        totals = labelling_pb2.LabelFeaturesResponse()
        for done, feature in enumerate(features, start=1):
            message = labelling_pb2.LabelFeaturesResponse()
            if feature in STORED_LABELS and not request.overwrite:
                totals.skipped += 1
            elif feature == FAILING_FEATURE:
                totals.failed += 1
                totals.failed_feature = feature
                totals.failure_reason = "the interpreter's answer could not be parsed"
            else:
                if request.interpreter_model and feature % 2:
                    if request.budget_usd and totals.cost_usd + LLM_COST_PER_FEATURE > request.budget_usd:
                        totals.budget_exhausted = True
                        totals.progress.CopyFrom(common_pb2.Progress(stage="label", done=done - 1))
                        yield totals
                        return
                    totals.llm_calls += 2
                    totals.cost_usd += LLM_COST_PER_FEATURE
                elif request.interpreter_model:
                    totals.cache_hits += 2
                totals.tokens_used += 600 if request.interpreter_model else 0
                message.label.CopyFrom(
                    canned_label(
                        feature,
                        f"topic {feature}",
                        0.3 + feature / 100,
                        sae_id=sae_id,
                        interpreter_model=request.interpreter_model or "offline",
                    )
                )
            message.MergeFrom(totals)
            message.progress.CopyFrom(
                common_pb2.Progress(stage="label", done=done, total=len(features), rate_per_s=50.0)
            )
            yield message

    @override
    async def GetLabel(
        self, request: labelling_pb2.GetLabelRequest, context: aio.ServicerContext
    ) -> labelling_pb2.GetLabelResponse:
        await self._enter("GetLabel", request, context)
        sae_id = _check_sae(request.sae_id)
        if request.feature not in STORED_LABELS:
            raise NotFoundError(f"feature {request.feature} of {sae_id} has no label yet")
        return labelling_pb2.GetLabelResponse(label=STORED_LABELS[request.feature])

    @override
    async def GetLabels(
        self, request: labelling_pb2.GetLabelsRequest, context: aio.ServicerContext
    ) -> labelling_pb2.GetLabelsResponse:
        await self._enter("GetLabels", request, context)
        _check_sae(request.sae_id)
        if len(request.features) > 1000:
            raise InvalidArgumentError(f"features names {len(request.features)} latents; at most 1,000")
        return labelling_pb2.GetLabelsResponse(
            labels=[STORED_LABELS[f] for f in request.features if f in STORED_LABELS]
        )

    @override
    async def ListLabels(
        self, request: labelling_pb2.ListLabelsRequest, context: aio.ServicerContext
    ) -> labelling_pb2.ListLabelsResponse:
        await self._enter("ListLabels", request, context)
        _check_sae(request.sae_id)
        labels = sorted(
            STORED_LABELS.values(),
            key=lambda label: (label.HasField("pearson_r"), label.pearson_r),
            reverse=True,
        )
        if request.min_pearson_r:
            labels = [
                label
                for label in labels
                if label.HasField("pearson_r") and label.pearson_r >= request.min_pearson_r
            ]
        token = request.page_token
        if token and not re.fullmatch(r"p[0-9]+", token):
            raise InvalidArgumentError(f"page_token {token!r} is not one this server issued")
        start = int(token[1:]) if token else 0
        end = start + (request.page_size or 100)
        return labelling_pb2.ListLabelsResponse(
            labels=labels[start:end], next_page_token=f"p{end}" if end < len(labels) else ""
        )

    @override
    async def SearchFeatures(
        self, request: labelling_pb2.SearchFeaturesRequest, context: aio.ServicerContext
    ) -> labelling_pb2.SearchFeaturesResponse:
        await self._enter("SearchFeatures", request, context)
        _check_sae(request.sae_id)
        if not request.query.strip():
            raise InvalidArgumentError("query is empty; describe the feature, e.g. 'dark matter halos'")
        matches: list[labelling_pb2.SearchFeaturesResponse.Match] = []
        if request.substring:
            matches += [
                labelling_pb2.SearchFeaturesResponse.Match(label=label, score=1.0, substring_match=True)
                for label in STORED_LABELS.values()
                if request.query.lower() in label.label.lower()
            ]
        found = {match.label.feature for match in matches}
        scored = sorted(
            ((match_score(request.query, label.label), label) for label in STORED_LABELS.values()),
            key=lambda pair: -pair[0],
        )
        matches += [
            labelling_pb2.SearchFeaturesResponse.Match(label=label, score=score)
            for score, label in scored
            if score > 0 and label.feature not in found
        ]
        return labelling_pb2.SearchFeaturesResponse(matches=matches[: request.top_k or 10])

    @override
    async def ScoreLabel(
        self, request: labelling_pb2.ScoreLabelRequest, context: aio.ServicerContext
    ) -> labelling_pb2.ScoreLabelResponse:
        await self._enter("ScoreLabel", request, context)
        sae_id = _check_sae(request.sae_id)
        if not request.label.strip():
            raise InvalidArgumentError("label is empty; give the label to score")
        stored = STORED_LABELS.get(request.feature)
        r = match_score(request.label, stored.label) if stored else 0.1
        scored = canned_label(request.feature, request.label, r, sae_id=sae_id, interpreter_model="")
        scored.predictor_model = request.predictor_model or "offline"
        return labelling_pb2.ScoreLabelResponse(label=scored)


# -- the search service, faked ---------------------------------------------------------------------


def _doc(i: int, with_text: bool) -> common_pb2.Document:
    return common_pb2.Document(
        id=f"doc-{i}",
        title=f"Title {i}",
        text=f"Body {i}" if with_text else "",
        categories=["cs.LG"],
        date="2025-04-01",
    )


class FakeSearch(search_pb2_grpc.SearchServiceServicer):
    """Indexes nothing for real: counts what it is sent and answers with numbered documents."""

    service_names: Sequence[str] = ("featurelens.v1.SearchService",)

    def __init__(self) -> None:
        self.last_search: search_pb2.SearchRequest | None = None
        self.indexed: list[common_pb2.Document] = []

    def add_to_server(self, server: aio.Server) -> None:
        search_pb2_grpc.add_SearchServiceServicer_to_server(self, server)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    @override
    async def IndexDocuments(
        self, request_iterator: AsyncIterator[search_pb2.IndexDocumentsRequest], context: aio.ServicerContext
    ) -> AsyncIterator[search_pb2.IndexDocumentsResponse]:
        setup: search_pb2.IndexSetup | None = None
        indexed = 0
        async for request in request_iterator:
            if request.HasField("setup"):
                setup = request.setup
                if setup.corpus_path:
                    count = setup.limit or 5
                    yield search_pb2.IndexDocumentsResponse(
                        progress=common_pb2.Progress(stage="upsert", done=count, total=count), indexed=count
                    )
                continue
            if setup is None:
                raise InvalidArgumentError("the first message of IndexDocuments must be the setup")
            for document in request.documents.documents:
                self.indexed.append(document)
                indexed += 1
            yield search_pb2.IndexDocumentsResponse(
                progress=common_pb2.Progress(stage="upsert", done=indexed), indexed=indexed
            )

    @override
    async def Search(
        self, request: search_pb2.SearchRequest, context: aio.ServicerContext
    ) -> search_pb2.SearchResponse:
        if request.corpus != "arxiv":
            raise NotFoundError(f"no corpus named {request.corpus!r}")
        self.last_search = request
        top_k = request.top_k or 10
        hits = [
            search_pb2.Hit(
                document=_doc(i, request.with_text),
                score=1.0 - i / 100,
                rank=request.offset + i + 1,
                rank_before=i + 2 if request.with_rank_changes else 0,
                explanation=[
                    search_pb2.FeatureContribution(
                        feature=7,
                        query_activation=0.5,
                        document_activation=2.0,
                        contribution=1.0,
                        label="galaxies",
                        family_ids=["f7-p1", "f3-p0"],
                    )
                ]
                if request.explain
                else [],
            )
            for i in range(top_k)
        ]
        # An attached collection's hits carry the payload keys asked for (here: "<key>-<rank>").
        for i, hit in enumerate(hits):
            if request.payload_fields:
                hit.document.payload.update({key: f"{key}-{i}" for key in request.payload_fields})
        return search_pb2.SearchResponse(
            hits=hits,
            sae_id=request.sae_id or DEFAULT_SAE,
            took_ms=1.5,
            steer_cosine=0.9 if request.interventions else 0.0,
            dropped=[search_pb2.Hit(document=_doc(99, False), score=0.1, rank=0, rank_before=3)]
            if request.with_rank_changes
            else [],
            steered=_steered(request.interventions),
        )

    @override
    async def TopDocuments(
        self, request: search_pb2.TopDocumentsRequest, context: aio.ServicerContext
    ) -> search_pb2.TopDocumentsResponse:
        documents = [
            search_pb2.ActivatedDocument(
                document=_doc(i, request.with_text),
                activation=float(request.n - i),
                embedding=to_dense_vector(np.full(FAKE_DIM, i, dtype=np.float32))
                if request.with_embedding
                else None,
            )
            for i in range(request.n or 10)
        ]
        return search_pb2.TopDocumentsResponse(documents=documents)

    @override
    async def SampleDocuments(
        self, request: search_pb2.SampleDocumentsRequest, context: aio.ServicerContext
    ) -> search_pb2.SampleDocumentsResponse:
        rng = np.random.default_rng(request.seed)
        picks = rng.choice(100, size=request.n or 10, replace=False)
        if request.HasField("near"):
            # Hard negatives: the documents "nearest" the vector are numbered from its first value.
            first = int(from_dense_vector(request.near)[0])
            picks = np.arange(first, first + (request.n or 10))
        documents = [
            search_pb2.ActivatedDocument(
                document=_doc(int(i), request.with_text), activation=1.0 if request.firing else 0.0
            )
            for i in picks
        ]
        return search_pb2.SampleDocumentsResponse(documents=documents)

    @override
    async def ExportActivations(
        self, request: search_pb2.ExportActivationsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[search_pb2.ExportActivationsResponse]:
        batch_size = request.batch_size or 1000
        ids = [f"doc-{i}" for i in range(5)]
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            latents = [common_pb2.SparseVector(indices=[int(d[-1]), 31], values=[1.0, 0.5]) for d in chunk]
            yield search_pb2.ExportActivationsResponse(doc_ids=chunk, latents=latents)

    @override
    async def ListCorpora(
        self, request: search_pb2.ListCorporaRequest, context: aio.ServicerContext
    ) -> search_pb2.ListCorporaResponse:
        corpus = search_pb2.CorpusInfo(
            corpus="arxiv",
            documents=5,
            dim=256,
            embedding_model="wordllama-l2-supercat-256",
            sae_ids=[DEFAULT_SAE],
        )
        return search_pb2.ListCorporaResponse(corpora=[corpus])

    @override
    async def DeleteDocuments(
        self, request: search_pb2.DeleteDocumentsRequest, context: aio.ServicerContext
    ) -> search_pb2.DeleteDocumentsResponse:
        existing = {f"doc-{i}" for i in range(5)}
        return search_pb2.DeleteDocumentsResponse(deleted=len(existing & set(request.doc_ids)))


def _steered(interventions: Sequence[common_pb2.Intervention]) -> list[search_pb2.SteeredFeature]:
    """What the search service reports it steered by: families expanded, phrases resolved."""
    steered: list[search_pb2.SteeredFeature] = []
    for position, intervention in enumerate(interventions):
        mode = intervention.mode or common_pb2.STEER_MODE_ADDITIVE
        common = {"weight": intervention.weight, "mode": mode, "intervention": position}
        target = intervention.WhichOneof("target")
        if target == "feature":
            label = STORED_LABELS.get(intervention.feature)
            steered.append(
                search_pb2.SteeredFeature(
                    feature=intervention.feature, label=label.label if label else "", **common
                )
            )
        elif target == "family_id":
            for member in FAMILIES.get(intervention.family_id, []):
                steered.append(
                    search_pb2.SteeredFeature(
                        feature=member,
                        label=STORED_LABELS[member].label,
                        family_id=intervention.family_id,
                        **common,
                    )
                )
        else:
            best = best_label(intervention.phrase)
            if best is None:
                raise NotFoundError(f"no labelled feature matches the phrase {intervention.phrase!r}")
            label, score = best
            steered.append(
                search_pb2.SteeredFeature(
                    feature=label.feature,
                    label=label.label,
                    phrase=intervention.phrase,
                    match_score=score,
                    **common,
                )
            )
    return steered


# -- the family service, faked ---------------------------------------------------------------------

OTHER_SAE = "sae-64-k2"
"""A second SAE the faked family service can match DEFAULT_SAE's features to (twice the latents)."""


def _canned_family(
    family_id: str,
    edges: Sequence[tuple[int, int]],
    *,
    label: str,
    depth: int,
    nested_in: str = "",
) -> family_pb2.Family:
    parent = edges[0][0]
    return family_pb2.Family(
        family_id=family_id,
        sae_id=DEFAULT_SAE,
        parent_feature=parent,
        features=[parent, *(child for _, child in edges)],
        edge_parents=[p for p, _ in edges],
        edge_children=[c for _, c in edges],
        label=label,
        depth=depth,
        root_density=canned_density(parent),
        nested_in=nested_in,
        corpus="arxiv",
        direction_norm=1.5,
    )


def canned_density(feature: int) -> float:
    """The density the faked family service reports for a feature: denser for lower ids."""
    return round(0.4 / (1 + feature), 4)


STORED_FAMILIES = {
    family.family_id: family
    for family in [
        # 3 'dark matter halos' over 7 'galaxies' and 12 'exoplanet transits'; 7 over 20 and 25.
        _canned_family("f3-p0", [(3, 7), (3, 12), (7, 20), (7, 25)], label="astrophysics", depth=2),
        _canned_family("f7-p1", [(7, 20), (7, 25)], label="galaxies and waves", depth=1, nested_in="f3-p0"),
        # No member of this one is labelled, nor the family itself.
        _canned_family("f30-p0", [(30, 1), (30, 2), (30, 4)], label="", depth=1),
    ]
}
"""The families the faked family service has built for DEFAULT_SAE, largest first."""


def _tree_order(family: family_pb2.Family) -> list[tuple[int, int | None]]:
    """(feature, parent) of each member: the parent first, then depth first, children by id."""
    children: dict[int, list[int]] = {}
    for parent, child in zip(family.edge_parents, family.edge_children, strict=True):
        children.setdefault(parent, []).append(child)
    order: list[tuple[int, int | None]] = []

    def visit(feature: int, parent: int | None) -> None:
        order.append((feature, parent))
        for child in sorted(children.get(feature, [])):
            visit(child, feature)

    visit(family.parent_feature, None)
    return order


def _members(family: family_pb2.Family) -> list[family_pb2.FamilyMember]:
    members = []
    for feature, parent in _tree_order(family):
        label = STORED_LABELS.get(feature)
        member = family_pb2.FamilyMember(
            feature=feature,
            density=canned_density(feature),
            label=label.label if label else "",
            label_score=label.embedding_auroc if label else 0.0,
        )
        if parent is not None:
            member.parent = parent
        members.append(member)
    return members


class FakeFamilies(family_pb2_grpc.FamilyServiceServicer):
    """Answers from STORED_FAMILIES; ``requests`` records what each RPC was sent.

    Neighbours are computed from the latent ids (the nearer the id, the closer), feature f of
    DEFAULT_SAE matches features 2f and 2f + 1 of OTHER_SAE, and a build streams three stages and
    spends $0.001 per family when an interpreter model is named.
    """

    service_names: Sequence[str] = ("featurelens.v1.FamilyService",)

    def __init__(self) -> None:
        self.requests: dict[str, list[object]] = {}

    def reset(self) -> None:
        self.requests.clear()

    def add_to_server(self, server: aio.Server) -> None:
        family_pb2_grpc.add_FamilyServiceServicer_to_server(self, server)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _record(self, rpc: str, request: object) -> None:
        self.requests.setdefault(rpc, []).append(request)

    @staticmethod
    def _check_feature(feature: int, latents: int = FAKE_LATENTS) -> None:
        if feature >= latents:
            raise InvalidArgumentError(f"feature {feature} is not below the SAE's {latents} latents")

    @override
    async def BuildFamilies(
        self, request: family_pb2.BuildFamiliesRequest, context: aio.ServicerContext
    ) -> AsyncIterator[family_pb2.BuildFamiliesResponse]:
        self._record("BuildFamilies", request)
        _check_sae(request.sae_id)
        if request.corpus != "arxiv":
            raise NotFoundError(f"no corpus named {request.corpus!r}")
        stages = ["cooccurrence", "tree", "label"]
        for done, stage in enumerate(stages, start=1):
            yield family_pb2.BuildFamiliesResponse(
                progress=common_pb2.Progress(stage=stage, done=done, total=len(stages), message=stage)
            )
        built = len(STORED_FAMILIES)
        yield family_pb2.BuildFamiliesResponse(
            progress=common_pb2.Progress(stage="done", done=len(stages), total=len(stages)),
            families_built=built,
            statistics=family_pb2.FamilyStatistics(
                families=built,
                mean_children=3.0,
                median_children=3.0,
                parent_child=0.42,
                child_child=0.11,
                block_score=0.63,
                block_control=0.08,
                features_in_families=9,
            ),
            llm_calls=built if request.interpreter_model else 0,
            cost_usd=0.001 * built if request.interpreter_model else 0.0,
        )

    @override
    async def ListFamilies(
        self, request: family_pb2.ListFamiliesRequest, context: aio.ServicerContext
    ) -> family_pb2.ListFamiliesResponse:
        self._record("ListFamilies", request)
        _check_sae(request.sae_id)
        families = sorted(STORED_FAMILIES.values(), key=lambda f: -len(f.features))
        token = request.page_token
        if token and not re.fullmatch(r"p[0-9]+", token):
            raise InvalidArgumentError(f"page_token {token!r} is not one this server issued")
        start = int(token[1:]) if token else 0
        end = start + (request.page_size or 100)
        return family_pb2.ListFamiliesResponse(
            families=families[start:end], next_page_token=f"p{end}" if end < len(families) else ""
        )

    @override
    async def GetFamily(
        self, request: family_pb2.GetFamilyRequest, context: aio.ServicerContext
    ) -> family_pb2.GetFamilyResponse:
        self._record("GetFamily", request)
        sae_id = _check_sae(request.sae_id)
        family = STORED_FAMILIES.get(request.family_id)
        if family is None:
            raise NotFoundError(f"{sae_id} has no family {request.family_id!r}; ListFamilies names them")
        return family_pb2.GetFamilyResponse(family=family, members=_members(family))

    @override
    async def FeatureNeighbours(
        self, request: family_pb2.FeatureNeighboursRequest, context: aio.ServicerContext
    ) -> family_pb2.FeatureNeighboursResponse:
        self._record("FeatureNeighbours", request)
        _check_sae(request.sae_id)
        self._check_feature(request.feature)
        if request.kind == family_pb2.NEIGHBOUR_KIND_UNSPECIFIED:
            raise InvalidArgumentError("kind is unspecified; ask for COOCCURRENCE or DECODER")
        others = sorted(
            (f for f in range(FAKE_LATENTS) if f != request.feature), key=lambda f: abs(f - request.feature)
        )
        neighbours = []
        for other in others[: request.top_k or 10]:
            distance = abs(other - request.feature)
            if request.kind == family_pb2.NEIGHBOUR_KIND_COOCCURRENCE:
                score = 1.0 / (1 + distance)
            else:
                score = 1.0 - distance / FAKE_LATENTS
            label = STORED_LABELS.get(other)
            neighbours.append(
                family_pb2.FeatureNeighbour(feature=other, score=score, label=label.label if label else "")
            )
        return family_pb2.FeatureNeighboursResponse(neighbours=neighbours)

    @override
    async def MatchFeatures(
        self, request: family_pb2.MatchFeaturesRequest, context: aio.ServicerContext
    ) -> family_pb2.MatchFeaturesResponse:
        self._record("MatchFeatures", request)
        for sae_id in (request.source_sae_id, request.target_sae_id):
            if sae_id not in (DEFAULT_SAE, OTHER_SAE):
                raise NotFoundError(f"no SAE with id {sae_id!r}; ListSaes names the trained ones")
        features = list(request.features) or list(range(FAKE_LATENTS))
        for feature in features:
            self._check_feature(feature)
        matches = []
        for feature in features:
            # Two candidates, 2f and 2f + 1, the first the closer; the best cosine falls with the id.
            best = 0.95 - feature / 50
            targets = [
                family_pb2.FeatureNeighbour(feature=2 * feature, score=best),
                family_pb2.FeatureNeighbour(feature=2 * feature + 1, score=best - 0.2),
            ]
            matches.append(
                family_pb2.FeatureMatch(source_feature=feature, targets=targets[: request.top_k or 1])
            )
        return family_pb2.MatchFeaturesResponse(matches=matches)

    @override
    async def FeatureFamilies(
        self, request: family_pb2.FeatureFamiliesRequest, context: aio.ServicerContext
    ) -> family_pb2.FeatureFamiliesResponse:
        self._record("FeatureFamilies", request)
        _check_sae(request.sae_id)
        if len(request.features) > 1000:
            raise InvalidArgumentError(f"features names {len(request.features)} latents; at most 1,000")
        answers = []
        for feature in request.features:
            containing = sorted(
                (f for f in STORED_FAMILIES.values() if feature in f.features), key=lambda f: len(f.features)
            )
            answers.append(
                family_pb2.FeatureFamilyList(
                    feature=feature,
                    family_ids=[f.family_id for f in containing],
                    family_labels=[f.label for f in containing],
                )
            )
        return family_pb2.FeatureFamiliesResponse(features=answers)


# -- fixtures --------------------------------------------------------------------------------------


def wordllama_encoder() -> EncoderServicer:
    """The real encoder servicer with the fast static wordllama model and an in-process cache."""
    loader = functools.partial(load_backend, "wordllama", batch_size=64)
    return EncoderServicer({"wordllama": loader}, MemoryEmbeddingCache(16 * 1024 * 1024))


@pytest.fixture(scope="session")
def encoder_address() -> Iterator[str]:
    """A loopback server with the real encoder (wordllama)."""
    server = BackgroundServer([wordllama_encoder()]).start()
    yield server.address
    server.stop()


@pytest.fixture(scope="session")
def fake_search() -> FakeSearch:
    return FakeSearch()


@pytest.fixture(scope="session")
def session_labelling() -> FakeLabelling:
    return FakeLabelling()


@pytest.fixture
def fake_labelling(session_labelling: FakeLabelling) -> Iterator[FakeLabelling]:
    """The faked labelling service of ``services_address``, with no planned failure or record."""
    session_labelling.reset()
    yield session_labelling
    session_labelling.reset()


@pytest.fixture(scope="session")
def session_families() -> FakeFamilies:
    return FakeFamilies()


@pytest.fixture
def fake_families(session_families: FakeFamilies) -> Iterator[FakeFamilies]:
    """The faked family service of ``services_address``, with no record of earlier calls."""
    session_families.reset()
    yield session_families
    session_families.reset()


@pytest.fixture(scope="session")
def services_address(
    fake_search: FakeSearch, session_labelling: FakeLabelling, session_families: FakeFamilies
) -> Iterator[str]:
    """A loopback server with the faked sae, search, labelling and family services (and no encoder)."""
    server = BackgroundServer([FakeSae(), fake_search, session_labelling, session_families]).start()
    yield server.address
    server.stop()


@pytest.fixture
def closed_address() -> str:
    """An address nothing listens on."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture(scope="module")
def fake_sae() -> FakeSae:
    """The faked sae service, to serve with ``serve``."""
    return FakeSae()


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[..., str]]:
    """Serve real servicers on loopback for a module's tests: ``serve([servicer])`` gives the address
    (``serve([servicer], auth=..., tls=...)`` for a server with keys or TLS)."""
    servers: list[BackgroundServer] = []

    def start(servicers: Sequence[Servicer], **server_options: Any) -> str:
        servers.append(BackgroundServer(servicers, **server_options).start())
        return servers[-1].address

    yield start
    for server in servers:
        server.stop()
