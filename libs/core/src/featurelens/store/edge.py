"""The embedded adapter: Qdrant's in-process engine (qdrant-edge), persisted to a folder.

The port's reads and writes are ``featurelens.store.base.EngineStore``'s; this module says how
to call an edge shard for them, manages collections and converts to and from the engine's types.

Layout: ``<path>/<collection>/shard/`` is one edge shard, ``<path>/<collection>/collection.json``
holds what the shard does not tell back once loaded (dense dimension, SAE ids, metadata) and
marks the collection as complete: it is written last on creation, so a folder without it is a
creation that crashed and is cleared on the next ``ensure_collection``.

Threads: the engine is the real Qdrant shard with its own locking, so reads run concurrently.
This class adds a store lock for opening, creating, dropping and closing shards, and a lock per
collection around each write and the existence check before it (``EngineStore._write_lock``).

Durability: the engine writes a WAL for every update; ``flush()`` persists segments and
``close()`` flushes and releases the folder (another process cannot open a shard while it is
open here; that is a StoreUnavailableError).

Indexing: the engine builds HNSW indexes only when told; call ``optimize(name)`` after a bulk
ingest (until then dense queries are exact full scans, which is fine for small collections).
New collections build their HNSW graph with m 16 and ef_construct 64 (Qdrant's default is 100):
on 60k 256-dim abstracts (2 shared cores) that built in 25 s instead of 34-49 s with the same
query time, and a dense recall@10 against exact search of 0.996 instead of 0.998.
The engine holds the GIL while it searches, writes and optimizes (a 60k optimize stalls every
other thread of the process for its whole duration).

What the engine offers to go past one core for reads, measured (0.9.0, 60k abstracts, 2 cores):
threads calling ``query`` concurrently do not scale (1, 2, 4 threads: 695, 654, 624 hybrid leg
pairs/s); one ``query_batch`` of 8 queries' 16 legs costs what 8 calls of 2 legs do (1.38-1.42
ms a query, with 1 or 2 search threads), so batching concurrent queries saves nothing; a second
process cannot load a shard that is open here (its WAL is locked: StoreUnavailableError), and with
the WAL disabled a second process can load it but flushes it on close, after which this process's
next flush fails (its payload storage's journal no longer matches). So one process serves one
shard's reads on one core; going past that needs copies of the shard per reader process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import qdrant_edge as qe

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

logger = logging.getLogger(__name__)

_META = "collection.json"
_SHARD = "shard"
#: The file in which an edge shard keeps its vector config (written by qdrant-edge itself).
_EDGE_CONFIG = "edge_config.json"
#: The HNSW graph of new collections: m, ef_construct, full_scan_threshold (KB, Qdrant's default).
_HNSW_M, _HNSW_EF_CONSTRUCT, _HNSW_FULL_SCAN_KB = 16, 64, 10_000


@dataclass
class _Collection:
    name: str
    shard: qe.EdgeShard
    schema: CollectionSchema
    metadata: dict[str, Any]
    write_lock: threading.Lock = field(default_factory=threading.Lock)


def _translate(error: Exception, name: str) -> StoreError:
    """A port error for an engine exception (the engine raises plain Exceptions with a message)."""
    message = str(error)
    if "not initialized" in message:
        return CollectionNotFoundError(f"collection {name!r} was dropped or closed during the call")
    if "WouldBlock" in message or "failed to open WAL" in message:
        return StoreUnavailableError(f"collection {name!r} is open in another process")
    if "dimension error" in message or "Wrong input" in message or "Not existing vector" in message:
        return InvalidQueryError(f"collection {name!r} rejected the request: {message}")
    return StoreError(f"the edge engine failed on collection {name!r}: {message}")


def _engine(name: str) -> AbstractContextManager[None]:
    return translated(name, _translate)


def _index_schema(kind: schema.IndexKind) -> qe.PayloadSchemaType | qe.IntegerIndexParams:
    if kind is schema.IndexKind.KEYWORD:
        return qe.PayloadSchemaType.Keyword
    if kind is schema.IndexKind.INTEGER_RANGE:
        return qe.IntegerIndexParams(lookup=False, range=True)
    return qe.IntegerIndexParams(lookup=True, range=False)


def _filter(spec: FilterSpec | None) -> qe.Filter | None:
    if spec is None:
        return None
    must: list[Any] = []
    must_not: list[Any] = []
    if spec.categories:
        must.append(qe.FieldCondition(schema.CATEGORIES, match=qe.MatchAny(list(spec.categories))))
    if spec.date_gte is not None or spec.date_lte is not None:
        low = None if spec.date_gte is None else float(spec.date_gte)
        high = None if spec.date_lte is None else float(spec.date_lte)
        must.append(qe.FieldCondition(schema.DATE_INT, range=qe.RangeFloat(gte=low, lte=high)))
    for key, latent in spec.must_fire:
        must.append(qe.FieldCondition(key, match=qe.MatchValue(latent)))
    for key, latents in spec.must_not_fire:
        must_not.append(qe.FieldCondition(key, match=qe.MatchAny(list(latents))))
    if spec.sample_key_lt is not None:
        must.append(qe.FieldCondition(schema.SAMPLE_KEY, range=qe.RangeFloat(lt=float(spec.sample_key_lt))))
    return qe.Filter(must=must or None, must_not=must_not or None)


def _with_payload(proj: Projection) -> bool | qe.PayloadSelector:
    return True if proj.payload is None else qe.PayloadSelector.Include(list(proj.payload))


def _with_vector(proj: Projection) -> bool | list[str]:
    return list(proj.vectors) if proj.vectors else False


def _vectors(dense: list[float] | None, sparse: Mapping[str, SparseLists]) -> dict[str, qe.NamedVector]:
    named: dict[str, qe.NamedVector] = {} if dense is None else {schema.DENSE_VECTOR: dense}
    for vector_name, (indices, values) in sparse.items():
        named[vector_name] = qe.SparseVector(indices, values)
    return named


def _leg(plan: CheckedQuery, mode: SearchMode, limit: int, proj: Projection | None) -> qe.QueryRequest:
    if mode is SearchMode.DENSE:
        query = qe.Query.Nearest(plan.dense or [], using=schema.DENSE_VECTOR)
    else:
        indices, values = plan.sparse or ([], [])
        query = qe.Query.Nearest(qe.SparseVector(indices, values), using=plan.sparse_name)
    return qe.QueryRequest(
        limit=limit,
        query=query,
        filter=_filter(plan.filter),
        params=qe.SearchParams(exact=True) if plan.exact else None,
        with_payload=_with_payload(proj) if proj else False,
        with_vector=_with_vector(proj) if proj else False,
    )


class EdgeDocumentStore(EngineStore[_Collection]):
    """The DocumentStore on qdrant-edge: one shard per collection under ``path``.

    Use as a context manager, or call ``close()``: it flushes every shard and frees the folder.
    ``max_search_threads`` bounds each shard's search pool (None: one per CPU).
    """

    backend = "edge"
    reads_hold_gil = True

    def __init__(self, path: Path, *, max_search_threads: int | None = None) -> None:
        self._path = Path(path)
        self._path.mkdir(parents=True, exist_ok=True)
        self._max_search_threads = max_search_threads
        self._lock = threading.Lock()
        self._open: dict[str, _Collection] = {}
        self._closed = False

    def __enter__(self) -> EdgeDocumentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The folder holding the collections."""
        return self._path

    # -- collections -------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self._path / schema.check_store_name(name)

    def _write_meta(self, name: str, coll: _Collection) -> None:
        meta = {
            "schema_version": schema.SCHEMA_VERSION,
            "dense_dim": coll.schema.dense_dim,
            "sae_ids": list(coll.schema.sae_ids),
            "metadata": coll.metadata,
        }
        target = self._dir(name) / _META
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        os.replace(tmp, target)  # atomic: a reader never sees half a file

    def _get_locked(self, name: str) -> _Collection:
        if self._closed:
            raise StoreUnavailableError("the edge store is closed")
        coll = self._open.get(name)
        if coll is not None:
            return coll
        folder = self._dir(name)
        meta_path = folder / _META
        if not meta_path.is_file():
            raise CollectionNotFoundError(f"collection {name!r} does not exist")
        meta = json.loads(meta_path.read_text())
        # Sparse vectors are left out so the shard's own list wins: it can be ahead of the
        # metadata file if a process died between adding an SAE and rewriting the file.
        dense = qe.EdgeVectorParams(size=int(meta["dense_dim"]), distance=qe.Distance.Cosine)
        config = qe.EdgeConfig(
            vectors={schema.DENSE_VECTOR: dense}, max_search_threads=self._max_search_threads
        )
        with _engine(name):
            shard = qe.EdgeShard.load(str(folder / _SHARD), config)
        coll = _Collection(
            name=name,
            shard=shard,
            schema=CollectionSchema(int(meta["dense_dim"]), tuple(sorted(meta["sae_ids"]))),
            metadata=dict(meta.get("metadata") or {}),
        )
        self._open[name] = coll
        return coll

    def _get(self, name: str) -> _Collection:
        schema.check_store_name(name)
        with self._lock:
            return self._get_locked(name)

    def _create_locked(
        self, name: str, dense_dim: int, sae_ids: tuple[str, ...], metadata: dict[str, Any]
    ) -> _Collection:
        folder = self._dir(name)
        if folder.exists():
            logger.warning("clearing %s: an earlier creation of %r did not finish", folder, name)
            shutil.rmtree(folder)
        config = qe.EdgeConfig(
            vectors={schema.DENSE_VECTOR: qe.EdgeVectorParams(size=dense_dim, distance=qe.Distance.Cosine)},
            sparse_vectors={schema.sparse_vector_name(s): qe.EdgeSparseVectorParams() for s in sae_ids},
            hnsw_config=qe.HnswIndexConfig(_HNSW_M, _HNSW_EF_CONSTRUCT, _HNSW_FULL_SCAN_KB),
            max_search_threads=self._max_search_threads,
        )
        with _engine(name):
            shard = qe.EdgeShard.create(str(folder / _SHARD), config)
            for index in schema.collection_indexes(name, sae_ids):
                shard.update(qe.UpdateOperation.create_field_index(index.field, _index_schema(index.kind)))
            shard.flush()
        coll = _Collection(
            name=name,
            shard=shard,
            schema=CollectionSchema(dense_dim, tuple(sorted(sae_ids))),
            metadata=metadata,
        )
        self._write_meta(name, coll)
        self._open[name] = coll
        logger.info("created collection %r (dense %d, SAEs %s) in %s", name, dense_dim, sae_ids, folder)
        return coll

    def _add_saes_locked(self, name: str, coll: _Collection, new: Sequence[str]) -> None:
        # The edge engine can add a named sparse vector to a live shard, so no data copy is needed.
        with coll.write_lock, _engine(name):
            for sae_id in new:
                coll.shard.update(qe.UpdateOperation.create_sparse_vector(schema.sparse_vector_name(sae_id)))
                index = schema.feature_index(sae_id)
                create_index = qe.UpdateOperation.create_field_index(index.field, _index_schema(index.kind))
                coll.shard.update(create_index)
            coll.shard.flush()
        coll.schema = CollectionSchema(coll.schema.dense_dim, tuple(sorted({*coll.schema.sae_ids, *new})))
        logger.info("collection %r: added sparse vectors for SAEs %s", name, list(new))

    def ensure_collection(
        self,
        name: str,
        dense_dim: int,
        sae_ids: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> CollectionInfo:
        """Create the collection if absent; add sparse vectors for new SAEs; merge metadata."""
        wanted = check_collection_request(name, dense_dim, sae_ids)
        with self._lock:
            try:
                coll = self._get_locked(name)
            except CollectionNotFoundError:
                coll = self._create_locked(name, dense_dim, wanted, dict(metadata or {}))
            else:
                coll.schema.require_dense_dim(dense_dim, name)
                new = [s for s in wanted if s not in coll.schema.sae_ids]
                if new:
                    self._add_saes_locked(name, coll, new)
                if new or changes_metadata(coll.metadata, metadata):
                    coll.metadata.update(metadata or {})
                    self._write_meta(name, coll)
        return self.collection_info(name)

    def collection_info(self, name: str) -> CollectionInfo:
        """Points, dense dimension, SAEs and metadata of a collection."""
        coll = self._get(name)
        with _engine(name):
            points = coll.shard.count(qe.CountRequest(exact=True))
        return CollectionInfo(
            name=name,
            points=points,
            dense_dim=coll.schema.dense_dim,
            sae_ids=coll.schema.sae_ids,
            metadata=dict(coll.metadata),
        )

    def list_collections(self) -> list[str]:
        """Names of the complete corpora under the folder, sorted (labels collections are left out)."""
        names = (p.parent.name for p in self._path.glob(f"*/{_META}"))
        return sorted(name for name in names if schema.is_corpus_name(name))

    def drop_collection(self, name: str) -> bool:
        """Close and delete a collection's folder; False if there was none."""
        folder = self._dir(name)
        with self._lock:
            coll = self._open.pop(name, None)
            if coll is not None:
                with coll.write_lock, _engine(name):
                    coll.shard.close()
            existed = (folder / _META).is_file()
            if folder.exists():
                shutil.rmtree(folder)
        if existed:
            logger.info("dropped collection %r", name)
        return existed

    # -- engine primitives (see EngineStore) ---------------------------------------------------

    def _collection(self, name: str, sae_ids: Sequence[str] = ()) -> tuple[_Collection, CollectionSchema]:
        # The schema in memory is the shard's own, so there is nothing to re-read for sae_ids.
        coll = self._get(name)
        return coll, coll.schema

    def _write_lock(self, handle: _Collection) -> AbstractContextManager[object]:
        return handle.write_lock

    def _search(self, handle: _Collection, plan: CheckedQuery, proj: Projection) -> list[qe.ScoredPoint]:
        with _engine(handle.name):
            return handle.shard.query(_leg(plan, plan.mode, plan.fetch, proj))

    def _search_legs(self, handle: _Collection, plan: CheckedQuery) -> list[list[qe.ScoredPoint]]:
        legs = [_leg(plan, mode, plan.leg_limit, None) for mode in (SearchMode.DENSE, SearchMode.SPARSE)]
        with _engine(handle.name):
            return handle.shard.query_batch(qe.QueryBatchRequest(legs))

    def _retrieve(
        self, handle: _Collection, ids: Sequence[PointKey], proj: Projection | None
    ) -> list[qe.Record]:
        with _engine(handle.name):
            return handle.shard.retrieve(
                list(ids),
                with_payload=_with_payload(proj) if proj else False,
                with_vector=_with_vector(proj) if proj else False,
            )

    def _scroll(
        self, handle: _Collection, spec: FilterSpec | None, limit: int, offset: str | None, proj: Projection
    ) -> tuple[list[qe.Record], object]:
        request = qe.ScrollRequest(
            offset=offset,
            limit=limit,
            filter=_filter(spec),
            with_payload=_with_payload(proj),
            with_vector=_with_vector(proj),
        )
        with _engine(handle.name):
            return handle.shard.scroll(request)

    def _scroll_by_sample_key(
        self, handle: _Collection, spec: FilterSpec, limit: int, start: int | None, proj: Projection
    ) -> list[qe.Record]:
        request = qe.ScrollRequest(
            limit=limit,
            filter=_filter(spec),
            with_payload=_with_payload(proj),
            with_vector=_with_vector(proj),
            order_by=qe.OrderBy(schema.SAMPLE_KEY, direction=qe.Direction.Asc, start_from=start),
        )
        with _engine(handle.name):
            records, _ = handle.shard.scroll(request)
        return records

    def _count(self, handle: _Collection, spec: FilterSpec | None) -> int:
        with _engine(handle.name):
            return handle.shard.count(qe.CountRequest(exact=True, filter=_filter(spec)))

    def _upsert(self, handle: _Collection, points: Sequence[PointWrite]) -> None:
        engine_points = [qe.Point(p.point_id, _vectors(p.dense, p.sparse), p.payload) for p in points]
        with _engine(handle.name):
            handle.shard.update(qe.UpdateOperation.upsert_points(engine_points))

    def _update_vectors(self, handle: _Collection, updates: Sequence[VectorUpdate]) -> None:
        point_vectors = [qe.PointVectors(u.point_id, _vectors(None, u.sparse)) for u in updates]
        with _engine(handle.name):
            handle.shard.update(qe.UpdateOperation.update_vectors(point_vectors))
            for update in updates:
                handle.shard.update(qe.UpdateOperation.set_payload([update.point_id], update.fields))

    def _set_payload(self, handle: _Collection, ids: Sequence[str], fields: Mapping[str, Any]) -> None:
        with _engine(handle.name):
            handle.shard.update(qe.UpdateOperation.set_payload(list(ids), dict(fields)))

    def _delete_payload(self, handle: _Collection, ids: Sequence[str], keys: Sequence[str]) -> None:
        with _engine(handle.name):
            handle.shard.update(qe.UpdateOperation.delete_payload(list(ids), list(keys)))

    def _delete_points(self, handle: _Collection, ids: Sequence[str]) -> None:
        with _engine(handle.name):
            handle.shard.update(qe.UpdateOperation.delete_points(list(ids)))

    # -- any collection's vectors (featurelens.store.vectors) -----------------------------------
    #
    # A collection here is ``<path>/<name>/shard/`` (featurelens's layout) or ``<path>/<name>/``
    # itself being an edge shard (one made with qdrant-edge directly); its vectors are read from the
    # shard's own config file, as the engine does not tell them back once loaded.

    def vector_collections(self) -> list[str]:
        """Every collection under the folder, sorted, featurelens-made or not."""
        shards = {p.parent.name for p in self._path.glob(f"*/{_EDGE_CONFIG}")}
        shards |= {p.parent.parent.name for p in self._path.glob(f"*/{_SHARD}/{_EDGE_CONFIG}")}
        return sorted(shards)

    def _shard_dir(self, name: str) -> Path:
        if not name or "/" in name or name in (".", ".."):
            raise CollectionNotFoundError(f"collection {name!r} does not exist")
        for folder in (self._path / name / _SHARD, self._path / name):
            if (folder / _EDGE_CONFIG).is_file():
                return folder
        raise CollectionNotFoundError(f"collection {name!r} does not exist")

    def vector_specs(self, name: str) -> list[VectorSpec]:
        """The named vectors of any collection under the folder."""
        config = json.loads((self._shard_dir(name) / _EDGE_CONFIG).read_text())
        specs = []
        for vector_name, params in (config.get("vectors") or {}).items():
            multi = params.get("multivector_config") is not None
            specs.append(
                VectorSpec(
                    vector_name, None if multi else int(params["size"]), "multivector" if multi else "dense"
                )
            )
        specs += [
            VectorSpec(vector_name, None, "sparse") for vector_name in config.get("sparse_vectors") or {}
        ]
        return specs

    def count_points(self, name: str) -> int:
        """Points of any collection under the folder (exact)."""
        with self._foreign_shard(name) as shard, _engine(name):
            return shard.count(qe.CountRequest(exact=True))

    def scroll_vectors(self, name: str, vector_name: str, batch: int = SCROLL_BATCH) -> Iterator[np.ndarray]:
        """The dense vector ``vector_name`` of every point that has it, ``batch`` points a page."""
        dim = next((s.dim for s in self.vector_specs(name) if s.name == vector_name and s.dim), None)
        if dim is None:
            raise InvalidQueryError(f"collection {name!r} has no dense vector {vector_name!r}")
        with self._foreign_shard(name) as shard:
            offset: int | str | UUID | None = None
            while True:
                request = qe.ScrollRequest(
                    offset=offset, limit=batch, with_vector=[vector_name], with_payload=False
                )
                with _engine(name):
                    records, offset = shard.scroll(request)
                rows = [_dense_row(record.vector, vector_name) for record in records]
                yield stacked([row for row in rows if row is not None], dim)
                if offset is None:
                    return

    @contextmanager
    def _foreign_shard(self, name: str) -> Iterator[qe.EdgeShard]:
        """The collection's shard: the one this store has open, or loaded for the call and closed."""
        folder = self._shard_dir(name)
        with self._lock:
            if self._closed:
                raise StoreUnavailableError("the edge store is closed")
            coll = self._open.get(name)
        if coll is not None:
            yield coll.shard
            return
        with _engine(name):
            shard = qe.EdgeShard.load(str(folder))
        try:
            yield shard
        finally:
            with _engine(name):
                shard.close()

    # -- lifecycle ---------------------------------------------------------------------------

    def optimize(self, name: str) -> None:
        """Merge segments and build the HNSW index now (blocks; run after a bulk ingest)."""
        coll = self._get(name)
        with coll.write_lock, _engine(name):
            coll.shard.optimize()
            coll.shard.flush()

    def flush(self) -> None:
        """Persist every open collection's pending changes."""
        with self._lock:
            for name, coll in self._open.items():
                with coll.write_lock, _engine(name):
                    coll.shard.flush()

    def close(self) -> None:
        """Flush and close every collection; later calls raise StoreUnavailableError."""
        with self._lock:
            for name, coll in self._open.items():
                with coll.write_lock, _engine(name):
                    coll.shard.flush()
                    coll.shard.close()
            self._open.clear()
            self._closed = True


def _dense_row(vector: object, vector_name: str) -> list[float] | None:
    """A record's dense vector ``vector_name``, None when the point lacks it."""
    row = vector.get(vector_name) if isinstance(vector, dict) else None
    return row if isinstance(row, list) and row and isinstance(row[0], float | int) else None
