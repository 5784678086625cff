"""Fusion of the dense and sparse legs of a hybrid query, shared by every adapter.

Both engines can fuse prefetches themselves, but neither weights DBSF, and they order tied
fused scores differently (RRF ties are common: rank 3 in one leg only ties rank 3 in the
other leg only). Fusing here, from the legs' ids and scores, makes weighting available to both
methods and makes every adapter return exactly the same order: ties go to the smaller key.

Measured against qdrant-edge 0.9.0's own fusion (a prefetch query, 200 hybrid queries at 60k
points, 2 x 100 candidates, top 10): unweighted RRF (``Rrf(k=rrf_k + 1)``) gives the same scores
to 2e-9 (float32), but every query had ties in its top 10 and the engine broke them otherwise: the
same order in 11 of 200 queries, the same ten hits in 192; weighted RRF (1, 0.5) and weighted DBSF
gave other scores and other hits in all 200; unweighted DBSF gave the same order in all 200, with
scores off by up to 2e-6 (float32). Nor does an engine-fused hit carry the legs' raw scores that
``ScoredPoint`` reports. The engine's fusion would save ~0.5 ms a query (one call fusing and
fetching the page instead of legs + fusion + retrieve), not enough to give up one answer for both
adapters.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple
from uuid import UUID

from featurelens.store.types import FusionMethod

PointKey = str | int | UUID
"""A point's id as an engine returns it, or a stand-in that orders the same way; the keys of one
fusion are all of one type. A UUID orders like its canonical string and like its ``.int``, so an
adapter may fuse on UUID objects or, cheaper, on their ints: at 2 x 100 candidates the UUIDs'
Python-level ``__hash__`` and ``__lt__`` ran ~1,000 times per query and cost more than the rest
of the fusion (``base.EngineStore`` fuses on ints)."""


class LegHit(NamedTuple):
    """One hit of one leg: the point's key and the leg's raw score (a tuple: cheap to build)."""

    key: PointKey
    score: float


@dataclass(frozen=True)
class FusedHit:
    """A fused hit with the raw score it had in each leg (None: not among that leg's hits)."""

    key: PointKey
    score: float
    leg_scores: tuple[float | None, ...]


def _rrf(count: int, weight: float, rrf_k: int) -> list[float]:
    return [weight / (rrf_k + rank) for rank in range(1, count + 1)]


def _dbsf(scores: Sequence[float], weight: float) -> list[float]:
    # Qdrant's DBSF: scores mapped linearly so that mean - 3σ -> 0 and mean + 3σ -> 1 (sample σ);
    # a leg with one hit or no spread maps to 0.5.
    if len(scores) < 2:
        return [weight * 0.5] * len(scores)
    mean = math.fsum(scores) / len(scores)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
    if std == 0.0:
        return [weight * 0.5] * len(scores)
    low, span = mean - 3.0 * std, 6.0 * std
    return [weight * (s - low) / span for s in scores]


def fuse(
    legs: Sequence[Sequence[LegHit]],
    weights: Sequence[float],
    method: FusionMethod,
    rrf_k: int = 60,
    limit: int | None = None,
) -> list[FusedHit]:
    """The best ``limit`` (default: all) hits of all legs by ``method``, one weight per leg.

    RRF: ``sum(weight / (rrf_k + rank))`` with ranks from 1 (Qdrant's native RRF with k = K
    gives the same scores as this with rrf_k = K - 1). DBSF: ``sum(weight * normalised)``.
    A leg with weight 0 still reports its raw scores but adds nothing. Ties: smaller key first.
    """
    keys = [[hit.key for hit in leg] for leg in legs]
    scores = [[hit.score for hit in leg] for leg in legs]
    return fuse_columns(keys, scores, weights, method, rrf_k, limit)


def fuse_columns(
    keys: Sequence[Sequence[PointKey]],
    scores: Sequence[Sequence[float]],
    weights: Sequence[float],
    method: FusionMethod,
    rrf_k: int = 60,
    limit: int | None = None,
) -> list[FusedHit]:
    """``fuse`` with each leg given as its keys and its raw scores, in rank order (no LegHit to
    build: what an adapter has at hand when its engine's hits come as objects)."""
    if len(weights) != len(keys) or len(scores) != len(keys):
        raise ValueError(f"fusion needs one weight per leg, got {len(weights)} for {len(keys)} legs")
    fused: dict[PointKey, float] = {}
    raw: list[dict[PointKey, float]] = []
    for leg_keys, leg_scores, weight in zip(keys, scores, weights, strict=True):
        if len(leg_keys) != len(leg_scores):
            raise ValueError(f"a leg has {len(leg_keys)} keys and {len(leg_scores)} scores")
        if method is FusionMethod.RRF:
            parts = _rrf(len(leg_keys), weight, rrf_k)
        else:
            parts = _dbsf(leg_scores, weight)
        # A key twice in one leg (no engine does that): both parts count, its last score is reported.
        for key, part in zip(leg_keys, parts, strict=True):
            fused[key] = fused[key] + part if key in fused else part
        raw.append(dict(zip(leg_keys, leg_scores, strict=True)))
    # (-score, key) tuples compare in C: ties go to the smaller key.
    ranked = [(-score, key) for key, score in fused.items()]
    ordered = sorted(ranked) if limit is None else heapq.nsmallest(limit, ranked)
    return [FusedHit(key, -negated, tuple(leg_raw.get(key) for leg_raw in raw)) for negated, key in ordered]
