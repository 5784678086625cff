"""Matching features across two SAEs (for instance 3,072 and 6,144 latents on the same embeddings).

Each feature of SAE A is matched to the feature of SAE B whose decoder direction has the highest
cosine with its own. The cosines are computed a chunk of A's rows at a time, so the largest array
is chunk_size × n_B (never n_A × n_B). The histogram of the max cosines shows how much of A
survives in B; the splitting map says, for each feature of the smaller SAE, which features of the
larger one have it as their best match — a feature that splits into several specific ones.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from featurelens.families.neighbours import unit_rows

__all__ = ["FeatureMatch", "cosine_histogram", "match_features", "splitting_map"]

logger = logging.getLogger(__name__)


class FeatureMatch(NamedTuple):
    """For each feature of A, its best match in B."""

    best: npt.NDArray[np.int64]
    """(n_A,) the feature of B with the highest decoder cosine (the smallest id on ties)."""

    cosine: npt.NDArray[np.float32]
    """(n_A,) that cosine (0 for a zero decoder row, matched to feature 0)."""


def match_features(
    decoder_a: npt.ArrayLike, decoder_b: npt.ArrayLike, chunk_size: int = 1024
) -> FeatureMatch:
    """The best decoder-cosine match in B of every feature of A; decoders are (num_latents, d_in)."""
    a, b = unit_rows(decoder_a), unit_rows(decoder_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the decoders must share d_in, got {a.shape[1]} and {b.shape[1]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    best = np.empty(a.shape[0], dtype=np.int64)
    cosine = np.empty(a.shape[0], dtype=np.float32)
    bt = np.ascontiguousarray(b.T)
    for start in range(0, a.shape[0], chunk_size):
        sims = a[start : start + chunk_size] @ bt
        # argmax returns the first maximum: the smallest id on ties.
        top = np.argmax(sims, axis=1)
        best[start : start + chunk_size] = top
        cosine[start : start + chunk_size] = sims[np.arange(sims.shape[0]), top]
    logger.debug(
        "matched %d features against %d: median max cosine %.3f",
        a.shape[0],
        b.shape[0],
        float(np.median(cosine)) if cosine.size else float("nan"),
    )
    return FeatureMatch(best=best, cosine=cosine)


def cosine_histogram(
    cosine: npt.ArrayLike, num_bins: int = 40
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """(edges, counts) of the max cosines over [-1, 1] in ``num_bins`` equal bins."""
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    values = np.clip(np.asarray(cosine, dtype=np.float64), -1.0, 1.0)
    counts, edges = np.histogram(values, bins=num_bins, range=(-1.0, 1.0))
    return edges, counts.astype(np.int64)


def splitting_map(
    decoder_small: npt.ArrayLike, decoder_large: npt.ArrayLike, chunk_size: int = 1024
) -> tuple[tuple[int, ...], ...]:
    """For each feature of the smaller SAE, the features of the larger whose best match it is."""
    match = match_features(decoder_large, decoder_small, chunk_size)
    num_small = np.asarray(decoder_small).shape[0]
    order = np.lexsort((np.arange(match.best.shape[0]), match.best))
    bounds = np.searchsorted(match.best[order], np.arange(num_small + 1))
    return tuple(tuple(int(i) for i in order[bounds[s] : bounds[s + 1]]) for s in range(num_small))
