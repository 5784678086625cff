"""The server adapter: a Qdrant server through qdrant-client (gRPC preferred).

Tests drive it with ``QdrantClient(":memory:")`` (qdrant-client's local mode, same client API),
which is only a stand-in: it scans in Python (35 ms to 1 s per query at 50k points).

The adapter caches each collection's schema (dense dimension, SAE ids) so queries are checked
without a round trip; ``ensure_collection`` and ``drop_collection`` refresh the cache, and an
unknown SAE triggers one re-read in case another process added it.

Hybrid queries send both legs in one ``query_batch_points`` call, fuse them here (see
``featurelens.store.fusion``) and fetch the page's payloads with one ``retrieve``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from featurelens.store import schema
from featurelens.store.errors import (
    CollectionNotFoundError,
    InvalidQueryError,
    StoreError,
    StoreUnavailableError,
)
from featurelens.store.fusion import LegHit, fuse
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
    CollectionInfo,
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


@contextmanager
def _engine(name: str) -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        raise _translate(error, name) from error


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


def _vectors(record: models.Record | models.ScoredPoint) -> dict[str, Any] | None:
    # Named vectors come back as a dict; anything else means none were asked for.
    return record.vector if isinstance(record.vector, dict) else None


def _sparse(vector: SparseVec, what: str) -> models.SparseVector:
    indices, values = schema.check_sparse(vector, what)
    return models.SparseVector(indices=indices, values=values)


class QdrantServerDocumentStore:
    """The DocumentStore on a Qdrant server, through a ``QdrantClient`` the caller owns.

    Thread-safe with a remote client (qdrant-client's remote clients are); the local ``:memory:``
    mode is for tests only.
    """

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
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
    ) -> QdrantServerDocumentStore:
        """Connect to a Qdrant server: REST at ``url``, gRPC on ``grpc_port`` of the same host.

        ``timeout`` is per request, in seconds (rounded up to whole seconds by qdrant-client).
        ``check_compatibility`` asks the server's version on connect and warns on a mismatch.
        """
        client = QdrantClient(
            url=url,
            api_key=api_key,
            prefer_grpc=prefer_grpc,
            grpc_port=grpc_port,
            timeout=math.ceil(timeout),
            check_compatibility=check_compatibility,
        )
        return cls(client)

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
        schema.check_collection_name(name)
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
        schema.check_collection_name(name)
        if not isinstance(dense_dim, int) or not 1 <= dense_dim <= 65536:
            raise InvalidQueryError(f"dense_dim must be an integer from 1 to 65536, got {dense_dim!r}")
        wanted = tuple(dict.fromkeys(sae_ids))
        for sae_id in wanted:
            schema.sparse_vector_name(sae_id)  # validates the id
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
            if current.dense_dim != dense_dim:
                raise InvalidQueryError(
                    f"collection {name!r} has {current.dense_dim}-dim dense vectors, not {dense_dim}"
                )
            new = [s for s in wanted if s not in current.sae_ids]
            with _engine(name):
                for sae_id in new:
                    self._client.create_vector_name(
                        name,
                        schema.sparse_vector_name(sae_id),
                        models.SparseVectorNameConfig(sparse=models.SparseVectorConfig()),
                    )
            if metadata and any(current_metadata.get(k) != v for k, v in metadata.items()):
                with _engine(name):
                    self._client.update_collection(name, metadata=dict(metadata))
        # Every index, every time: creating an existing index is a no-op, a missing one is repaired.
        self._create_indexes(name, [*schema.BASE_INDEXES, *(schema.feature_index(s) for s in wanted)])
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
            )

    def collection_info(self, name: str) -> CollectionInfo:
        """Points, dense dimension, SAEs and metadata of a collection."""
        schema.check_collection_name(name)
        current, metadata = self._read_schema(name)
        with _engine(name):
            points = self._client.count(name, exact=True).count
        return CollectionInfo(
            name=name, points=points, dense_dim=current.dense_dim, sae_ids=current.sae_ids, metadata=metadata
        )

    def list_collections(self) -> list[str]:
        """Names of the featurelens collections on the server, sorted (others are left out)."""
        with _engine("*"):
            names = [c.name for c in self._client.get_collections().collections]
            ours = [n for n in names if schema.MARKER_KEY in (self._metadata_of(n) or {})]
        return sorted(ours)

    def _metadata_of(self, name: str) -> dict[str, Any] | None:
        return self._client.get_collection(name).config.metadata

    def drop_collection(self, name: str) -> bool:
        """Delete a collection and its data; False if there was none."""
        schema.check_collection_name(name)
        with self._lock:
            self._schemas.pop(name, None)
        with _engine(name):
            if not self._client.collection_exists(name):
                return False
            return bool(self._client.delete_collection(name))

    # -- writes ------------------------------------------------------------------------------

    def _existing(self, name: str, point_ids: Sequence[str]) -> list[Any]:
        if not point_ids:
            return []
        with _engine(name):
            records = self._client.retrieve(name, list(point_ids), with_payload=False, with_vectors=False)
        found = {str(r.id) for r in records}
        return [p for p in point_ids if p in found]

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        """Insert or replace documents (a doc id given twice: the last one wins)."""
        latest = {record.doc_id: record for record in points}
        current = self._schema_with(name, [s for r in latest.values() for s in r.sparse])
        structs = []
        for record in latest.values():
            vectors: dict[str, Any] = {}
            if record.dense is not None:
                vectors[schema.DENSE_VECTOR] = schema.check_dense(
                    record.dense, current.dense_dim, f"the dense vector of doc {record.doc_id!r}"
                )
            payload = schema.build_payload(record, current.sae_ids)
            for sae_id, vector in record.sparse.items():
                what = f"the {sae_id!r} latents of doc {record.doc_id!r}"
                vectors[schema.sparse_vector_name(sae_id)] = _sparse(vector, what)
            pid = schema.point_id(record.doc_id)
            structs.append(models.PointStruct(id=pid, vector=vectors, payload=payload))
        if structs:
            with _engine(name):
                self._client.upsert(name, points=structs, wait=True)

    def update_vectors(self, name: str, vectors: Mapping[str, Mapping[str, SparseVec]]) -> int:
        """Set SAE latents of stored documents (and their features fields); returns docs updated."""
        current = self._schema_with(name, [s for per_sae in vectors.values() for s in per_sae])
        updates: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for doc_id, per_sae in vectors.items():
            engine_vectors: dict[str, Any] = {}
            fields: dict[str, Any] = {}
            for sae_id, vector in per_sae.items():
                current.require_sae(sae_id, name)
                what = f"the {sae_id!r} latents of doc {doc_id!r}"
                engine_vectors[schema.sparse_vector_name(sae_id)] = _sparse(vector, what)
                fields[schema.features_field(sae_id)] = schema.firing(vector)
            if engine_vectors:
                updates[schema.point_id(doc_id)] = (engine_vectors, fields)
        existing = self._existing(name, list(updates))
        if not existing:
            return 0
        operations: list[models.UpdateOperation] = [
            models.UpdateVectorsOperation(
                update_vectors=models.UpdateVectors(
                    points=[models.PointVectors(id=pid, vector=updates[str(pid)][0]) for pid in existing]
                )
            )
        ]
        for pid in existing:
            set_fields = models.SetPayload(payload=updates[str(pid)][1], points=[pid])
            operations.append(models.SetPayloadOperation(set_payload=set_fields))
        with _engine(name):
            self._client.batch_update_points(name, operations, wait=True)
        return len(existing)

    def set_payload(self, name: str, doc_ids: Sequence[str], payload: Mapping[str, Any]) -> int:
        """Merge payload fields into stored documents; returns docs updated."""
        self._schema(name)
        if schema.DOC_ID in payload:
            raise InvalidQueryError("a document's 'doc_id' cannot be changed; upsert it under the new id")
        fields = schema.check_payload_update(payload)
        existing = self._existing(name, [schema.point_id(d) for d in dict.fromkeys(doc_ids)])
        if existing and fields:
            with _engine(name):
                self._client.set_payload(name, payload=fields, points=existing, wait=True)
                if schema.DATE in fields and not fields[schema.DATE]:
                    self._client.delete_payload(name, keys=[schema.DATE_INT], points=existing, wait=True)
        return len(existing)

    def delete(self, name: str, doc_ids: Sequence[str]) -> int:
        """Delete documents; returns how many existed."""
        self._schema(name)
        existing = self._existing(name, [schema.point_id(d) for d in dict.fromkeys(doc_ids)])
        if existing:
            with _engine(name):
                selector = models.PointIdsList(points=existing)
                self._client.delete(name, points_selector=selector, wait=True)
        return len(existing)

    # -- reads -------------------------------------------------------------------------------

    def _request_schema(self, name: str, request: QueryRequest) -> CollectionSchema:
        saes = [request.sae_id] if request.sae_id else []
        if request.filter is not None:
            saes += [f.sae_id for f in (*request.filter.must_fire, *request.filter.must_not_fire)]
        if request.with_sparse not in (True, False):
            saes += list(request.with_sparse)  # type: ignore[arg-type]
        return self._schema_with(name, saes)

    def query(self, name: str, request: QueryRequest) -> list[ScoredPoint]:
        """Dense, sparse or hybrid search; hits best first, ties broken by point id."""
        current = self._request_schema(name, request)
        plan = check_query(request, current, name)
        proj = projection(request.with_payload, request.with_dense, request.with_sparse, current, name)
        if plan.mode is SearchMode.HYBRID:
            return self._hybrid(name, plan, request, proj)
        query, using = self._leg_query(plan, plan.mode)
        with _engine(name):
            hits = self._client.query_points(
                name,
                query=query,
                using=using,
                query_filter=_filter(plan.filter),
                search_params=models.SearchParams(exact=True) if plan.exact else None,
                limit=plan.fetch,
                with_payload=_with_payload(proj),
                with_vectors=_with_vectors(proj),
            ).points
        hits.sort(key=lambda h: (-h.score, str(h.id)))
        out = []
        for hit in hits[plan.offset :]:
            point = stored_point(hit.payload, _vectors(hit), proj)
            dense_score = hit.score if plan.mode is SearchMode.DENSE else None
            sparse_score = hit.score if plan.mode is SearchMode.SPARSE else None
            out.append(scored_point(point, hit.score, dense_score, sparse_score))
        return out

    def _leg_query(self, plan: CheckedQuery, mode: SearchMode) -> tuple[Any, str]:
        if mode is SearchMode.DENSE:
            return plan.dense or [], schema.DENSE_VECTOR
        indices, values = plan.sparse or ([], [])
        return models.SparseVector(indices=indices, values=values), plan.sparse_name or ""

    def _leg(self, plan: CheckedQuery, mode: SearchMode) -> models.QueryRequest:
        query, using = self._leg_query(plan, mode)
        return models.QueryRequest(
            query=query,
            using=using,
            filter=_filter(plan.filter),
            params=models.SearchParams(exact=True) if plan.exact else None,
            limit=plan.leg_limit,
            with_payload=False,
            with_vector=False,
        )

    def _hybrid(
        self, name: str, plan: CheckedQuery, request: QueryRequest, proj: Projection
    ) -> list[ScoredPoint]:
        legs_requests = [
            self._leg(plan, SearchMode.DENSE),
            self._leg(plan, SearchMode.SPARSE),
        ]
        with _engine(name):
            legs = self._client.query_batch_points(name, requests=legs_requests)
        fused = fuse(
            [[LegHit(str(h.id), h.score) for h in leg.points] for leg in legs],
            (request.dense_weight, request.sparse_weight),
            request.fusion,
            request.rrf_k,
            limit=plan.fetch,
        )
        page = fused[plan.offset :]
        if not page:
            return []
        page_ids: list[models.ExtendedPointId] = [h.key for h in page]
        with _engine(name):
            records = self._client.retrieve(
                name,
                page_ids,
                with_payload=_with_payload(proj),
                with_vectors=_with_vectors(proj),
            )
        by_id = {str(r.id): r for r in records}
        out = []
        for hit in page:
            record = by_id.get(str(hit.key))
            if record is None:  # deleted between the legs and the fetch
                continue
            point = stored_point(record.payload, _vectors(record), proj)
            out.append(scored_point(point, hit.score, hit.leg_scores[0], hit.leg_scores[1]))
        return out

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
        current = self._schema(name)
        if limit < 1:
            raise InvalidQueryError(f"scroll limit must be at least 1, got {limit}")
        spec = check_filter(filter, current, name)
        proj = projection(with_payload, with_dense, with_sparse, current, name)
        with _engine(name):
            records, next_offset = self._client.scroll(
                name,
                scroll_filter=_filter(spec),
                limit=limit,
                offset=check_offset(offset),
                with_payload=_with_payload(proj),
                with_vectors=_with_vectors(proj),
            )
        points = [stored_point(r.payload, _vectors(r), proj) for r in records]
        return ScrollPage(points, None if next_offset is None else str(next_offset))

    def retrieve(
        self,
        name: str,
        doc_ids: Sequence[str],
        with_payload: PayloadSelector = True,
        with_dense: bool = False,
        with_sparse: SparseSelector = False,
    ) -> list[StoredPoint]:
        """The stored documents among ``doc_ids``, in the order asked."""
        current = self._schema(name)
        proj = projection(with_payload, with_dense, with_sparse, current, name)
        wanted: list[models.ExtendedPointId] = [schema.point_id(d) for d in dict.fromkeys(doc_ids)]
        if not wanted:
            return []
        with _engine(name):
            records = self._client.retrieve(
                name, wanted, with_payload=_with_payload(proj), with_vectors=_with_vectors(proj)
            )
        by_id = {str(r.id): r for r in records}
        out = []
        for pid in wanted:
            record = by_id.get(str(pid))
            if record is not None:
                out.append(stored_point(record.payload, _vectors(record), proj))
        return out

    def count(self, name: str, filter: DocFilter | None = None) -> int:
        """Exact number of matching documents."""
        current = self._schema(name)
        spec = check_filter(filter, current, name)
        with _engine(name):
            return self._client.count(name, count_filter=_filter(spec), exact=True).count

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
        current = self._schema(name)
        if n < 0:
            raise InvalidQueryError(f"sample size must not be negative, got {n}")
        if n == 0:
            return []
        spec = check_filter(filter, current, name) or FilterSpec()
        proj = projection(with_payload, with_dense, with_sparse, current, name)
        start = schema.sample_start(seed)
        passes = [(spec, start), (replace(spec, sample_key_lt=start), None)]  # the second wraps around
        records: list[Any] = []
        for pass_spec, start_from in passes:
            if len(records) >= n:
                break
            with _engine(name):
                page, _ = self._client.scroll(
                    name,
                    scroll_filter=_filter(pass_spec),
                    limit=n - len(records),
                    order_by=models.OrderBy(
                        key=schema.SAMPLE_KEY, direction=models.Direction.ASC, start_from=start_from
                    ),
                    with_payload=_with_payload(proj),
                    with_vectors=_with_vectors(proj),
                )
            records.extend(page)
        return [stored_point(r.payload, _vectors(r), proj) for r in records]

    # -- lifecycle ---------------------------------------------------------------------------

    def optimize(self, name: str) -> None:
        """A no-op: the server builds indexes in the background."""
        self._schema(name)

    def close(self) -> None:
        """Close the client."""
        self._client.close()
