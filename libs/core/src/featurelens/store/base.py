"""The port's reads and writes, written once over the few primitives an engine adapter provides.

An adapter (``edge``, ``server``) subclasses ``EngineStore`` and says only how to talk to its
engine: open a collection, search one leg or both legs of a hybrid query, retrieve, scroll,
count, write, and convert to and from the engine's types. Everything that decides what to ask
lives here: the existence check before an update, fusing a hybrid query's legs and then fetching
only the page's payloads, and the two scroll passes of a seeded sample. Written once, the two
adapters cannot drift apart; the congruence suite checks that their primitives agree.

Every read and write here is one timed Qdrant operation for ``featurelens.telemetry``
(``dependency="qdrant"``, the method's name as the operation, the adapter as ``backend``).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Protocol, TypeVar
from uuid import UUID

from featurelens import telemetry
from featurelens.store import schema
from featurelens.store.errors import InvalidQueryError
from featurelens.store.fusion import PointKey, fuse_columns
from featurelens.store.plan import (
    CheckedQuery,
    CollectionSchema,
    FilterSpec,
    Projection,
    check_filter,
    check_offset,
    check_query,
    projection,
    scored_point,
    stored_point,
)
from featurelens.store.types import (
    DocFilter,
    PayloadSelector,
    PointRecord,
    QueryRequest,
    ScoredPoint,
    ScrollPage,
    SearchMode,
    SparseSelector,
    SparseVec,
    StoredPoint,
)
from featurelens.store.writes import (
    PointWrite,
    VectorUpdate,
    clears_date,
    payload_fields,
    point_ids,
    point_writes,
    vector_updates,
)

Handle = TypeVar("Handle")
"""An adapter's handle on one open collection (edge: its shard; server: its name)."""

_P = ParamSpec("_P")
_R = TypeVar("_R")
_Store = TypeVar("_Store", bound="EngineStore[Any]")


