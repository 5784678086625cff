"""Co-occurrence of features over a corpus, its normalisation and its thresholded graph.

A feature *fires* on a document when it is among the document's top-k latents with a positive
value. The binary activation matrix A (documents × latents) is kept in CSR with at most k
non-zeros a row, and C = AᵀA is computed sparse: the paper's code built dense N × n matrices
(~10 GB for its corpus); here memory follows the number of co-occurring pairs.

**Normalisation** (one formula, symmetric by construction)::

    w_ij = C_ij / (min(c_i, c_j) + smoothing)        c_j = C_jj, smoothing = 1 by default

It is the fraction of the *sparser* feature's documents on which the denser one also fires —
"how often does the general feature fire when the specific one does". That is the quantity a
parent–child edge is made of: a child that fires almost only with its parent scores near 1 however
dense the parent is. The paper's C_ij / (c_i + 1) is asymmetric and networkx kept whichever
direction it wrote last; our w_ij is the paper's value in the direction that carries the
hierarchy. A cosine normalisation C_ij / sqrt(c_i c_j) was rejected because it shrinks exactly
those pairs by sqrt(c_child / c_parent) and favours equal-density siblings. The paper's +1
(``smoothing``) stays, so a feature that fired once, next to a dense one, cannot score 1.
One threshold (``GraphConfig.threshold``) is used for every pass, where the paper used two.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = [
    "Cooccurrence",
    "GraphConfig",
    "GraphEdges",
    "activations_from_topk",
    "binarise",
    "cooccurrence",
    "normalise",
    "thresholded_edges",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GraphConfig:
    """How the co-occurrence matrix becomes a weighted graph."""

    threshold: float = 0.1
    """Edges with a normalised co-occurrence below this are dropped (the paper's τ of its first
    pass); the same threshold serves every pass."""

    smoothing: float = 1.0
    """Added to min(c_i, c_j) in the denominator (the paper's +1): rare features score lower."""

    block_rows: int = 4096
    """Rows of C normalised at a time when thresholding, which bounds the float copy made."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"GraphConfig.threshold must be in (0, 1], got {self.threshold!r}")
        if not self.smoothing >= 0.0:
            raise ValueError(f"GraphConfig.smoothing must be >= 0, got {self.smoothing!r}")
        if isinstance(self.block_rows, bool) or not isinstance(self.block_rows, int) or self.block_rows < 1:
            raise ValueError(f"GraphConfig.block_rows must be an integer >= 1, got {self.block_rows!r}")


class Cooccurrence(NamedTuple):
    """Co-occurrence counts of every pair of features over a set of documents."""

    counts: sp.csr_array
    """(num_latents, num_latents) int: C_ij = documents on which i and j both fire; C_jj = c_j."""

    densities: npt.NDArray[np.int64]
    """(num_latents,) c_j: documents on which feature j fires (0 for a feature that never fires)."""

    num_docs: int
    """Documents counted (rows of A, including those on which nothing fired)."""

    @property
    def num_latents(self) -> int:
        """Number of features (rows and columns of ``counts``)."""
        return int(self.densities.shape[0])

    def density_fraction(self) -> npt.NDArray[np.float64]:
        """(num_latents,) fraction of the documents on which each feature fires."""
        return self.densities / max(self.num_docs, 1)


class GraphEdges(NamedTuple):
    """The thresholded normalised graph, one entry per undirected edge, source < target."""

    source: npt.NDArray[np.int64]
    target: npt.NDArray[np.int64]
    weight: npt.NDArray[np.float64]
    """Normalised co-occurrence w_ij, at least the threshold."""

    @property
    def num_edges(self) -> int:
        """Number of edges."""
        return int(self.source.shape[0])


def activations_from_topk(
    indices: npt.ArrayLike,
    num_latents: int,
    values: npt.ArrayLike | None = None,
) -> sp.csr_array:
    """The binary activation matrix from top-k index rows (n_docs, k).

    With ``values`` (same shape), an entry whose value is not positive does not fire, as in
    ``featurelens.sae.evaluate``. A latent repeated within a row counts once.
    """
    idx = np.asarray(indices)
    if idx.ndim != 2:
        raise ValueError(f"indices must have shape (n_docs, k), got shape {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
    if isinstance(num_latents, bool) or not isinstance(num_latents, int) or num_latents < 1:
        raise ValueError(f"num_latents must be an integer >= 1, got {num_latents!r}")
    if idx.size and (idx.min() < 0 or idx.max() >= num_latents):
        raise ValueError(f"indices must lie in [0, {num_latents}), got [{idx.min()}, {idx.max()}]")
    n_docs, k = idx.shape
    fires = np.ones(idx.shape, dtype=bool)
    if values is not None:
        val = np.asarray(values)
        if val.shape != idx.shape:
            raise ValueError(f"values must have the shape of indices {idx.shape}, got {val.shape}")
        fires = val > 0
    rows = np.repeat(np.arange(n_docs, dtype=np.int64), k).reshape(n_docs, k)[fires]
    cols = idx[fires].astype(np.int64)
    data = np.ones(rows.shape[0], dtype=np.int32)
    matrix = sp.csr_array((data, (rows, cols)), shape=(n_docs, num_latents))
    return binarise(matrix)


def binarise(activations: sp.sparray | sp.spmatrix) -> sp.csr_array:
    """A sparse activation matrix (n_docs, num_latents) as binary int32 CSR: 1 where value > 0."""
    matrix = sp.csr_array(activations, copy=True)
    matrix.sum_duplicates()
    matrix.data = (matrix.data > 0).astype(np.int32)
    matrix.eliminate_zeros()
    return matrix


def cooccurrence(activations: sp.sparray | sp.spmatrix) -> Cooccurrence:
    """C = AᵀA of the binarised activations, sparse; densities are its diagonal."""
    a = binarise(activations)
    n_docs, num_latents = a.shape
    counts = sp.csr_array(a.T.tocsr() @ a)
    counts.sort_indices()
    densities = np.bincount(a.indices, minlength=num_latents).astype(np.int64)
    logger.debug(
        "co-occurrence of %d latents over %d documents: %d non-zero pairs", num_latents, n_docs, counts.nnz
    )
    return Cooccurrence(counts=counts, densities=densities, num_docs=int(n_docs))


def normalise(
    counts: npt.ArrayLike,
    density_i: npt.ArrayLike,
    density_j: npt.ArrayLike,
    smoothing: float = 1.0,
) -> npt.NDArray[np.float64]:
    """w_ij = C_ij / (min(c_i, c_j) + smoothing), elementwise; 0 where the denominator is 0."""
    c = np.asarray(counts, dtype=np.float64)
    denominator = np.minimum(np.asarray(density_i), np.asarray(density_j)).astype(np.float64) + smoothing
    return np.divide(c, denominator, out=np.zeros(np.broadcast(c, denominator).shape), where=denominator > 0)


def thresholded_edges(cooc: Cooccurrence, config: GraphConfig | None = None) -> GraphEdges:
    """Every pair i < j whose normalised co-occurrence is at least the threshold, sorted by (i, j)."""
    config = config or GraphConfig()
    counts, densities = cooc.counts, cooc.densities
    sources: list[npt.NDArray[np.int64]] = []
    targets: list[npt.NDArray[np.int64]] = []
    weights: list[npt.NDArray[np.float64]] = []
    for start in range(0, cooc.num_latents, config.block_rows):
        block = counts[start : start + config.block_rows].tocoo()
        rows = block.row.astype(np.int64) + start
        cols = block.col.astype(np.int64)
        upper = cols > rows
        rows, cols, data = rows[upper], cols[upper], block.data[upper]
        w = normalise(data, densities[rows], densities[cols], config.smoothing)
        keep = w >= config.threshold
        order = np.lexsort((cols[keep], rows[keep]))
        sources.append(rows[keep][order])
        targets.append(cols[keep][order])
        weights.append(w[keep][order])
    edges = GraphEdges(
        source=np.concatenate(sources) if sources else np.zeros(0, np.int64),
        target=np.concatenate(targets) if targets else np.zeros(0, np.int64),
        weight=np.concatenate(weights) if weights else np.zeros(0, np.float64),
    )
    logger.debug("thresholded graph at %.3f: %d edges", config.threshold, edges.num_edges)
    return edges
