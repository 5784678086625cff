"""A feature's nearest neighbours: by normalised co-occurrence, and by decoder direction.

Both return the ``n`` best other features, best first, ties broken by the smaller feature id so
the answer is the same every time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from featurelens.families.cooccurrence import Cooccurrence, normalise

__all__ = ["Neighbours", "cooccurrence_neighbours", "decoder_neighbours", "unit_rows"]


class Neighbours(NamedTuple):
    """Features near one feature, best first."""

    indices: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]


def _check_feature(feature: int, num_latents: int, n: int) -> None:
    if not 0 <= feature < num_latents:
        raise ValueError(f"feature must lie in [0, {num_latents}), got {feature}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")


def _best(indices: npt.NDArray[np.int64], scores: npt.NDArray[np.float64], n: int) -> Neighbours:
    order = np.lexsort((indices, -scores))[:n]
    return Neighbours(indices=indices[order], scores=scores[order])


def cooccurrence_neighbours(
    cooc: Cooccurrence, feature: int, n: int = 10, *, smoothing: float = 1.0
) -> Neighbours:
    """The features that co-occur most with ``feature``, by the normalised w_ij; only those that
    co-occur with it more often than chance (w_ij > 0)."""
    _check_feature(feature, cooc.num_latents, n)
    row = cooc.counts([feature]).tocoo()
    cols = row.col.astype(np.int64)
    others = cols != feature
    cols, counts = cols[others], row.data[others]
    scores = normalise(
        counts, cooc.densities[feature], cooc.densities[cols], num_docs=cooc.num_docs, smoothing=smoothing
    )
    above_chance = scores > 0
    return _best(cols[above_chance], scores[above_chance], n)


def unit_rows(decoder: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The rows of a (num_latents, d_in) decoder scaled to unit norm; a zero row stays zero."""
    w = np.asarray(decoder, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"a decoder must have shape (num_latents, d_in), got shape {w.shape}")
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    return np.divide(w, norms, out=np.zeros_like(w), where=norms > 0)


def decoder_neighbours(decoder: npt.ArrayLike, feature: int, n: int = 10) -> Neighbours:
    """The features whose decoder directions have the highest cosine with ``feature``'s."""
    w = unit_rows(decoder)
    _check_feature(feature, w.shape[0], n)
    cosine = (w @ w[feature]).astype(np.float64)
    indices = np.flatnonzero(np.arange(w.shape[0]) != feature).astype(np.int64)
    return _best(indices, cosine[indices], n)
