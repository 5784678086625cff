"""Search: embed the query, steer it through the SAE, query the store, explain the hits.

Dense mode searches the embedding; sparse mode the query's SAE latents; hybrid fuses both legs.
A steered query searches the steered vector (dense leg) and its re-encoded latents (sparse
leg). An intervention list that changes nothing (none, or only additive weights of 0) is not
sent to the sae service at all, so its ranking is the unsteered ranking exactly. Family targets
are expanded to their member features first (by a ``FamilyExpander``) and phrase targets
resolved to the labelled feature they name (by a ``PhraseResolver``), and the resolved list is
checked by the rule every service shares (``featurelens.steering``), so sae never refuses what
search sends it with a position the user never sent. An additive family is one direction: its
weight is shared by its members (``resolve_targets``), so a weight of 0 is still no change. The
response lists every steered feature and where it came from; the labels of steered and
explaining features come from one lookup, the families of explaining features from another, run
side by side.

Rank changes compare the steered page with the unsteered ranking read from rank 1 down to
``offset + top_k``, but never deeper than the store answers in one query (``RANK_DEPTH``, 10,000
ranks): a hit below that depth reports ``rank_before`` 0, as one that was not found at all. So
every page the validation accepts is served, rank changes included.

A name no corpus has may be a Qdrant collection an SAE is attached to (``attaching``): it is
searched as a corpus holding that SAE and the chosen dense vector, through
``featurelens.store.foreign_query`` (same checks, legs, fusion and ties), with the caller's Qdrant
filter ANDed in and their payload keys on each hit.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from featurelens.kit import FailedPreconditionError, InvalidArgumentError, NotFoundError
from featurelens.kit.echo import shown
from featurelens.kit.interventions import interventions_to_proto
from featurelens.services.search import attaching, convert
from featurelens.services.search.attaching import AttachedTarget
from featurelens.services.search.corpora import Corpora, Corpus
from featurelens.services.search.dependencies import Dependencies
from featurelens.services.search.explain import Contribution, LabelLookup, explain
from featurelens.services.search.families import FamilyExpander
from featurelens.services.search.phrases import PhraseResolver
from featurelens.services.search.saes import resolve_sae
from featurelens.services.search.validation import SearchQuery
from featurelens.steering import (
    FamilyIntervention,
    PhraseIntervention,
    PhraseMatch,
    SteerPlan,
    check_interventions,
    resolve_targets,
)
from featurelens.store import DocFilter, FeatureRef, QueryRequest, ScoredPoint, SearchMode, SparseVec
from featurelens.store.plan import MAX_TOP_K
from featurelens.v1 import search_pb2

#: Deepest unsteered rank a search with rank changes reads (the store's most hits per query).
RANK_DEPTH = MAX_TOP_K
#: Largest score a Hit carries: its ``score`` field is a float32.
_MAX_SCORE = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class QueryVectors:
    """What one run of the query searches with."""

    dense: npt.NDArray[np.float32]
    sparse: SparseVec | None


class Searcher:
    """Runs checked SearchQuery objects against the corpora."""

    def __init__(
        self,
        corpora: Corpora,
        dependencies: Dependencies,
        labels: LabelLookup,
        families: FamilyExpander,
        phrases: PhraseResolver,
    ) -> None:
        self.corpora = corpora
        self.dependencies = dependencies
        self.labels = labels
        self.families = families
        self.phrases = phrases

    async def search(self, query: SearchQuery) -> search_pb2.SearchResponse:
        corpus, attached = await self._target(query)
        if attached is not None:
            sae_id = attached.sae.sae_id if query.needs_sae else ""
        else:
            sae_id = await resolve_sae(corpus, query.sae_id, self.dependencies) if query.needs_sae else ""
        self._check_features(query, corpus, sae_id)
        plan, matches = await self._steer_plan(query, corpus, sae_id)
        vector = await self._query_vector(query, corpus)
        needs_latents = query.mode is not SearchMode.DENSE or query.explain
        response = search_pb2.SearchResponse(sae_id=sae_id)
        steering = plan.changes_vector
        if steering:
            interventions = interventions_to_proto(plan.interventions)
            try:
                steered = await self.dependencies.steer(sae_id, vector, interventions)
            except InvalidArgumentError as error:
                raise _query_refused(sae_id, error) from None
            before = QueryVectors(vector, steered.latents_before)
            after = QueryVectors(_unit(steered.vector), steered.latents_after)
            response.steer_cosine = steered.cosine
        else:
            latents = None
            if needs_latents:
                try:
                    _, rows = await self.dependencies.encode(sae_id, vector[np.newaxis, :])
                except InvalidArgumentError as error:
                    raise _query_refused(sae_id, error) from None
                latents = rows[0]
            before = after = QueryVectors(vector, latents)
            if query.interventions:
                response.steer_cosine = 1.0
        doc_filter = _doc_filter(query, sae_id)
        if steering and query.with_rank_changes:
            depth = min(query.top_k + query.offset, RANK_DEPTH)
            hits, unsteered = await asyncio.gather(
                self._run(query, corpus, sae_id, after, doc_filter, query.top_k, query.offset, attached),
                self._run(query, corpus, sae_id, before, doc_filter, depth, 0, attached),
            )
        else:
            hits = await self._run(
                query, corpus, sae_id, after, doc_filter, query.top_k, query.offset, attached
            )
            unsteered = None
        _check_scores(hits, unsteered)
        shared = self._explain(query, sae_id, after.sparse, hits)
        explaining = {item.feature for items in shared for item in items}
        wanted = sorted(explaining | {item.feature for item in plan.interventions})
        labels, families = await asyncio.gather(
            self.labels.labels(sae_id, wanted) if wanted else _nothing(),
            self.families.families_of(sae_id, sorted(explaining)) if explaining else _nothing(),
        )
        explanations = [convert.contributions(items, labels, families) for items in shared]
        response.steered.extend(convert.steered(plan, labels, matches))
        foreign = attached is not None
        ranks_before = {p.doc_id: rank for rank, p in enumerate(unsteered or (), start=1)}
        for position, (point, explanation) in enumerate(zip(hits, explanations, strict=True)):
            rank = query.offset + position + 1
            rank_before = 0
            if query.with_rank_changes:
                rank_before = ranks_before.get(point.doc_id, 0) if unsteered is not None else rank
            response.hits.append(convert.hit(point, rank, rank_before, explanation, foreign=foreign))
        if unsteered is not None:
            kept = {point.doc_id for point in hits}
            for rank, point in enumerate(unsteered[query.offset :], start=query.offset + 1):
                if point.doc_id not in kept:
                    response.dropped.append(convert.hit(point, 0, rank, foreign=foreign))
        return response

    async def _target(self, query: SearchQuery) -> tuple[Corpus, AttachedTarget | None]:
        """The corpus searched; for a Qdrant collection an SAE is attached to (tried when no corpus
        has the name), the SAE and dense vector used too, and the collection seen as a corpus."""
        try:
            corpus = await self.corpora.recent(query.corpus)
        except (NotFoundError, InvalidArgumentError):
            found = await attaching.find_attached(self.corpora, query.corpus)
            if found is None:
                raise
            _refuse_corpus_filter(query)
            target = await attaching.attached_target(
                self.dependencies, found, query.sae_id, query.dense_vector, query.needs_sae
            )
            return target.as_corpus(), target
        _refuse_attached_options(query)
        if query.sae_id and query.sae_id not in corpus.sae_ids:
            corpus = await self.corpora.get(query.corpus)  # the SAE may have been added since
        return corpus, None

    async def _steer_plan(
        self, query: SearchQuery, corpus: Corpus, sae_id: str
    ) -> tuple[SteerPlan, dict[str, PhraseMatch]]:
        """The interventions with each family replaced by its member features (with their share of
        its weight) and each phrase by the feature it names, checked as a whole; and the phrases'
        matches."""
        requested = query.interventions
        if not requested:
            return SteerPlan(()), {}
        family_ids = list(dict.fromkeys(i.family_id for i in requested if isinstance(i, FamilyIntervention)))
        phrases = list(dict.fromkeys(i.phrase for i in requested if isinstance(i, PhraseIntervention)))
        found, matched = await asyncio.gather(
            asyncio.gather(*(self.families.members(sae_id, family) for family in family_ids)),
            asyncio.gather(*(self.phrases.match(sae_id, phrase) for phrase in phrases)),
        )
        matches = dict(zip(phrases, matched, strict=True))
        resolved = resolve_targets(requested, dict(zip(family_ids, found, strict=True)), matches)
        plan = check_interventions(resolved, num_latents=corpus.require_sae(sae_id) or None, sae_id=sae_id)
        return plan, matches

    @staticmethod
    def _check_features(query: SearchQuery, corpus: Corpus, sae_id: str) -> None:
        for feature in query.must_fire:
            corpus.check_feature(sae_id, feature, "filter feature")
        for feature in query.must_not_fire:
            corpus.check_feature(sae_id, feature, "filter feature")

    async def _query_vector(self, query: SearchQuery, corpus: Corpus) -> npt.NDArray[np.float32]:
        if query.text is not None:
            embedded = await self.dependencies.embed([query.text], corpus.embedding_model)
            vector = embedded.vectors[0]
            if vector.shape[0] != corpus.dim:
                raise FailedPreconditionError(
                    f"the encoder's model {embedded.model_id!r} makes {vector.shape[0]}-dim embeddings, but "
                    f"corpus {corpus.name!r} holds {corpus.dim}-dim ones"
                )
            return np.array(vector, dtype=np.float32)
        assert query.vector is not None
        if query.vector.shape[0] != corpus.dim:
            raise InvalidArgumentError(
                f"the query vector has {query.vector.shape[0]} dims, but corpus {corpus.name!r} holds "
                f"{corpus.dim}-dim embeddings"
            )
        return query.vector

    async def _run(
        self,
        query: SearchQuery,
        corpus: Corpus,
        sae_id: str,
        vectors: QueryVectors,
        doc_filter: DocFilter | None,
        top_k: int,
        offset: int,
        attached: AttachedTarget | None = None,
    ) -> list[ScoredPoint]:
        mode = query.mode
        if mode is not SearchMode.DENSE and (vectors.sparse is None or not np.any(vectors.sparse.values)):
            # No latent fires on the query: the sparse leg matches nothing.
            if mode is SearchMode.SPARSE:
                return []
            mode = SearchMode.DENSE
        request = QueryRequest(
            mode=mode,
            dense=vectors.dense,
            sparse=vectors.sparse if mode is not SearchMode.DENSE else None,
            sae_id=sae_id or None,
            top_k=top_k,
            offset=offset,
            filter=doc_filter,
            fusion=query.fusion,
            dense_weight=query.dense_weight,
            sparse_weight=query.sparse_weight,
            with_payload=list(query.payload_fields) if attached else convert.hit_fields(query.with_text),
            with_sparse=[sae_id] if query.explain else False,
        )
        if attached is not None:
            collection = attached.attached.collection
            return await self.corpora.run(
                collection.query,
                request,
                attached.dense_vector,
                attached.dense_dim,
                corpus.sae_ids,
                query.qdrant_filter,
            )
        return await self.corpora.search(corpus.name, request)

    @staticmethod
    def _explain(
        query: SearchQuery, sae_id: str, latents: SparseVec | None, hits: Sequence[ScoredPoint]
    ) -> list[list[Contribution]]:
        """Each hit's shared features with the query (none without ``explain``)."""
        if not query.explain or latents is None:
            return [[] for _ in hits]
        empty = SparseVec([], [])
        return [explain(latents, point.sparse.get(sae_id, empty)) for point in hits]


