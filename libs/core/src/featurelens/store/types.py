"""Value types of the storage port. Plain dataclasses: no engine type crosses the port."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt


class SparseVec:
    """A sparse vector as parallel arrays: ``values[i]`` is the value at ``indices[i]``.

    Indices are coerced to int64 and values to float32 (read-only arrays); content checks
    (unique, non-negative, finite) happen at the store boundary, where the error can say which
    document or query was wrong.
    """

    __slots__ = ("indices", "values")

    indices: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]

    def __init__(self, indices: npt.ArrayLike, values: npt.ArrayLike) -> None:
        index_array = np.array(indices, dtype=np.int64).reshape(-1)
        value_array = np.array(values, dtype=np.float32).reshape(-1)
        if index_array.shape != value_array.shape:
            raise ValueError(
                f"a sparse vector needs as many values as indices, got {index_array.size} indices "
                f"and {value_array.size} values"
            )
        index_array.setflags(write=False)
        value_array.setflags(write=False)
        self.indices = index_array
        self.values = value_array

    @classmethod
    def from_dict(cls, entries: Mapping[int, float]) -> SparseVec:
        """Build from ``{index: value}``."""
        return cls(list(entries.keys()), list(entries.values()))

    def to_dict(self) -> dict[int, float]:
        """``{index: value}`` of the stored entries."""
        return {int(i): float(v) for i, v in zip(self.indices, self.values, strict=True)}

    def __len__(self) -> int:
        return int(self.indices.size)

    def __repr__(self) -> str:
        head = ", ".join(f"{i}: {v:.4g}" for i, v in list(self.to_dict().items())[:8])
        more = ", ..." if len(self) > 8 else ""
        return f"SparseVec({{{head}{more}}})"


@dataclass(frozen=True, eq=False)
class PointRecord:
    """One document to store.

    ``sparse`` maps an ``sae_id`` to that SAE's latents on the document. The store derives the
    bookkeeping payload fields itself (``doc_id``, ``date_int``, ``sample_key`` and
    ``features_<sae_id>`` = the latents with a value > 0), so callers pass only their own
    fields (title, text, categories, date ...).
    """

    doc_id: str
    dense: npt.NDArray[np.floating[Any]] | None = None
    sparse: Mapping[str, SparseVec] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)


class FeatureRef(NamedTuple):
    """One latent of one SAE, as used in must / must-not-fire filters."""

    sae_id: str
    latent: int


@dataclass(frozen=True)
class DocFilter:
    """Restricts which documents a query, scroll, count or sample sees; all parts are ANDed.

    ``categories``: the document has at least one of them. ``date_from`` / ``date_to``:
    inclusive bounds, ``YYYY-MM-DD``. ``must_fire``: every listed latent fires (value > 0).
    ``must_not_fire``: none of the listed latents fires.
    """

    categories: tuple[str, ...] = ()
    date_from: str | None = None
    date_to: str | None = None
    must_fire: tuple[FeatureRef, ...] = ()
    must_not_fire: tuple[FeatureRef, ...] = ()

    def __post_init__(self) -> None:
        # Callers pass lists; frozen tuples keep the filter hashable and comparable.
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "must_fire", tuple(FeatureRef(*f) for f in self.must_fire))
        object.__setattr__(self, "must_not_fire", tuple(FeatureRef(*f) for f in self.must_not_fire))

    def is_empty(self) -> bool:
        """True when the filter lets every document through."""
        return not (self.categories or self.date_from or self.date_to or self.must_fire or self.must_not_fire)


class SearchMode(StrEnum):
    """How a query is matched."""

    DENSE = "dense"
    """Cosine similarity on the named dense vector."""
    SPARSE = "sparse"
    """Dot product on one SAE's sparse vector."""
    HYBRID = "hybrid"
    """Both legs, fused (see ``featurelens.store.fusion``)."""


class FusionMethod(StrEnum):
    """How the two legs of a hybrid query are fused."""

    RRF = "rrf"
    """Weighted reciprocal rank fusion: sum over legs of ``weight / (rrf_k + rank)``."""
    DBSF = "dbsf"
    """Distribution-based score fusion: each leg's scores mapped through mean ± 3σ, weighted sum."""


SparseSelector = bool | Sequence[str]
"""Which sparse vectors to return: False none, True all, or these ``sae_id`` s."""

PayloadSelector = bool | Sequence[str]
"""Which payload fields to return: False none, True all, or these field names."""


@dataclass(frozen=True, eq=False)
class QueryRequest:
    """A search request.

    ``dense`` is needed for dense and hybrid modes, ``sparse`` + ``sae_id`` for sparse and hybrid.
    Hybrid: each leg fetches ``max(top_k + offset, candidates)`` hits (same filter), then the
    legs are fused with ``fusion`` and ``dense_weight`` / ``sparse_weight``.
    ``exact`` forces a full scan instead of HNSW (for evaluation and tests).
    """

    mode: SearchMode
    dense: npt.NDArray[np.floating[Any]] | None = None
    sparse: SparseVec | None = None
    sae_id: str | None = None
    top_k: int = 10
    offset: int = 0
    filter: DocFilter | None = None
    fusion: FusionMethod = FusionMethod.RRF
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    candidates: int = 100
    rrf_k: int = 60
    with_payload: PayloadSelector = True
    with_dense: bool = False
    with_sparse: SparseSelector = False
    exact: bool = False


@dataclass(frozen=True, eq=False)
class StoredPoint:
    """A stored document as scroll, retrieve and sample return it."""

    doc_id: str
    payload: dict[str, Any]
    dense: npt.NDArray[np.float32] | None = None
    sparse: dict[str, SparseVec] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ScoredPoint:
    """A query hit.

    ``score`` is the mode's score (cosine, dot product, or fused score). ``dense_score`` /
    ``sparse_score`` are the legs' raw scores where the hit was among that leg's candidates
    (None otherwise); in single-leg modes the one that applies equals ``score``.
    """

    doc_id: str
    score: float
    payload: dict[str, Any]
    dense: npt.NDArray[np.float32] | None = None
    sparse: dict[str, SparseVec] = field(default_factory=dict)
    dense_score: float | None = None
    sparse_score: float | None = None


@dataclass(frozen=True)
class ScrollPage:
    """One page of a scroll; pass ``next_offset`` back to get the next page (None: the end)."""

    points: list[StoredPoint]
    next_offset: str | None


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection holds."""

    name: str
    points: int
    dense_dim: int
    sae_ids: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
