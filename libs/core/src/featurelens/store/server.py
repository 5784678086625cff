"""The server adapter: a Qdrant server through qdrant-client (gRPC preferred).

Tests drive it with ``QdrantClient(":memory:")`` (qdrant-client's local mode, same client API),
which is only a stand-in: it scans in Python (35 ms to 1 s per query at 50k points).

The port's reads and writes are ``featurelens.store.base.EngineStore``'s; this module says how
to call qdrant-client for them, manages collections and converts to and from the client's types.

The adapter caches each collection's schema (dense dimension, SAE ids) so queries are checked
without a round trip; ``ensure_collection`` and ``drop_collection`` refresh the cache, and a
call naming an SAE the cache lacks triggers one re-read in case another process added it.

Hybrid queries send both legs in one ``query_batch_points`` call; after the fusion, the page's
payloads come with one ``retrieve``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from featurelens.store import schema
from featurelens.store.base import EngineStore
from featurelens.store.errors import (
    CollectionNotFoundError,
    InvalidQueryError,
    StoreError,
    StoreUnavailableError,
    translated,
)
from featurelens.store.fusion import PointKey
from featurelens.store.plan import (
    CheckedQuery,
    CollectionSchema,
    FilterSpec,
    Projection,
    changes_metadata,
    check_collection_request,
)
from featurelens.store.types import CollectionInfo, SearchMode
from featurelens.store.vectors import SCROLL_BATCH, VectorSpec, stacked
from featurelens.store.writes import PointWrite, SparseLists, VectorUpdate

_UNAVAILABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})


def _rpc_code(error: Exception) -> str | None:
    # gRPC errors expose code(); the core never imports grpc, so read it by duck typing.
    code = getattr(error, "code", None)
    if not callable(code):
        return None
    try:
        return str(getattr(code(), "name", ""))
    except Exception:
        return None


def _translate(error: Exception, name: str) -> StoreError:
    """A port error for a qdrant-client exception (remote HTTP, remote gRPC or local mode)."""
    message = str(error)
    not_found = CollectionNotFoundError(f"collection {name!r} does not exist")
    if isinstance(error, UnexpectedResponse):
        if error.status_code == 404:
            return not_found
        if error.status_code in (400, 422):
            return InvalidQueryError(f"collection {name!r} rejected the request: {message}")
        if error.status_code in (502, 503, 504):
            return StoreUnavailableError(f"the Qdrant server is unavailable: {message}")
        return StoreError(f"the Qdrant server failed on collection {name!r}: {message}")
    if isinstance(error, ResponseHandlingException | ConnectionError | TimeoutError):
        return StoreUnavailableError(f"the Qdrant server cannot be reached: {message}")
    code = _rpc_code(error)
    details = getattr(error, "details", None)
    if code and callable(details):
        message = f"{code}: {details()}"
    if code == "NOT_FOUND":
        return not_found
    if code == "INVALID_ARGUMENT":
        return InvalidQueryError(f"collection {name!r} rejected the request: {message}")
    if code in _UNAVAILABLE_CODES:
        return StoreUnavailableError(f"the Qdrant server is unavailable: {message}")
    if isinstance(error, RuntimeError) and "closed" in message:  # local mode after close()
        return StoreUnavailableError("the Qdrant client is closed")
    if isinstance(error, ValueError) and "not found" in message and name in message:
        return not_found
    if isinstance(error, ValueError):
        return InvalidQueryError(f"collection {name!r} rejected the request: {message}")
    return StoreError(f"the Qdrant client failed on collection {name!r}: {message}")


def _engine(name: str) -> AbstractContextManager[None]:
    return translated(name, _translate)


def _index_schema(kind: schema.IndexKind) -> models.PayloadSchemaType | models.IntegerIndexParams:
    if kind is schema.IndexKind.KEYWORD:
        return models.PayloadSchemaType.KEYWORD
    lookup = kind is schema.IndexKind.INTEGER_LOOKUP
    return models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=lookup, range=not lookup)


def _filter(spec: FilterSpec | None) -> models.Filter | None:
    if spec is None:
        return None
    must: list[models.Condition] = []
    must_not: list[models.Condition] = []
    if spec.categories:
        categories = models.MatchAny(any=list(spec.categories))
        must.append(models.FieldCondition(key=schema.CATEGORIES, match=categories))
    if spec.date_gte is not None or spec.date_lte is not None:
        dates = models.Range(gte=spec.date_gte, lte=spec.date_lte)
        must.append(models.FieldCondition(key=schema.DATE_INT, range=dates))
    for key, latent in spec.must_fire:
        must.append(models.FieldCondition(key=key, match=models.MatchValue(value=latent)))
    for key, latents in spec.must_not_fire:
        must_not.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(latents))))
    if spec.sample_key_lt is not None:
        must.append(models.FieldCondition(key=schema.SAMPLE_KEY, range=models.Range(lt=spec.sample_key_lt)))
    return models.Filter(must=must or None, must_not=must_not or None)


def _with_payload(proj: Projection) -> bool | list[str]:
    return True if proj.payload is None else list(proj.payload)


def _with_vectors(proj: Projection) -> bool | list[str]:
    return list(proj.vectors) if proj.vectors else False


def _vectors(dense: list[float] | None, sparse: Mapping[str, SparseLists]) -> dict[str, models.Vector]:
    named: dict[str, models.Vector] = {} if dense is None else {schema.DENSE_VECTOR: dense}
    for vector_name, (indices, values) in sparse.items():
        named[vector_name] = models.SparseVector(indices=indices, values=values)
    return named


def _leg_query(plan: CheckedQuery, mode: SearchMode) -> tuple[list[float] | models.SparseVector, str]:
    if mode is SearchMode.DENSE:
        return plan.dense or [], schema.DENSE_VECTOR
    indices, values = plan.sparse or ([], [])
    return models.SparseVector(indices=indices, values=values), plan.sparse_name or ""


def _leg(plan: CheckedQuery, mode: SearchMode) -> models.QueryRequest:
    query, using = _leg_query(plan, mode)
    return models.QueryRequest(
        query=query,
        using=using,
        filter=_filter(plan.filter),
        params=models.SearchParams(exact=True) if plan.exact else None,
        limit=plan.leg_limit,
        with_payload=False,
        with_vector=False,
    )


class QdrantServerDocumentStore(EngineStore[str]):
    """The DocumentStore on a Qdrant server, through a ``QdrantClient`` the caller owns.

    A collection's handle is its name: the client addresses every call by it.

    Thread-safe with a remote client (qdrant-client's remote clients are); the local ``:memory:``
    mode is for tests only.
    """

    backend = "server"
    reads_hold_gil = False

    def __init__(
        self, client: QdrantClient, *, shard_number: int | None = None, replication_factor: int | None = None
    ) -> None:
        """``shard_number`` and ``replication_factor`` apply to collections this store creates (None:
        the server's defaults: one shard per node present, and its configured replication factor)."""
        for value, what in ((shard_number, "shard_number"), (replication_factor, "replication_factor")):
            if value is not None and value < 1:
                raise ValueError(f"{what} is {value}; give 1 or more, or None for the server's default")
        self._client = client
        self._shard_number = shard_number
        self._replication_factor = replication_factor
        self._lock = threading.Lock()
        self._schemas: dict[str, CollectionSchema] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        api_key: str | None = None,
        prefer_grpc: bool = True,
        timeout: float = 10.0,
        grpc_port: int = 6334,
        check_compatibility: bool = True,
        shard_number: int | None = None,
        replication_factor: int | None = None,
    ) -> QdrantServerDocumentStore:
        """Connect to a Qdrant server: REST at ``url``, gRPC on ``grpc_port`` of the same host.

        ``timeout`` is per request, in seconds (rounded up to whole seconds by qdrant-client).
        ``check_compatibility`` asks the server's version on connect and warns on a mismatch.
        ``shard_number`` / ``replication_factor``: of the collections it creates (see ``__init__``).
        """
        client = QdrantClient(
            url=url,
            api_key=api_key,
            prefer_grpc=prefer_grpc,
            grpc_port=grpc_port,
            timeout=math.ceil(timeout),
            check_compatibility=check_compatibility,
        )
        return cls(client, shard_number=shard_number, replication_factor=replication_factor)

    # -- collections -------------------------------------------------------------------------

    def _read_schema(self, name: str) -> tuple[CollectionSchema, dict[str, Any]]:
        with _engine(name):
            info = self._client.get_collection(name)
        params = info.config.params
        dense = params.vectors.get(schema.DENSE_VECTOR) if isinstance(params.vectors, dict) else None
        metadata = dict(info.config.metadata or {})
        if dense is None or schema.MARKER_KEY not in metadata:
            raise InvalidQueryError(f"collection {name!r} is not a featurelens document collection")
        names = [schema.sae_id_of(vector) for vector in (params.sparse_vectors or {})]
        sae_ids = sorted(sae_id for sae_id in names if sae_id is not None)
        metadata.pop(schema.MARKER_KEY)
        return CollectionSchema(dense.size, tuple(sae_ids)), metadata

    def _schema(self, name: str, refresh: bool = False) -> CollectionSchema:
        schema.check_store_name(name)
        with self._lock:
            cached = None if refresh else self._schemas.get(name)
        if cached is not None:
            return cached
        try:
            fresh, _ = self._read_schema(name)
        except CollectionNotFoundError:
            with self._lock:
                self._schemas.pop(name, None)
            raise
        with self._lock:
            self._schemas[name] = fresh
        return fresh

    def _schema_with(self, name: str, sae_ids: Sequence[str]) -> CollectionSchema:
        # Another process may have added an SAE since the schema was cached: re-read once.
        current = self._schema(name)
        if any(s not in current.sae_ids for s in sae_ids):
            current = self._schema(name, refresh=True)
        return current

    def _create_indexes(self, name: str, indexes: Sequence[schema.PayloadIndex]) -> None:
        with _engine(name):
            for index in indexes:
                self._client.create_payload_index(
                    name, index.field, field_schema=_index_schema(index.kind), wait=True
                )

    def ensure_collection(
        self,
        name: str,
        dense_dim: int,
        sae_ids: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> CollectionInfo:
        """Create the collection if absent; add sparse vectors for new SAEs; merge metadata."""
        wanted = check_collection_request(name, dense_dim, sae_ids)
        with _engine(name):
            exists = self._client.collection_exists(name)
        if not exists:
            try:
                self._create(name, dense_dim, wanted, metadata)
            except StoreError:
                with _engine(name):
                    if not self._client.collection_exists(name):
                        raise
                # Another process created it first: carry on as with an existing collection.
                exists = True
        if exists:
            current, current_metadata = self._read_schema(name)
            current.require_dense_dim(dense_dim, name)
            new = [s for s in wanted if s not in current.sae_ids]
            with _engine(name):
                for sae_id in new:
                    self._client.create_vector_name(
                        name,
                        schema.sparse_vector_name(sae_id),
                        models.SparseVectorNameConfig(sparse=models.SparseVectorConfig()),
                    )
            if changes_metadata(current_metadata, metadata):
                with _engine(name):
                    self._client.update_collection(name, metadata=dict(metadata or {}))
        # Every index, every time: creating an existing index is a no-op, a missing one is repaired.
        self._create_indexes(name, schema.collection_indexes(name, wanted))
        self._schema(name, refresh=True)
        return self.collection_info(name)

    def _create(
        self, name: str, dense_dim: int, sae_ids: tuple[str, ...], metadata: Mapping[str, Any] | None
    ) -> None:
        with _engine(name):
            dense = models.VectorParams(size=dense_dim, distance=models.Distance.COSINE)
            self._client.create_collection(
                name,
                vectors_config={schema.DENSE_VECTOR: dense},
                sparse_vectors_config={
                    schema.sparse_vector_name(s): models.SparseVectorParams() for s in sae_ids
                },
                metadata={**(metadata or {}), schema.MARKER_KEY: schema.SCHEMA_VERSION},
                shard_number=self._shard_number,
                replication_factor=self._replication_factor,
            )

    def collection_info(self, name: str) -> CollectionInfo:
        """Points, dense dimension, SAEs and metadata of a collection."""
        schema.check_store_name(name)
        current, metadata = self._read_schema(name)
        with _engine(name):
            points = self._client.count(name, exact=True).count
        return CollectionInfo(
            name=name, points=points, dense_dim=current.dense_dim, sae_ids=current.sae_ids, metadata=metadata
        )

    def list_collections(self) -> list[str]:
        """Names of the featurelens corpora on the server, sorted.

        Labels collections (their names are no corpus names) and others' collections are left out.
        """
        with _engine("*"):
            names = [c.name for c in self._client.get_collections().collections]
            corpora = [n for n in names if schema.is_corpus_name(n)]
            ours = [n for n in corpora if schema.MARKER_KEY in (self._metadata_of(n) or {})]
        return sorted(ours)

    def _metadata_of(self, name: str) -> dict[str, Any] | None:
        return self._client.get_collection(name).config.metadata

    def drop_collection(self, name: str) -> bool:
        """Delete a collection and its data; False if there was none."""
        schema.check_store_name(name)
        with self._lock:
            self._schemas.pop(name, None)
        with _engine(name):
            if not self._client.collection_exists(name):
                return False
            return bool(self._client.delete_collection(name))

    # -- engine primitives (see EngineStore) ---------------------------------------------------

    def _collection(self, name: str, sae_ids: Sequence[str] = ()) -> tuple[str, CollectionSchema]:
        return name, self._schema_with(name, sae_ids)

    def _search(self, handle: str, plan: CheckedQuery, proj: Projection) -> list[models.ScoredPoint]:
        query, using = _leg_query(plan, plan.mode)
        with _engine(handle):
            return self._client.query_points(
                handle,
                query=query,
                using=using,
                query_filter=_filter(plan.filter),
                search_params=models.SearchParams(exact=True) if plan.exact else None,
                limit=plan.fetch,
                with_payload=_with_payload(proj),
                with_vectors=_with_vectors(proj),
            ).points

    def _search_legs(self, handle: str, plan: CheckedQuery) -> list[list[models.ScoredPoint]]:
        requests = [_leg(plan, SearchMode.DENSE), _leg(plan, SearchMode.SPARSE)]
        with _engine(handle):
            legs = self._client.query_batch_points(handle, requests=requests)
        return [leg.points for leg in legs]

    def _retrieve(self, handle: str, ids: Sequence[PointKey], proj: Projection | None) -> list[models.Record]:
        # The client returns point ids as strings, so the keys that come back from a leg are strings.
        point_ids: list[models.ExtendedPointId] = [str(point_id) for point_id in ids]
        with _engine(handle):
            return self._client.retrieve(
                handle,
                point_ids,
                with_payload=_with_payload(proj) if proj else False,
                with_vectors=_with_vectors(proj) if proj else False,
            )

    def _scroll(
        self, handle: str, spec: FilterSpec | None, limit: int, offset: str | None, proj: Projection
    ) -> tuple[list[models.Record], object]:
        with _engine(handle):
            return self._client.scroll(
                handle,
                scroll_filter=_filter(spec),
                limit=limit,
                offset=offset,
                with_payload=_with_payload(proj),
                with_vectors=_with_vectors(proj),
            )

    def _scroll_by_sample_key(
        self, handle: str, spec: FilterSpec, limit: int, start: int | None, proj: Projection
    ) -> list[models.Record]:
        order = models.OrderBy(key=schema.SAMPLE_KEY, direction=models.Direction.ASC, start_from=start)
        with _engine(handle):
            records, _ = self._client.scroll(
                handle,
                scroll_filter=_filter(spec),
                limit=limit,
                order_by=order,
                with_payload=_with_payload(proj),
                with_vectors=_with_vectors(proj),
            )
        return records

    def _count(self, handle: str, spec: FilterSpec | None) -> int:
        with _engine(handle):
            return self._client.count(handle, count_filter=_filter(spec), exact=True).count

    def _upsert(self, handle: str, points: Sequence[PointWrite]) -> None:
        structs = [
            models.PointStruct(id=p.point_id, vector=_vectors(p.dense, p.sparse), payload=p.payload)
            for p in points
        ]
        with _engine(handle):
            self._client.upsert(handle, points=structs, wait=True)

    def _update_vectors(self, handle: str, updates: Sequence[VectorUpdate]) -> None:
        # One batch: the new vectors of every point, then each point's features fields.
        new_vectors = [models.PointVectors(id=u.point_id, vector=_vectors(None, u.sparse)) for u in updates]
        operations: list[models.UpdateOperation] = [
            models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(points=new_vectors))
        ]
        for update in updates:
            set_fields = models.SetPayload(payload=update.fields, points=[update.point_id])
            operations.append(models.SetPayloadOperation(set_payload=set_fields))
        with _engine(handle):
            self._client.batch_update_points(handle, operations, wait=True)

    def _set_payload(self, handle: str, ids: Sequence[str], fields: Mapping[str, Any]) -> None:
        points: list[Any] = list(ids)  # the client's list type is invariant
        with _engine(handle):
            self._client.set_payload(handle, payload=dict(fields), points=points, wait=True)

    def _delete_payload(self, handle: str, ids: Sequence[str], keys: Sequence[str]) -> None:
        points: list[Any] = list(ids)  # the client's list type is invariant
        with _engine(handle):
            self._client.delete_payload(handle, keys=list(keys), points=points, wait=True)

    def _delete_points(self, handle: str, ids: Sequence[str]) -> None:
        with _engine(handle):
            self._client.delete(handle, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    # -- lifecycle ---------------------------------------------------------------------------

    # -- any collection's vectors (featurelens.store.vectors) -----------------------------------

    def vector_collections(self) -> list[str]:
        """Every collection on the server, sorted, featurelens-made or not."""
        with _engine("*"):
            return sorted(c.name for c in self._client.get_collections().collections)

    def vector_specs(self, name: str) -> list[VectorSpec]:
        """The named vectors of any collection ("" is an unnamed vector)."""
        with _engine(name):
            params = self._client.get_collection(name).config.params
        vectors = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors}
        specs = [_vector_spec(vector_name, vector) for vector_name, vector in vectors.items() if vector]
        specs += [VectorSpec(vector_name, None, "sparse") for vector_name in params.sparse_vectors or {}]
        return specs

    def count_points(self, name: str) -> int:
        """Points of any collection (exact)."""
        with _engine(name):
            return self._client.count(name, exact=True).count

    def scroll_vectors(self, name: str, vector_name: str, batch: int = SCROLL_BATCH) -> Iterator[np.ndarray]:
        """The dense vector ``vector_name`` of every point that has it, ``batch`` points a page."""
        dim = next((s.dim for s in self.vector_specs(name) if s.name == vector_name and s.dim), None)
        if dim is None:
            raise InvalidQueryError(f"collection {name!r} has no dense vector {vector_name!r}")
        with_vectors: bool | list[str] = [vector_name] if vector_name else True
        offset: models.ExtendedPointId | None = None
        while True:
            with _engine(name):
                records, next_offset = self._client.scroll(
                    name, limit=batch, offset=offset, with_vectors=with_vectors, with_payload=False
                )
            rows = [_named(record.vector, vector_name) for record in records]
            yield stacked([row for row in rows if row is not None], dim)
            if next_offset is None:
                return
            offset = next_offset  # type: ignore[assignment]  # a grpc PointId works as an offset too

    def optimize(self, name: str) -> None:
        """A no-op: the server builds indexes in the background."""
        self._schema(name)

    def close(self) -> None:
        """Close the client."""
        self._client.close()

    # -- attaching an SAE to a collection featurelens did not create (featurelens.store.attach) --

    @property
    def attach_client(self) -> QdrantClient:
        """The qdrant-client this store talks through, for ``attach_engines.QdrantClientCollection``."""
        return self._client


def _vector_spec(name: str, params: models.VectorParams) -> VectorSpec:
    if params.multivector_config is not None:
        return VectorSpec(name, None, "multivector")
    return VectorSpec(name, params.size, "dense")


def _named(vector: Any, vector_name: str) -> list[float] | None:
    """A record's dense vector ``vector_name`` ("" the unnamed one), None when the point lacks it."""
    if isinstance(vector, dict):
        vector = vector.get(vector_name)
    return vector if isinstance(vector, list) and vector and isinstance(vector[0], float | int) else None