def _qdrant_operation(
    method: Callable[Concatenate[_Store, _P], _R],
) -> Callable[Concatenate[_Store, _P], _R]:
    """``method`` reported as one timed Qdrant operation named after it."""
    operation = method.__name__

    @functools.wraps(method)
    def timed(self: _Store, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with telemetry.operation("qdrant", operation, backend=self.backend):
            return method(self, *args, **kwargs)

    return timed


class EngineRecord(Protocol):
    """A stored point as an engine returns it; qdrant-edge's and qdrant-client's records both fit."""

    @property
    def id(self) -> Any: ...

    @property
    def payload(self) -> Mapping[str, Any] | None: ...

    @property
    def vector(self) -> Any: ...


class EngineHit(EngineRecord, Protocol):
    """A search hit as an engine returns it: a record with the leg's raw score."""

    @property
    def score(self) -> float: ...


def _sample_passes(spec: FilterSpec, seed: int) -> list[tuple[FilterSpec, int | None]]:
    """The scrolls of a seeded sample, in sample-key order: from the seed's start to the end, then
    from the beginning up to the start (the wrap-around), each as (filter, where to start)."""
    start = schema.sample_start(seed)
    return [(spec, start), (replace(spec, sample_key_lt=start), None)]


def _named_saes(
    filter: DocFilter | None, with_sparse: SparseSelector, sae_id: str | None = None
) -> list[str]:
    # The SAEs a call names: an adapter with a cached schema re-reads it if one is missing.
    named = [sae_id] if sae_id else []
    if filter is not None:
        named += [ref.sae_id for ref in (*filter.must_fire, *filter.must_not_fire)]
    if not isinstance(with_sparse, bool):
        named += list(with_sparse)
    return named


def _point(record: EngineRecord, proj: Projection) -> StoredPoint:
    # Named vectors come back as a dict; anything else means none were asked for.
    vectors = record.vector if isinstance(record.vector, dict) else None
    return stored_point(record.payload, vectors, proj)


class EngineStore(ABC, Generic[Handle]):
    """The DocumentStore's reads and writes; a subclass adds collection management and lifecycle."""

    #: The adapter as telemetry names it ("edge", "server").
    backend: ClassVar[str] = "qdrant"

    # -- what an adapter provides ------------------------------------------------------------

    @abstractmethod
    def _collection(self, name: str, sae_ids: Sequence[str] = ()) -> tuple[Handle, CollectionSchema]:
        """The collection's handle and schema; CollectionNotFoundError if there is none.

        ``sae_ids`` are the SAEs the call names, so a cached schema that lacks one is re-read.
        """

    def _write_lock(self, handle: Handle) -> AbstractContextManager[object]:
        """Held around each write and the existence check before it; none by default.

        An in-process engine serialises these itself (edge); a server takes them as they come.
        """
        return nullcontext()

    @abstractmethod
    def _search(self, handle: Handle, plan: CheckedQuery, proj: Projection) -> Sequence[EngineHit]:
        """The best ``plan.fetch`` hits of a single-leg query (``plan.mode``), fetched as ``proj`` asks."""

    @abstractmethod
    def _search_legs(self, handle: Handle, plan: CheckedQuery) -> Sequence[Sequence[EngineHit]]:
        """The dense and sparse legs of a hybrid query, ``plan.leg_limit`` hits each, ids and scores only."""

    @abstractmethod
    def _retrieve(
        self, handle: Handle, ids: Sequence[PointKey], proj: Projection | None
    ) -> Sequence[EngineRecord]:
        """The stored points among ``ids``, in any order; ``proj`` None: ids only."""

    @abstractmethod
    def _scroll(
        self, handle: Handle, spec: FilterSpec | None, limit: int, offset: str | None, proj: Projection
    ) -> tuple[Sequence[EngineRecord], object]:
        """Up to ``limit`` matching points in point-id order from ``offset``, and the next offset."""

    @abstractmethod
    def _scroll_by_sample_key(
        self, handle: Handle, spec: FilterSpec, limit: int, start: int | None, proj: Projection
    ) -> Sequence[EngineRecord]:
        """Up to ``limit`` matching points in ascending sample-key order from ``start`` (None: the lowest)."""

    @abstractmethod
    def _count(self, handle: Handle, spec: FilterSpec | None) -> int:
        """The exact number of matching points."""

    @abstractmethod
    def _upsert(self, handle: Handle, points: Sequence[PointWrite]) -> None:
        """Insert or replace whole points."""

    @abstractmethod
    def _update_vectors(self, handle: Handle, updates: Sequence[VectorUpdate]) -> None:
        """Set stored points' sparse vectors and merge their fields, keeping everything else."""

    @abstractmethod
    def _set_payload(self, handle: Handle, ids: Sequence[str], fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into the payload of stored points."""

    @abstractmethod
    def _delete_payload(self, handle: Handle, ids: Sequence[str], keys: Sequence[str]) -> None:
        """Remove payload fields of stored points."""

    @abstractmethod
    def _delete_points(self, handle: Handle, ids: Sequence[str]) -> None:
        """Delete stored points."""

    # -- writes ------------------------------------------------------------------------------

    def _existing(self, handle: Handle, ids: Sequence[str]) -> list[str]:
        """The stored points among ``ids``, in the order given: what a write will actually touch."""
        if not ids:
            return []
        found = {str(record.id) for record in self._retrieve(handle, ids, None)}
        return [point_id for point_id in ids if point_id in found]

    @_qdrant_operation
    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        """Insert or replace documents (a doc id given twice: the last one wins)."""
        handle, current = self._collection(name, [sae_id for record in points for sae_id in record.sparse])
        writes = point_writes(points, current)
        if not writes:
            return
        with self._write_lock(handle):
            self._upsert(handle, writes)

    @_qdrant_operation
    def update_vectors(self, name: str, vectors: Mapping[str, Mapping[str, SparseVec]]) -> int:
        """Set SAE latents of stored documents (and their features fields); returns docs updated."""
        handle, current = self._collection(
            name, [sae_id for per_sae in vectors.values() for sae_id in per_sae]
        )
        updates = vector_updates(vectors, current, name)
        with self._write_lock(handle):
            existing = self._existing(handle, list(updates))
            if existing:
                self._update_vectors(handle, [updates[point_id] for point_id in existing])
        return len(existing)

    @_qdrant_operation
    def set_payload(self, name: str, doc_ids: Sequence[str], payload: Mapping[str, Any]) -> int:
        """Merge payload fields into stored documents; returns docs updated."""
        handle, _ = self._collection(name)
        fields = payload_fields(payload)
        wanted = point_ids(doc_ids)
        with self._write_lock(handle):
            existing = self._existing(handle, wanted)
            if existing and fields:
                self._set_payload(handle, existing, fields)
                if clears_date(fields):
                    self._delete_payload(handle, existing, [schema.DATE_INT])
        return len(existing)

    @_qdrant_operation
    def delete(self, name: str, doc_ids: Sequence[str]) -> int:
        """Delete documents; returns how many existed."""
        handle, _ = self._collection(name)
        wanted = point_ids(doc_ids)
        with self._write_lock(handle):
            existing = self._existing(handle, wanted)
            if existing:
                self._delete_points(handle, existing)
        return len(existing)

    # -- reads -------------------------------------------------------------------------------

    @_qdrant_operation
    def query(self, name: str, request: QueryRequest) -> list[ScoredPoint]:
        """Dense, sparse or hybrid search; hits best first, ties broken by point id."""
        handle, current = self._collection(
            name, _named_saes(request.filter, request.with_sparse, request.sae_id)
        )
        plan = check_query(request, current, name)
        proj = projection(request.with_payload, request.with_dense, request.with_sparse, current, name)
        if plan.mode is SearchMode.HYBRID:
            return self._fuse_then_fetch(handle, plan, request, proj)
        hits = sorted(self._search(handle, plan, proj), key=lambda hit: (-hit.score, str(hit.id)))
        dense = plan.mode is SearchMode.DENSE
        return [
            scored_point(
                _point(hit, proj), hit.score, hit.score if dense else None, None if dense else hit.score
            )
            for hit in hits[plan.offset :]
        ]

    def _fuse_then_fetch(
        self, handle: Handle, plan: CheckedQuery, request: QueryRequest, proj: Projection
    ) -> list[ScoredPoint]:
        # The legs carry ids and scores only; payloads and vectors are fetched for the page alone.
        # UUID ids are fused on their ints (same order, far cheaper: fusion.PointKey says why).
        engine_ids: dict[PointKey, PointKey] = {}
        keys: list[list[PointKey]] = []
        scores: list[list[float]] = []
        for leg in self._search_legs(handle, plan):
            ids = [hit.id for hit in leg]
            leg_keys = [point_id.int if type(point_id) is UUID else point_id for point_id in ids]
            engine_ids.update(zip(leg_keys, ids, strict=True))
            keys.append(leg_keys)
            scores.append([hit.score for hit in leg])
        fused = fuse_columns(
            keys,
            scores,
            (request.dense_weight, request.sparse_weight),
            request.fusion,
            request.rrf_k,
            limit=plan.fetch,
        )
        page = [(engine_ids[hit.key], hit) for hit in fused[plan.offset :]]
        if not page:
            return []
        by_id = {record.id: record for record in self._retrieve(handle, [point for point, _ in page], proj)}
        out = []
        for point_id, hit in page:
            record = by_id.get(point_id)
            if record is None:  # deleted between the legs and the fetch
                continue
            dense_score, sparse_score = hit.leg_scores
            out.append(scored_point(_point(record, proj), hit.score, dense_score, sparse_score))
        return out

    @_qdrant_operation
    def scroll(
        self,
        name: str,
        filter: DocFilter | None = None,
        limit: int = 256,
        offset: str | None = None,
        with_payload: PayloadSelector = True,
        with_dense: bool = False,
        with_sparse: SparseSelector = False,
    ) -> ScrollPage:
        """One page of the matching documents in point-id order."""
        handle, current = self._collection(name, _named_saes(filter, with_sparse))
        if limit < 1:
            raise InvalidQueryError(f"scroll limit must be at least 1, got {limit}")
        spec = check_filter(filter, current, name)
        proj = projection(with_payload, with_dense, with_sparse, current, name)
        records, next_offset = self._scroll(handle, spec, limit, check_offset(offset), proj)
        points = [_point(record, proj) for record in records]
        return ScrollPage(points, None if next_offset is None else str(next_offset))

    @_qdrant_operation
    def retrieve(
        self,
        name: str,
        doc_ids: Sequence[str],
        with_payload: PayloadSelector = True,
        with_dense: bool = False,
        with_sparse: SparseSelector = False,
    ) -> list[StoredPoint]:
        """The stored documents among ``doc_ids``, in the order asked."""
        handle, current = self._collection(name, _named_saes(None, with_sparse))
        proj = projection(with_payload, with_dense, with_sparse, current, name)
        wanted = point_ids(doc_ids)
        if not wanted:
            return []
        by_id = {str(record.id): record for record in self._retrieve(handle, wanted, proj)}
        return [_point(by_id[point_id], proj) for point_id in wanted if point_id in by_id]

    @_qdrant_operation
    def count(self, name: str, filter: DocFilter | None = None) -> int:
        """Exact number of matching documents."""
        handle, current = self._collection(name, _named_saes(filter, False))
        return self._count(handle, check_filter(filter, current, name))

    @_qdrant_operation
    def sample(
        self,
        name: str,
        n: int,
        seed: int,
        filter: DocFilter | None = None,
        with_payload: PayloadSelector = True,
        with_dense: bool = False,
        with_sparse: SparseSelector = False,
    ) -> list[StoredPoint]:
        """Up to ``n`` matching documents, the same for the same seed (see the port)."""
        handle, current = self._collection(name, _named_saes(filter, with_sparse))
        if n < 0:
            raise InvalidQueryError(f"sample size must not be negative, got {n}")
        if n == 0:
            return []
        spec = check_filter(filter, current, name) or FilterSpec()
        proj = projection(with_payload, with_dense, with_sparse, current, name)
        records: list[EngineRecord] = []
        for pass_spec, start in _sample_passes(spec, seed):
            if len(records) >= n:
                break
            records.extend(self._scroll_by_sample_key(handle, pass_spec, n - len(records), start, proj))
        return [_point(record, proj) for record in records]
