"""Engine-neutral plans: checked requests going in, port types coming out.

Both adapters validate through here before they touch an engine, so a bad request fails the
same way, with the same sentence, whichever engine is behind the port.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from featurelens.store import schema
from featurelens.store.errors import InvalidQueryError
from featurelens.store.types import (
    DocFilter,
    PayloadSelector,
    QueryRequest,
    ScoredPoint,
    SearchMode,
    SparseSelector,
    SparseVec,
    StoredPoint,
)

MAX_TOP_K = 10_000


@dataclass(frozen=True)
class CollectionSchema:
    """What an adapter must know about a collection to check requests against it."""

    dense_dim: int
    sae_ids: tuple[str, ...]

    def require_sae(self, sae_id: str, name: str) -> None:
        """InvalidQueryError unless the collection has a sparse vector for ``sae_id``."""
        if sae_id not in self.sae_ids:
            known = ", ".join(self.sae_ids) or "none"
            raise InvalidQueryError(
                f"collection {name!r} has no sparse vectors for SAE {sae_id!r} (it has: {known})"
            )

    def require_dense_dim(self, dense_dim: int, name: str) -> None:
        """InvalidQueryError unless the collection's dense vectors have ``dense_dim`` dims."""
        if self.dense_dim != dense_dim:
            raise InvalidQueryError(
                f"collection {name!r} has {self.dense_dim}-dim dense vectors, not {dense_dim}"
            )


@dataclass(frozen=True)
class FilterSpec:
    """A checked filter in payload terms, ready for an adapter to translate."""

    categories: tuple[str, ...] = ()
    date_gte: int | None = None
    date_lte: int | None = None
    must_fire: tuple[tuple[str, int], ...] = ()
    """(payload field, latent): each must be in the field's list."""
    must_not_fire: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """(payload field, latents): none may be in the field's list."""
    sample_key_lt: int | None = None
    """Internal: restricts sampling's wrap-around pass."""


@dataclass(frozen=True)
class Projection:
    """What to fetch from the engine and what to hand back."""

    payload: tuple[str, ...] | None
    """Payload fields to request (always including doc_id); None: all."""
    keep: tuple[str, ...] | None
    """Payload fields to return: None all, else only these."""
    vectors: tuple[str, ...]
    """Engine vector names to request."""

    @property
    def with_vectors(self) -> bool:
        """Whether any vector is requested."""
        return bool(self.vectors)


@dataclass(frozen=True)
class CheckedQuery:
    """A checked query: engine-ready vectors, the filter, limits."""

    mode: SearchMode
    dense: list[float] | None
    sparse: tuple[list[int], list[float]] | None
    sparse_name: str | None
    filter: FilterSpec | None
    fetch: int
    """Hits to ask a single-leg query for: top_k + offset."""
    leg_limit: int
    """Hits each hybrid leg fetches: max(top_k + offset, candidates)."""
    offset: int
    exact: bool


def _check_latents(refs: Iterable[tuple[str, int]], schema_: CollectionSchema, name: str) -> None:
    for sae_id, latent in refs:
        schema_.require_sae(sae_id, name)
        if not isinstance(latent, int | np.integer) or not 0 <= int(latent) < 2**32:
            raise InvalidQueryError(f"latent {latent!r} of SAE {sae_id!r} is not a valid latent id")


def check_collection_request(name: str, dense_dim: int, sae_ids: Sequence[str]) -> tuple[str, ...]:
    """The distinct ``sae_ids`` of an ``ensure_collection`` call, once every argument is checked."""
    schema.check_store_name(name)
    if not isinstance(dense_dim, int) or not 1 <= dense_dim <= 65536:
        raise InvalidQueryError(f"dense_dim must be an integer from 1 to 65536, got {dense_dim!r}")
    wanted = tuple(dict.fromkeys(sae_ids))
    if wanted and (schema.is_labels_collection(name) or schema.is_families_collection(name)):
        raise InvalidQueryError(
            f"collection {name!r} holds feature labels or families and takes no SAE latents"
        )
    for sae_id in wanted:
        schema.sparse_vector_name(sae_id)  # validates the id
    return wanted


def changes_metadata(current: Mapping[str, Any], wanted: Mapping[str, Any] | None) -> bool:
    """Whether merging ``wanted`` into a collection's metadata would change it (so it must be written)."""
    if not wanted:
        return False
    return any(current.get(key) != value for key, value in wanted.items())


def check_filter(flt: DocFilter | None, schema_: CollectionSchema, name: str) -> FilterSpec | None:
    """A FilterSpec, or None when nothing is filtered."""
    if flt is None or flt.is_empty():
        return None
    _check_latents(flt.must_fire, schema_, name)
    _check_latents(flt.must_not_fire, schema_, name)
    if any(not isinstance(c, str) for c in flt.categories):
        raise InvalidQueryError("filter categories must be strings")
    gte = schema.date_int(flt.date_from) if flt.date_from else None
    lte = schema.date_int(flt.date_to) if flt.date_to else None
    if gte is not None and lte is not None and gte > lte:
        raise InvalidQueryError(f"filter date_from {flt.date_from} is after date_to {flt.date_to}")
    grouped: dict[str, list[int]] = {}
    for sae_id, latent in flt.must_not_fire:
        grouped.setdefault(schema.features_field(sae_id), []).append(int(latent))
    return FilterSpec(
        categories=tuple(flt.categories),
        date_gte=gte,
        date_lte=lte,
        must_fire=tuple((schema.features_field(s), int(f)) for s, f in flt.must_fire),
        must_not_fire=tuple((field, tuple(sorted(set(ls)))) for field, ls in grouped.items()),
    )


