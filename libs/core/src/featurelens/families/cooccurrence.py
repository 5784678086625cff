"""Co-occurrence of features over a corpus, its normalisation and its thresholded graph.

A feature *fires* on a document when it is among the document's top-k latents with a positive
value. The binary activation matrix A (documents × latents) is kept in CSR with at most k
non-zeros a row, and C = AᵀA is computed sparse and never whole: the paper's code built dense
N × n matrices (~10 GB for its corpus); here the thresholded graph is made a block of rows of C
at a time, so memory follows one block's co-occurring pairs and the edges that survive.

**Normalisation** (one formula, symmetric by construction)::

    p_ij = C_ij / (min(c_i, c_j) + smoothing)          c_j = C_jj, smoothing = 1 by default
    q_ij = max(c_i, c_j) / N                            N documents
    w_ij = max(0, (p_ij - q_ij) / (1 - q_ij))

p_ij is the fraction of the *sparser* feature's documents on which the denser one also fires —
"how often does the general feature fire when the specific one does". That is the quantity a
parent–child edge is made of: a child that fires almost only with its parent scores near 1 however
dense the parent is. But a feature that fires on 15% of the documents also fires on about 15% of
*any* other feature's documents by chance, so p_ij alone links every dense feature to thousands of
unrelated ones at a threshold of 0.1, and the spanning forest turns them into star "families" of
thousands of unrelated children. w_ij subtracts that chance level q_ij (what p_ij would be if the
two fired independently) and rescales so that a child that always fires with its parent still
scores 1: 0 means "no more often than chance", 1 "always together". For sparse features q_ij is
tiny and w_ij ≈ p_ij. The paper's C_ij / (c_i + 1) is asymmetric, networkx kept whichever
direction it wrote last, and it has no chance correction either. A cosine normalisation
C_ij / sqrt(c_i c_j) was rejected because it shrinks exactly the parent–child pairs by
sqrt(c_child / c_parent) and favours equal-density siblings. The paper's +1 (``smoothing``) stays,
so a feature that fired once, next to a dense one, cannot score 1. One threshold
(``GraphConfig.threshold``) is used for every pass, where the paper used two.
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

    block_rows: int = 1024
    """Rows of C computed, normalised and thresholded at a time: it bounds the memory of
    ``thresholded_edges`` (one block's co-occurring pairs, never all of C). The edges do not
    depend on it."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"GraphConfig.threshold must be in (0, 1], got {self.threshold!r}")
        if not self.smoothing >= 0.0:
            raise ValueError(f"GraphConfig.smoothing must be >= 0, got {self.smoothing!r}")
        if isinstance(self.block_rows, bool) or not isinstance(self.block_rows, int) or self.block_rows < 1:
            raise ValueError(f"GraphConfig.block_rows must be an integer >= 1, got {self.block_rows!r}")


@dataclass(frozen=True, eq=False)
class Cooccurrence:
    """Co-occurrence of every pair of features over a set of documents, computed on demand.

    It holds the binary activations (in both orientations, 2 × nnz(A) entries: about 30 MB at
    60k documents × k = 32) and the densities, never the full C = AᵀA: C has a non-zero for every
    pair of features that ever fire together (tens of millions at 10k latents × 60k documents,
    over 1 GB once normalised), and most of it falls under the threshold. ``thresholded_edges``
    computes C a block of rows at a time and keeps only the surviving edges; ``counts`` gives the
    rows a caller asks for (neighbours of one feature, the members of a few families).
    """

    activations: sp.csr_array
    """(num_docs, num_latents) binary int32 A."""

    by_latent: sp.csr_array
    """(num_latents, num_docs) Aᵀ as CSR: row j lists the documents on which feature j fires."""

    densities: npt.NDArray[np.int64]
    """(num_latents,) c_j: documents on which feature j fires (0 for a feature that never fires)."""

    num_docs: int
    """Documents counted (rows of A, including those on which nothing fired)."""

    @property
    def num_latents(self) -> int:
        """Number of features (rows and columns of C)."""
        return int(self.densities.shape[0])

    def density_fraction(self) -> npt.NDArray[np.float64]:
        """(num_latents,) fraction of the documents on which each feature fires."""
        return self.densities / max(self.num_docs, 1)

    def counts(self, features: npt.ArrayLike | None = None) -> sp.csr_array:
        """Rows of C = AᵀA, int, sorted indices: C[features] (len(features), num_latents), or all of C.

        C_ij = documents on which i and j both fire; C_jj = c_j. The whole of C costs memory in the
        number of co-occurring pairs: ask for it only on small slices.
        """
        left = self.by_latent if features is None else self.by_latent[np.asarray(features, dtype=np.int64)]
        rows = sp.csr_array(left @ self.activations)
        rows.sort_indices()
        return rows

    def among_sparse(self, features: npt.ArrayLike) -> sp.csr_array:
        """The block C[features][:, features], sparse, rows and columns in the order given."""
        left = self.by_latent[np.asarray(features, dtype=np.int64)]
        block = sp.csr_array(left @ left.T)
        block.sort_indices()
        return block

    def among(self, features: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The dense block C[features][:, features] for a small set of features."""
        return np.asarray(self.among_sparse(features).toarray(), dtype=np.int64)


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
    """The co-occurrence of the binarised activations: C = AᵀA on demand, the densities c_j now."""
    a = binarise(activations)
    n_docs, num_latents = a.shape
    by_latent = sp.csr_array(a.T.tocsr())
    by_latent.sort_indices()
    densities = np.diff(by_latent.indptr).astype(np.int64)
    logger.debug("co-occurrence of %d latents over %d documents: %d activations", num_latents, n_docs, a.nnz)
    return Cooccurrence(activations=a, by_latent=by_latent, densities=densities, num_docs=int(n_docs))


def normalise(
    counts: npt.ArrayLike,
    density_i: npt.ArrayLike,
    density_j: npt.ArrayLike,
    *,
    num_docs: int | None,
    smoothing: float = 1.0,
) -> npt.NDArray[np.float64]:
    """w_ij of the module docstring, elementwise; 0 where it is undefined.

    ``num_docs`` (N) is required so that no caller forgets the chance correction; ``None`` gives
    the uncorrected p_ij = C_ij / (min(c_i, c_j) + smoothing), for comparisons only.
    """
    c = np.asarray(counts, dtype=np.float64)
    d_i = np.asarray(density_i, dtype=np.float64)
    d_j = np.asarray(density_j, dtype=np.float64)
    denominator = np.minimum(d_i, d_j) + smoothing
    shape = np.broadcast(c, denominator).shape
    p = np.divide(c, denominator, out=np.zeros(shape), where=denominator > 0)
    if num_docs is None:
        return p
    if num_docs < 1:
        raise ValueError(f"num_docs must be >= 1, got {num_docs!r}")
    chance = np.broadcast_to(np.maximum(d_i, d_j) / num_docs, shape)
    spread = 1.0 - chance
    # A feature that fires on every document says nothing about any other: weight 0.
    corrected = np.divide(p - chance, spread, out=np.zeros(shape), where=spread > 0)
    return np.maximum(corrected, 0.0)


def thresholded_edges(cooc: Cooccurrence, config: GraphConfig | None = None) -> GraphEdges:
    """Every pair i < j whose normalised co-occurrence is at least the threshold, sorted by (i, j).

    C is computed ``config.block_rows`` rows at a time, and each block only against the columns
    from its first row on (the upper triangle, half the work); a block is normalised and
    thresholded at once, so the largest arrays are one block's pairs, never the whole of C.
    """
    config = config or GraphConfig()
    densities = cooc.densities
    sources: list[npt.NDArray[np.int64]] = []
    targets: list[npt.NDArray[np.int64]] = []
    weights: list[npt.NDArray[np.float64]] = []
    pairs = 0
    by_column = sp.csc_array(cooc.activations)
    for start in range(0, cooc.num_latents, config.block_rows):
        stop = min(start + config.block_rows, cooc.num_latents)
        right = sp.csr_array(by_column[:, start:])
        block = sp.csr_array(cooc.by_latent[start:stop] @ right).tocoo()
        del right
        pairs += block.nnz
        rows = block.row.astype(np.int64) + start
        cols = block.col.astype(np.int64) + start
        upper = cols > rows
        rows, cols, data = rows[upper], cols[upper], block.data[upper]
        del block, upper
        w = normalise(
            data, densities[rows], densities[cols], num_docs=cooc.num_docs, smoothing=config.smoothing
        )
        keep = w >= config.threshold
        rows, cols, w = rows[keep], cols[keep], w[keep]
        order = np.lexsort((cols, rows))
        sources.append(rows[order])
        targets.append(cols[order])
        weights.append(w[order])
    edges = GraphEdges(
        source=np.concatenate(sources) if sources else np.zeros(0, np.int64),
        target=np.concatenate(targets) if targets else np.zeros(0, np.int64),
        weight=np.concatenate(weights) if weights else np.zeros(0, np.float64),
    )
    logger.debug(
        "thresholded graph at %.3f: %d edges of %d co-occurring pairs (upper triangle and diagonal)",
        config.threshold,
        edges.num_edges,
        pairs,
    )
    return edges
