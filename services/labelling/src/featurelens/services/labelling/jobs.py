"""One LabelFeatures call: check it, find the features, label them, store and stream each label.

1. The corpus must hold the SAE's latents; one pass over them counts where each latent fires
   (its density, and which latents are live).
2. The features asked for (all live latents when none are named), less those labelled already
   unless ``overwrite``, are labelled by ``featurelens.interp.job.run_job``; a latent that never
   fires in the corpus is reported as failed, not labelled from nothing.
3. Each label is stored as it finishes, so a cancelled or stopped job keeps what is done and a
   rerun resumes where it stopped.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from featurelens.interp.job import EventKind, JobEvent, run_job
from featurelens.interp.labelling import LabelOutcome, LabelSettings, label_feature
from featurelens.interp.llm import LlmRequestError, LlmUnavailableError
from featurelens.interp.types import Usage
from featurelens.kit import ServiceError, fields
from featurelens.kit.names import corpus_name
from featurelens.kit.progress import Stopwatch
from featurelens.services.labelling import convert, validation
from featurelens.services.labelling.dependencies import EncoderEmbedder, Peers, SearchDocuments
from featurelens.services.labelling.labellers import LabellerFactory, Labellers
from featurelens.services.labelling.labels import Labels
from featurelens.v1 import labelling_pb2

logger = logging.getLogger(__name__)


@dataclass
class Tally:
    """Counts of one job, for its progress messages."""

    total: int
    labelled: int = 0
    skipped: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.labelled + self.skipped + self.failed


#: LLM answers that mean every call would fail the same way (bad key, no access, no such model).
FATAL_LLM_STATUSES = frozenset({401, 403, 404})


def is_fatal(error: BaseException) -> bool:
    """A peer service down or refusing, an endpoint that cannot serve, a key or model it refuses:
    every feature would fail the same way, so the job stops with that error."""
    if isinstance(error, ServiceError | LlmUnavailableError):
        return True
    return isinstance(error, LlmRequestError) and error.status in FATAL_LLM_STATUSES


class LabelJob:
    """Runs LabelFeatures requests."""

    def __init__(
        self, peers: Peers, labels: Labels, labellers: LabellerFactory, concurrency: int, domain: str
    ) -> None:
        self.peers = peers
        self.labels = labels
        self.labellers = labellers
        self.concurrency = concurrency
        self.default_domain = domain

    async def run(
        self, request: labelling_pb2.LabelFeaturesRequest
    ) -> AsyncIterator[labelling_pb2.LabelFeaturesResponse]:
        validation.sae_id(request.sae_id)
        corpus = corpus_name(request.corpus)
        requested = fields.feature_ids(request.features, validation.MAX_JOB_FEATURES)
        plan = self.labellers.plan(
            request.llm_base_url, request.interpreter_model, request.predictor_model, request.budget_usd
        )
        examples = validation.example_config(
            request.top_documents or plan.default_top_documents, request.scoring_documents
        )
        domain = fields.domain(request.domain, self.default_domain)
        sae = await self.peers.sae_facts(request.sae_id)
        sae_id = sae.sae_id
        facts = await self.peers.corpus(corpus, sae_id)
        num_latents = sae.num_latents
        fields.check_latents(requested, num_latents, sae_id)

        watch = Stopwatch()
        yield labelling_pb2.LabelFeaturesResponse(
            progress=watch.progress(
                "count", 0, 0, f"counting where {num_latents:,} latents fire in {corpus!r}"
            )
        )
        counts = await self.peers.firing_counts(corpus, sae_id, num_latents)
        densities = counts / max(facts.documents, 1)
        features = requested or [int(f) for f in np.flatnonzero(counts)]
        silent = [f for f in features if counts[f] == 0]
        features = [f for f in features if counts[f] > 0]
        tally = Tally(total=len(features) + len(silent))
        if not request.overwrite:
            labelled = await self.labels.labelled(sae_id)
            before = len(features)
            features = [f for f in features if f not in labelled]
            tally.skipped = before - len(features)

        source = SearchDocuments(self.peers, corpus, sae_id)
        embedder = EncoderEmbedder(self.peers, facts.embedding_model)
        background = await source.background(features[0], request.seed) if plan.offline and features else []
        labellers = plan.build(embedder, background)
        try:  # the labellers hold an HTTP client (LLM jobs): closed however the job ends
            settings = LabelSettings(
                examples=examples, domain=domain, seed=request.seed, threshold=labellers.threshold
            )
            await self.labels.ensure(sae_id, facts.dim)
            watch = Stopwatch()
            start = f"labelling {len(features):,} features with {labellers.description}"
            if tally.skipped:
                start += f" ({tally.skipped:,} labelled already; overwrite to relabel them)"
            yield self._message(watch, tally, labellers, start)
            for feature in silent:
                tally.failed += 1
                response = self._message(
                    watch, tally, labellers, f"latent {feature} never fires in {corpus!r}"
                )
                response.failed_feature = feature
                response.failure_reason = (
                    f"latent {feature} fires on no document of corpus {corpus!r}; nothing to label"
                )
                yield response

            label_one = functools.partial(
                _label_one,
                sae_id=sae_id,
                corpus=corpus,
                densities=densities,
                source=source,
                labellers=labellers,
                embedder=embedder,
                settings=settings,
            )
            budget_stop = ""
            async for event in run_job(features, label_one, self.concurrency, is_fatal):
                if event.kind is EventKind.BUDGET:
                    budget_stop = event.reason
                    continue
                yield await self._report(event, watch, tally, labellers)
            line = (
                f"labelled {tally.labelled:,}, skipped {tally.skipped:,}, failed {tally.failed:,}; "
                f"{spend_line(labellers.spend())}"
            )
            if budget_stop:
                line = f"stopped at the budget ({budget_stop}); " + line
            final = self._message(watch, tally, labellers, line)
            final.budget_exhausted = bool(budget_stop)
            yield final
        finally:
            await labellers.aclose()

    async def _report(
        self, event: JobEvent[LabelOutcome], watch: Stopwatch, tally: Tally, labellers: Labellers
    ) -> labelling_pb2.LabelFeaturesResponse:
        if event.kind is EventKind.LABELLED and event.outcome is not None:
            outcome = event.outcome
            await self.labels.put(outcome.record, outcome.vector)
            tally.labelled += 1
            response = self._message(
                watch, tally, labellers, f"feature {event.feature}: {outcome.record.label!r}"
            )
            response.label.CopyFrom(convert.feature_label(outcome.record))
            return response
        tally.failed += 1
        response = self._message(watch, tally, labellers, f"feature {event.feature} failed: {event.reason}")
        response.failed_feature = event.feature
        response.failure_reason = event.reason
        return response

    def _message(
        self, watch: Stopwatch, tally: Tally, labellers: Labellers, line: str
    ) -> labelling_pb2.LabelFeaturesResponse:
        spend = labellers.spend()
        return labelling_pb2.LabelFeaturesResponse(
            progress=watch.progress("label", tally.done, tally.total, line),
            tokens_used=spend.tokens,
            cache_hits=spend.cache_hits,
            llm_calls=spend.calls,
            cost_usd=spend.cost_usd,
            skipped=tally.skipped,
            failed=tally.failed,
        )


async def _label_one(
    feature: int,
    *,
    sae_id: str,
    corpus: str,
    densities: np.ndarray,
    source: SearchDocuments,
    labellers: Labellers,
    embedder: EncoderEmbedder,
    settings: LabelSettings,
) -> LabelOutcome:
    return await label_feature(
        feature,
        sae_id=sae_id,
        corpus=corpus,
        density=float(densities[feature]),
        source=source,
        interpreter=labellers.interpreter,
        predictor=labellers.predictor,
        embedder=embedder,
        settings=settings,
    )


def spend_line(spend: Usage) -> str:
    return (
        f"{spend.calls:,} LLM calls, {spend.cache_hits:,} cache hits, {spend.tokens:,} tokens, "
        f"${spend.cost_usd:.4f}"
    )