async def _nothing() -> dict[int, Any]:
    """What a lookup of no features finds (without asking anyone)."""
    return {}


def _query_refused(sae_id: str, error: InvalidArgumentError) -> InvalidArgumentError:
    """The sae service's refusal of the query's vector, as the client sent it.

    The query's features, interventions and dimension are checked here first, by the same rules, so
    what sae still refuses is the vector's size: latents beyond the bound every vector shares.
    """
    return InvalidArgumentError(f"the query vector is too large for SAE {sae_id} ({error})")


def _check_scores(*results: Sequence[ScoredPoint] | None) -> None:
    """The last line before the answer: a score that is not a finite float32 is refused, never sent.

    The bounds on vectors and leg weights keep every score finite; this names the hit if one is not.
    """
    for points in results:
        for point in points or ():
            if not (math.isfinite(point.score) and abs(point.score) <= _MAX_SCORE):
                raise InvalidArgumentError(
                    f"the query scored document {shown(point.doc_id)} {point.score:g}, which a response "
                    "cannot carry; use a smaller query vector or leg weights"
                )


def _refuse_corpus_filter(query: SearchQuery) -> None:
    """Categories and dates are fields of featurelens corpora, not of an attached collection."""
    if query.categories or query.date_from or query.date_to:
        raise InvalidArgumentError(
            f"collection {query.corpus!r} is an attached Qdrant collection, which has no featurelens "
            "categories or dates; filter its own payload with qdrant_filter"
        )


def _refuse_attached_options(query: SearchQuery) -> None:
    """qdrant_filter, payload_fields and dense_vector apply to attached collections only."""
    used = [
        name
        for name, value in (
            ("qdrant_filter", query.qdrant_filter),
            ("payload_fields", query.payload_fields),
            ("dense_vector", query.dense_vector),
        )
        if value
    ]
    if used:
        raise InvalidArgumentError(
            f"{' and '.join(used)} apply only to a Qdrant collection an SAE is attached to; corpus "
            f"{query.corpus!r} is a featurelens corpus: use filter instead"
        )


def _unit(vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise FailedPreconditionError("steering cancelled the query vector out; use smaller weights")
    return (vector / norm).astype(np.float32)


def _doc_filter(query: SearchQuery, sae_id: str) -> DocFilter | None:
    flt = DocFilter(
        categories=query.categories,
        date_from=query.date_from,
        date_to=query.date_to,
        must_fire=tuple(FeatureRef(sae_id, f) for f in query.must_fire),
        must_not_fire=tuple(FeatureRef(sae_id, f) for f in query.must_not_fire),
    )
    return None if flt.is_empty() else flt