def check_query(request: QueryRequest, schema_: CollectionSchema, name: str) -> CheckedQuery:
    """Check a query against the collection; InvalidQueryError with a sentence if it is wrong."""
    mode = SearchMode(request.mode)
    if not 1 <= request.top_k <= MAX_TOP_K:
        raise InvalidQueryError(f"top_k must be from 1 to {MAX_TOP_K}, got {request.top_k}")
    if request.offset < 0:
        raise InvalidQueryError(f"offset must not be negative, got {request.offset}")
    if request.candidates < 1:
        raise InvalidQueryError(f"candidates must be at least 1, got {request.candidates}")
    dense = sparse = sparse_name = None
    if mode in (SearchMode.DENSE, SearchMode.HYBRID):
        if request.dense is None:
            raise InvalidQueryError(f"a {mode.value} query needs a dense query vector")
        dense = schema.check_dense(request.dense, schema_.dense_dim, "the dense query vector")
    if mode in (SearchMode.SPARSE, SearchMode.HYBRID):
        if request.sparse is None or request.sae_id is None:
            raise InvalidQueryError(f"a {mode.value} query needs a sparse query vector and its sae_id")
        schema_.require_sae(request.sae_id, name)
        sparse = schema.check_sparse(request.sparse, "the sparse query vector")
        if not sparse[0]:
            raise InvalidQueryError("the sparse query vector has no non-zero entries")
        sparse_name = schema.sparse_vector_name(request.sae_id)
    if mode is SearchMode.HYBRID:
        weights = (request.dense_weight, request.sparse_weight)
        if not all(np.isfinite(w) and w >= 0 for w in weights) or not any(weights):
            raise InvalidQueryError(
                f"hybrid weights must be finite, non-negative and not both zero, got {weights}"
            )
        if request.rrf_k < 1:
            raise InvalidQueryError(f"rrf_k must be at least 1, got {request.rrf_k}")
    fetch = request.top_k + request.offset
    return CheckedQuery(
        mode=mode,
        dense=dense,
        sparse=sparse,
        sparse_name=sparse_name,
        filter=check_filter(request.filter, schema_, name),
        fetch=fetch,
        leg_limit=max(fetch, request.candidates),
        offset=request.offset,
        exact=request.exact,
    )


def projection(
    with_payload: PayloadSelector,
    with_dense: bool,
    with_sparse: SparseSelector,
    schema_: CollectionSchema,
    name: str,
) -> Projection:
    """What to fetch for a request's selectors (doc_id is always fetched: results carry it)."""
    if with_payload is True:
        payload: tuple[str, ...] | None = None
        keep: tuple[str, ...] | None = None
    else:
        keep = () if with_payload is False else tuple(with_payload)
        payload = tuple(dict.fromkeys((schema.DOC_ID, *keep)))
    vectors: list[str] = [schema.DENSE_VECTOR] if with_dense else []
    if with_sparse is True:
        vectors += [schema.sparse_vector_name(s) for s in schema_.sae_ids]
    elif with_sparse is not False:
        for sae_id in with_sparse:
            schema_.require_sae(sae_id, name)
            vectors.append(schema.sparse_vector_name(sae_id))
    return Projection(payload=payload, keep=keep, vectors=tuple(vectors))


class _EngineSparse(Protocol):
    """The shape both engines give a sparse vector."""

    @property
    def indices(self) -> Sequence[int]: ...

    @property
    def values(self) -> Sequence[float]: ...


def stored_point(
    payload: Mapping[str, Any] | None, vectors: Mapping[str, Any] | None, proj: Projection
) -> StoredPoint:
    """A StoredPoint from an engine record's payload and vectors."""
    full = dict(payload or {})
    doc_id = str(full.get(schema.DOC_ID, ""))
    kept = full if proj.keep is None else {k: full[k] for k in proj.keep if k in full}
    dense = None
    sparse: dict[str, SparseVec] = {}
    for vector_name, value in (vectors or {}).items():
        if vector_name not in proj.vectors:
            continue
        if vector_name == schema.DENSE_VECTOR:
            dense = np.asarray(value, dtype=np.float32)
            continue
        sae_id = schema.sae_id_of(vector_name)
        if sae_id is not None:
            engine_sparse: _EngineSparse = value
            # An empty sparse vector reads as absent: one engine stores it, the other invents it.
            if len(engine_sparse.indices):
                sparse[sae_id] = SparseVec(list(engine_sparse.indices), list(engine_sparse.values))
    return StoredPoint(doc_id=doc_id, payload=kept, dense=dense, sparse=sparse)


def scored_point(point: StoredPoint, score: float, dense: float | None, sparse: float | None) -> ScoredPoint:
    """A query hit from a fetched point and its scores."""
    return ScoredPoint(
        doc_id=point.doc_id,
        score=float(score),
        payload=point.payload,
        dense=point.dense,
        sparse=point.sparse,
        dense_score=None if dense is None else float(dense),
        sparse_score=None if sparse is None else float(sparse),
    )


def check_offset(offset: str | None) -> str | None:
    """A scroll offset as the point id it stands for; InvalidQueryError for a made-up one."""
    if offset is None:
        return None
    try:
        return str(uuid.UUID(offset))
    except (ValueError, TypeError, AttributeError):
        raise InvalidQueryError(f"scroll offset {offset!r} is not an offset this store returned") from None
