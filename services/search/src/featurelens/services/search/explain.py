"""Why a hit matched: the features the query and the document share, and their labels.

The sparse score of a hit is the dot product of the query's and the document's latents, so
each shared feature contributes ``query_activation * document_activation`` and the
contributions sum to the sparse score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from featurelens.store import SparseVec


@dataclass(frozen=True)
class Contribution:
    """One shared feature's part of a hit's sparse score."""

    feature: int
    query_activation: float
    document_activation: float
    contribution: float


def explain(query: SparseVec, document: SparseVec) -> list[Contribution]:
    """The features active in both, largest contribution first (ties: smaller feature first)."""
    shared, query_at, document_at = np.intersect1d(
        query.indices, document.indices, assume_unique=True, return_indices=True
    )
    query_values = query.values[query_at].astype(np.float64)
    document_values = document.values[document_at].astype(np.float64)
    products = query_values * document_values
    items = [
        Contribution(int(f), float(q), float(d), float(p))
        for f, q, d, p in zip(shared, query_values, document_values, products, strict=True)
        if p != 0.0
    ]
    items.sort(key=lambda item: (-item.contribution, item.feature))
    return items


class LabelLookup(Protocol):
    """Feature labels for explanations and steered features (``labelling.LabellingLabels`` asks
    the labelling service)."""

    async def labels(self, sae_id: str, features: Sequence[int]) -> Mapping[int, str]:
        """The labels of those features that have one; never fails for want of labels."""
        ...


class NoLabels:
    """The lookup of a search service without a labelling service: no labels."""

    async def labels(self, sae_id: str, features: Sequence[int]) -> Mapping[int, str]:
        return {}
