"""The paper's family statistics: sizes, parent–child against child–child co-occurrence,
a block-diagonal score against a random-permutation control, and membership counts.

All co-occurrences here are the normalised w_ij of ``cooccurrence.normalise``, read from the
activations one family (or the union of family members) at a time, never from the whole of C.

**Block-diagonal score.** Each feature in a family is given one block: the smallest family that
contains it (the most specific; ties: the family listed first), so nested families make their own
blocks. Reordering the co-occurrence matrix of the family members by block, the score is the
share of its off-diagonal mass that falls inside the blocks. The control shuffles the block
labels over the same features (same block sizes, seeded) and scores again; families that capture
real structure score well above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from featurelens.families.cooccurrence import Cooccurrence, normalise
from featurelens.families.family import Family

__all__ = ["FamilyStats", "family_stats"]


@dataclass(frozen=True)
class FamilyStats:
    """Summary of a set of families over one co-occurrence matrix."""

    num_families: int
    mean_children: float
    """Mean family size (children per family); NaN without families."""

    median_children: float
    """Median family size (the paper reports 6.5 for its astro SAE)."""

    parent_child: float
    """Mean normalised co-occurrence of a root with each of its children, over all families."""

    child_child: float
    """Mean normalised co-occurrence of two children of the same family, over all families."""

    parent_child_ratio: float
    """parent_child / child_child: how much more a child co-occurs with its parent than with a
    sibling (inf when siblings never co-occur)."""

    block_score: float
    """Share of the family members' off-diagonal co-occurrence inside the family blocks."""

    control_mean: float
    """Mean block score with the block labels shuffled (the random-permutation control)."""

    control_std: float
    """Standard deviation of the control over the permutations."""

    membership: npt.NDArray[np.int64]
    """(num_latents,) number of families each feature belongs to (as root or child)."""

    @property
    def membership_counts(self) -> npt.NDArray[np.int64]:
        """Entry m: how many features belong to exactly m families."""
        return np.bincount(self.membership).astype(np.int64)


def _weights(
    cooc: Cooccurrence, features: npt.NDArray[np.int64], smoothing: float
) -> npt.NDArray[np.float64]:
    """The dense normalised co-occurrence among ``features`` (a small set), zero diagonal."""
    sub = cooc.among(features)
    c = cooc.densities[features]
    w = normalise(sub, c[:, None], c[None, :], num_docs=cooc.num_docs, smoothing=smoothing)
    np.fill_diagonal(w, 0.0)
    return w


def family_stats(
    families: Sequence[Family],
    cooc: Cooccurrence,
    *,
    smoothing: float = 1.0,
    permutations: int = 20,
    seed: int = 0,
) -> FamilyStats:
    """The statistics of ``families`` (from ``extract_families``) over ``cooc``."""
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    sizes = np.array([f.size for f in families], dtype=np.float64)
    pc_sum = cc_sum = 0.0
    pc_n = cc_n = 0
    membership = np.zeros(cooc.num_latents, dtype=np.int64)
    for family in families:
        members = np.array(family.members, dtype=np.int64)
        membership[members] += 1
        w = _weights(cooc, members, smoothing)
        pc_sum += float(w[0, 1:].sum())
        pc_n += len(members) - 1
        cc_sum += float(np.triu(w[1:, 1:], 1).sum())
        cc_n += (len(members) - 1) * (len(members) - 2) // 2
    parent_child = pc_sum / pc_n if pc_n else float("nan")
    child_child = cc_sum / cc_n if cc_n else float("nan")
    if child_child > 0:
        ratio = parent_child / child_child
    else:
        ratio = float("inf") if parent_child > 0 else float("nan")
    block_score, control_mean, control_std = _block_scores(families, cooc, smoothing, permutations, seed)
    return FamilyStats(
        num_families=len(families),
        mean_children=float(sizes.mean()) if sizes.size else float("nan"),
        median_children=float(np.median(sizes)) if sizes.size else float("nan"),
        parent_child=parent_child,
        child_child=child_child,
        parent_child_ratio=ratio,
        block_score=block_score,
        control_mean=control_mean,
        control_std=control_std,
        membership=membership,
    )


def _block_scores(
    families: Sequence[Family], cooc: Cooccurrence, smoothing: float, permutations: int, seed: int
) -> tuple[float, float, float]:
    block_of: dict[int, int] = {}
    for index, family in enumerate(families):
        for feature in family.members:
            current = block_of.get(feature)
            if current is None or family.size < families[current].size:
                block_of[feature] = index
    if not block_of:
        return float("nan"), float("nan"), float("nan")
    features = np.array(sorted(block_of), dtype=np.int64)
    labels = np.array([block_of[int(f)] for f in features], dtype=np.int64)
    rows, cols, w = _pairs_above_chance(cooc, features, smoothing)
    total = float(w.sum(dtype=np.float64))
    if total == 0:
        return float("nan"), float("nan"), float("nan")

    def score(lab: npt.NDArray[np.int64]) -> float:
        return float(w[lab[rows] == lab[cols]].sum(dtype=np.float64)) / total

    rng = np.random.default_rng(seed)
    control = np.array([score(rng.permutation(labels)) for _ in range(permutations)])
    return score(labels), float(control.mean()), float(control.std())


def _pairs_above_chance(
    cooc: Cooccurrence, features: npt.NDArray[np.int64], smoothing: float, block_rows: int = 512
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """The pairs i < j (positions in ``features``) with a positive weight w_ij, and the weights.

    The members of all families number thousands and co-occur in tens of millions of pairs, most
    of them no more often than chance (w_ij = 0, nothing to score). So, as in
    ``thresholded_edges``, the block of C among them is made a block of rows at a time, upper
    triangle only, and only the positive weights are kept: memory follows one block's pairs.
    """
    left = cooc.by_latent[features]  # (features, documents) CSR
    by_column = sp.csc_array(left.T)  # (documents, features): cheap column slices
    densities = cooc.densities[features]
    kept_rows, kept_cols, kept_w = [], [], []
    for start in range(0, len(features), block_rows):
        stop = min(start + block_rows, len(features))
        block = sp.coo_array(left[start:stop] @ by_column[:, start:])
        rows = block.row.astype(np.int64) + start
        cols = block.col.astype(np.int64) + start
        upper = cols > rows
        rows, cols, counts = rows[upper], cols[upper], block.data[upper]
        del block, upper
        w = normalise(counts, densities[rows], densities[cols], num_docs=cooc.num_docs, smoothing=smoothing)
        positive = w > 0
        kept_rows.append(rows[positive].astype(np.int32))
        kept_cols.append(cols[positive].astype(np.int32))
        kept_w.append(w[positive].astype(np.float32))
    return np.concatenate(kept_rows), np.concatenate(kept_cols), np.concatenate(kept_w)
