"""Fusion of the dense and sparse legs of a hybrid query, shared by every adapter.

Both engines can fuse prefetches themselves, but neither weights DBSF, and they order tied
fused scores differently (RRF ties are common: rank 3 in one leg only ties rank 3 in the
other leg only). Fusing here, from the legs' ids and scores, makes weighting available to both
methods and makes every adapter return exactly the same order: ties go to the smaller key.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from featurelens.store.types import FusionMethod

PointKey = str | int | UUID
"""A point's id as an engine returns it; the keys of one fusion are all of one type. A UUID
orders like its canonical string, so an adapter may pass its engine's UUID objects as they come
(fusing 2 x 100 candidates took 0.45 ms with their ids made strings first, 0.36 ms without)."""


@dataclass(frozen=True)
class LegHit:
    """One hit of one leg: the point's key and the leg's raw score."""

    key: PointKey
    score: float


@dataclass(frozen=True)
class FusedHit:
    """A fused hit with the raw score it had in each leg (None: not among that leg's hits)."""

    key: PointKey
    score: float
    leg_scores: tuple[float | None, ...]


def _rrf(leg: Sequence[LegHit], weight: float, rrf_k: int) -> list[float]:
    return [weight / (rrf_k + rank) for rank in range(1, len(leg) + 1)]


def _dbsf(leg: Sequence[LegHit], weight: float) -> list[float]:
    # Qdrant's DBSF: scores mapped linearly so that mean - 3σ -> 0 and mean + 3σ -> 1 (sample σ);
    # a leg with one hit or no spread maps to 0.5.
    scores = [hit.score for hit in leg]
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
    if len(weights) != len(legs):
        raise ValueError(f"fusion needs one weight per leg, got {len(weights)} for {len(legs)} legs")
    scores: dict[PointKey, float] = {}
    raw: dict[PointKey, list[float | None]] = {}
    for position, (leg, weight) in enumerate(zip(legs, weights, strict=True)):
        parts = _rrf(leg, weight, rrf_k) if method is FusionMethod.RRF else _dbsf(leg, weight)
        for hit, part in zip(leg, parts, strict=True):
            if hit.key in raw:
                scores[hit.key] += part
            else:
                scores[hit.key] = part
                raw[hit.key] = [None] * len(legs)
            raw[hit.key][position] = hit.score

    def order(key: PointKey) -> tuple[float, PointKey]:
        return (-scores[key], key)

    keys = sorted(scores, key=order) if limit is None else heapq.nsmallest(limit, scores, key=order)
    return [FusedHit(key, scores[key], tuple(raw[key])) for key in keys]
