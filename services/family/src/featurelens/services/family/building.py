"""One BuildFamilies call: read the corpus's activations, build the families, store and label them.

1. The corpus must hold the SAE's latents; search's ExportActivations streams every document's
   latents, which become the binary activation matrix A (``activations_from_topk``).
2. The core builds the families from A (sparse co-occurrence, one threshold, maximum spanning
   forests over several passes, size filter, Jaccard deduplication) and their statistics, in a
   worker thread: seconds at 60k documents × 10k latents, so a build is rerun rather than resumed.
3. The sae service's unit decoder directions of the members give each family its direction (their
   sum, normalised, is what steering by the family adds) and its ``direction_norm`` (that sum's
   length).
4. The families replace the SAE's old ones (``FamilyStore.replace_all``: the new are written
   before the stale are deleted, so a reader never sees none), and A is kept on disk for
   FeatureNeighbours (``activations``).
5. The labelling service names the families (``LabelFamilies``: its LLM path with its cache, cost
   and budget, or offline from the members' labels). When it cannot (down, not implemented, a
   refused model or budget), the families stay unlabelled and the last message says why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from featurelens.families import (
    Cooccurrence,
    ExtractionConfig,
    Family,
    FamilyStats,
    GraphConfig,
    cooccurrence,
    extract_families,
    family_directions,
    family_stats,
    thresholded_edges,
)
from featurelens.kit import FailedPreconditionError, ServiceError, fields
from featurelens.kit.names import corpus_name
from featurelens.kit.progress import Stopwatch
from featurelens.services.family import convert, validation
from featurelens.services.family.activations import ActivationFiles
from featurelens.services.family.dependencies import Peers, SaeFacts
from featurelens.services.family.stored import StoredFamilies
from featurelens.store.families import FamilyRecord
from featurelens.v1 import common_pb2, family_pb2, labelling_pb2

logger = logging.getLogger(__name__)

#: Families per LabelFamilies call (the labelling service's limit).
LABEL_BATCH = 10_000


@dataclass(frozen=True)
class Built:
    """What the core made of the activations."""

    families: list[Family]
    stats: FamilyStats
    edges: int
    candidates_per_pass: list[int]


@dataclass(frozen=True)
class LabelOptions:
    interpreter_model: str
    budget_usd: float
    domain: str


@dataclass
class Spend:
    """LLM use of the family labels, summed over LabelFamilies calls."""

    llm_calls: int = 0
    cost_usd: float = 0.0


def build(cooc: Cooccurrence, threshold: float, min_family_size: int) -> Built:
    """The families of the co-occurrence and their statistics (blocking: run in a thread)."""
    edges = thresholded_edges(cooc, GraphConfig(threshold=threshold))
    candidates: list[int] = []
    families = extract_families(
        edges,
        cooc.densities,
        cooc.num_docs,
        ExtractionConfig(min_family_children=min_family_size),
        on_pass=lambda _pass, found: candidates.append(found),
    )
    stats = family_stats(families, cooc)
    return Built(families, stats, edges.num_edges, candidates)


class BuildJob:
    """Runs BuildFamilies requests; one build of an SAE at a time."""

    def __init__(self, peers: Peers, stored: StoredFamilies, files: ActivationFiles) -> None:
        self.peers = peers
        self.stored = stored
        self.files = files
        self._running: set[str] = set()

    async def run(
        self, request: family_pb2.BuildFamiliesRequest
    ) -> AsyncIterator[family_pb2.BuildFamiliesResponse]:
        corpus = corpus_name(request.corpus)
        validation.sae_id(request.sae_id)
        threshold = validation.threshold(request.threshold)
        min_size = validation.count(
            request.min_family_size,
            "min_family_size",
            validation.DEFAULT_MIN_FAMILY_SIZE,
            validation.MAX_MIN_FAMILY_SIZE,
        )
        options = LabelOptions(
            fields.model_name(request.interpreter_model, "interpreter_model"),
            validation.budget(request.budget_usd),
            fields.domain(request.domain, ""),
        )
        sae = await self.peers.sae_facts(request.sae_id)
        documents = (await self.peers.corpus(corpus, sae.sae_id)).documents
        if sae.sae_id in self._running:
            raise FailedPreconditionError(
                f"the families of SAE {sae.sae_id!r} are being built already; wait for that build to end"
            )
        self._running.add(sae.sae_id)
        try:
            async for message in self._build(corpus, sae, documents, threshold, min_size, options):
                yield message
        finally:
            self._running.discard(sae.sae_id)

    async def _build(
        self,
        corpus: str,
        sae: SaeFacts,
        documents: int,
        threshold: float,
        min_size: int,
        options: LabelOptions,
    ) -> AsyncIterator[family_pb2.BuildFamiliesResponse]:
        watch = Stopwatch()
        yield _message(
            watch.progress("read", 0, documents, f"reading the latents of SAE {sae.sae_id!r} in {corpus!r}")
        )
        blocks: list[sp.csr_array] = []
        read = 0
        async for block in self.peers.activation_batches(corpus, sae):
            blocks.append(block)
            read += block.shape[0]
            line = f"read {read:,} of {documents:,} documents"
            yield _message(watch.progress("read", read, documents, line))
        cooc = await asyncio.to_thread(cooccurrence_of, blocks, sae.num_latents)
        del blocks

        watch = Stopwatch()
        built = await asyncio.to_thread(build, cooc, threshold, min_size)
        passes = ", ".join(f"{n:,}" for n in built.candidates_per_pass)
        yield _message(
            watch.progress(
                "extract",
                1,
                1,
                f"{built.edges:,} co-occurrence edges at threshold {threshold:g}; candidate families per "
                f"pass: {passes}; {len(built.families):,} kept with at least {min_size} children",
            )
        )

        members = sorted({m for family in built.families for m in family.members})
        unit = await self.peers.directions(sae.sae_id, members)
        directions = family_directions(built.families, members, unit)
        now = int(time.time())
        items = [
            (
                FamilyRecord.of(
                    sae.sae_id,
                    family,
                    corpus=corpus,
                    threshold=threshold,
                    created_unix=now,
                    member_counts=[int(cooc.densities[m]) for m in family.members],
                    documents=cooc.num_docs,
                    direction_norm=norm,
                    extra={"min_family_size": min_size},
                ),
                direction,
            )
            for family, (direction, norm) in zip(built.families, directions, strict=True)
        ]
        await asyncio.to_thread(self.files.save, sae.sae_id, corpus, cooc)
        stored = await self.stored.replace(sae.sae_id, items, unit.shape[1] if members else sae.d_in)
        yield _message(
            watch.progress("store", stored, stored, f"stored {stored:,} families of SAE {sae.sae_id!r}")
        )

        spend = Spend()
        note = ""
        if items:
            labels: dict[str, str] = {}
            try:
                async for message in self._label([record for record, _ in items], options, labels, spend):
                    yield message
            except ServiceError as error:
                logger.warning("families of SAE %r left unlabelled: %s", sae.sae_id, error)
                note = f"; families left unlabelled: {error}"
            if labels:
                await self.stored.set_labels(sae.sae_id, labels)
            if not note and len(labels) < len(items):
                note = f"; {len(items) - len(labels):,} families left unlabelled"
        final = _message(
            watch.progress(
                "done",
                stored,
                stored,
                f"built {stored:,} families of SAE {sae.sae_id!r} from {cooc.num_docs:,} documents of "
                f"{corpus!r}{note}",
            )
        )
        final.families_built = stored
        final.statistics.CopyFrom(convert.statistics(built.stats))
        final.llm_calls = spend.llm_calls
        final.cost_usd = spend.cost_usd
        yield final

    async def _label(
        self,
        records: Sequence[FamilyRecord],
        options: LabelOptions,
        labels: dict[str, str],
        spend: Spend,
    ) -> AsyncIterator[family_pb2.BuildFamiliesResponse]:
        """Names the families through the labelling service, filling ``labels`` and ``spend``."""
        watch = Stopwatch()
        yield _message(watch.progress("label", 0, len(records), f"labelling {len(records):,} families"))
        for start in range(0, len(records), LABEL_BATCH):
            chunk = records[start : start + LABEL_BATCH]
            request = labelling_pb2.LabelFamiliesRequest(
                sae_id=chunk[0].sae_id,
                families=[
                    labelling_pb2.FamilyToLabel(
                        family_id=r.family_id, parent_feature=r.root, features=list(r.children)
                    )
                    for r in chunk
                ],
                interpreter_model=options.interpreter_model,
                budget_usd=options.budget_usd,
                domain=options.domain,
            )
            calls, cost = 0, 0.0
            async for answer in self.peers.label_families(request):
                calls, cost = int(answer.llm_calls), float(answer.cost_usd)
                if answer.family_id and answer.label:
                    labels[answer.family_id] = answer.label
                    message = _message(
                        watch.progress(
                            "label", len(labels), len(records), f"family {answer.family_id}: {answer.label!r}"
                        )
                    )
                    message.llm_calls = spend.llm_calls + calls
                    message.cost_usd = spend.cost_usd + cost
                    yield message
            spend.llm_calls += calls
            spend.cost_usd += cost


def cooccurrence_of(blocks: Sequence[sp.csr_array], num_latents: int) -> Cooccurrence:
    """The co-occurrence of activation blocks stacked in order (blocking: run in a thread)."""
    if not blocks:
        return cooccurrence(sp.csr_array((0, num_latents), dtype=np.int32))
    return cooccurrence(sp.vstack(blocks, format="csr"))


def _message(progress: common_pb2.Progress) -> family_pb2.BuildFamiliesResponse:
    return family_pb2.BuildFamiliesResponse(progress=progress)
