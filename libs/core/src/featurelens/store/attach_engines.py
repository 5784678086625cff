"""The collections attach works on: one through qdrant-client, one on a qdrant-edge shard.

Both are ``featurelens.store.attach.ForeignCollection``; they wrap a client or shard the caller
opened and never create, drop or reconfigure anything but the SAE's own sparse vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import qdrant_edge as qe
from qdrant_client import QdrantClient, models

from featurelens.store import foreign_query, schema, server
from featurelens.store.attach import Batch, PointId, firing_ids, missing_collection, point_id, vector_writes
from featurelens.store.errors import InvalidQueryError, StoreError, translated
from featurelens.store.types import QueryRequest, ScoredPoint, SparseVec


def _dense_matrix(
    rows: list[list[float]], ids: Sequence[PointId], dense: str
) -> np.ndarray[Any, np.dtype[np.float32]]:
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    lengths = {len(row) for row in rows}
    if len(lengths) != 1:
        raise InvalidQueryError(f"vector {dense!r} is not dense (rows of lengths {sorted(lengths)})")
    return np.asarray(rows, dtype=np.float32).reshape(len(ids), -1)


def _pick(vector: Any, dense: str, pid: PointId) -> list[float]:
    value = vector.get(dense) if isinstance(vector, dict) else (vector if dense == "" else None)
    if not isinstance(value, list) or (value and not isinstance(value[0], int | float)):
        raise InvalidQueryError(f"point {pid!r} has no dense vector {dense!r}")
    return [float(x) for x in value]


class QdrantClientCollection:
    """A collection reached through qdrant-client (a server, or local mode on a folder)."""

    def __init__(self, client: QdrantClient, name: str) -> None:
        self.client = client
        self.name = name
        if not client.collection_exists(name):
            existing = [c.name for c in client.get_collections().collections]
            raise missing_collection(name, existing)

    def _engine(self) -> AbstractContextManager[None]:
        return translated(self.name, server._translate)

    def _params(self) -> models.CollectionParams:
        with self._engine():
            return self.client.get_collection(self.name).config.params

    def dense_vector_names(self) -> list[str]:
        vectors = self._params().vectors
        if isinstance(vectors, models.VectorParams):
            return [""]
        return sorted(vectors or {})

    def has_sparse_vector(self, sparse: str) -> bool:
        return sparse in (self._params().sparse_vectors or {})

    def dense_vector_sizes(self) -> dict[str, int]:
        """The size of each dense vector (``""`` for the unnamed default; multivectors left out)."""
        vectors = self._params().vectors
        named = {"": vectors} if isinstance(vectors, models.VectorParams) else dict(vectors or {})
        return {name: p.size for name, p in named.items() if p is not None and p.multivector_config is None}

    def attached_sae_ids(self) -> list[str]:
        """The SAEs attached to the collection: its sparse vectors whose names featurelens made
        (``schema.sae_id_of``), sorted; empty when none is."""
        names = (self._params().sparse_vectors or {}).keys()
        return sorted(sae_id for sae_id in map(schema.sae_id_of, names) if sae_id is not None)

    def query(
        self,
        request: QueryRequest,
        dense_vector: str,
        dense_dim: int,
        sae_ids: Sequence[str],
        qdrant_filter: models.Filter | None = None,
    ) -> list[ScoredPoint]:
        """Dense, sparse or hybrid search of the collection (see ``featurelens.store.foreign_query``)."""
        return foreign_query.query(
            self.client, self.name, request, dense_vector, dense_dim, sae_ids, qdrant_filter
        )

    def count(self, missing: str | None = None) -> int:
        flt = (
            None
            if missing is None
            else models.Filter(must_not=[models.HasVectorCondition(has_vector=missing)])
        )
        with self._engine():
            return self.client.count(self.name, count_filter=flt, exact=True).count

    def first_id(self) -> PointId | None:
        with self._engine():
            records, _ = self.client.scroll(self.name, limit=1, with_payload=False, with_vectors=False)
        return point_id(records[0].id) if records else None

    def scroll_missing(self, dense: str, sparse: str, offset: PointId | None, limit: int) -> Batch:
        flt = models.Filter(must_not=[models.HasVectorCondition(has_vector=sparse)])
        with_vectors: bool | list[str] = True if dense == "" else [dense]
        with self._engine():
            records, next_offset = self.client.scroll(
                self.name,
                scroll_filter=flt,
                limit=limit,
                offset=offset,
                with_payload=False,
                with_vectors=with_vectors,
            )
        ids = [point_id(r.id) for r in records]
        rows = [_pick(r.vector, dense, pid) for r, pid in zip(records, ids, strict=True)]
        nxt = None if next_offset is None else point_id(next_offset)
        return Batch(ids, _dense_matrix(rows, ids, dense), nxt)

    def create_sparse_vector(self, sparse: str) -> None:
        with self._engine():
            self.client.create_vector_name(
                self.name, sparse, models.SparseVectorNameConfig(sparse=models.SparseVectorConfig())
            )

    def delete_vector_name(self, sparse: str) -> None:
        if self.has_sparse_vector(sparse):
            with self._engine():
                self.client.delete_vector_name(self.name, sparse)

    def write(self, ids: Sequence[PointId], sparse: str, vectors: Sequence[SparseVec], key: str) -> None:
        with self._engine():
            for pid, vector in zip(ids, vectors, strict=True):
                self.client.set_payload(self.name, payload={key: firing_ids(vector)}, points=[pid], wait=True)
            points = [
                models.PointVectors(
                    id=pid, vector={sparse: models.SparseVector(indices=indices, values=values)}
                )
                for pid, indices, values in vector_writes(ids, vectors)
            ]
            if points:
                self.client.update_vectors(self.name, points=points, wait=True)

    def delete_payload_key(self, key: str) -> None:
        with self._engine():
            self.client.delete_payload(self.name, keys=[key], points=models.Filter(), wait=True)


def _edge_translate(error: Exception, name: str) -> StoreError:
    message = str(error)
    if "Not existing vector" in message or "Wrong input" in message:
        return InvalidQueryError(f"collection {name!r} rejected the request: {message}")
    return StoreError(f"the edge engine failed on collection {name!r}: {message}")


class EdgeShardCollection:
    """An edge shard the caller created with qdrant-edge (not through featurelens' edge store).

    The engine does not list a shard's vector names, so they are read from the points: the dense
    vectors a point carries, and a sparse vector is there when some point has it (creating a
    sparse vector that exists is a no-op on this engine, so the guess is safe).
    """

    def __init__(self, shard: qe.EdgeShard, name: str) -> None:
        self.shard = shard
        self.name = name

    def _engine(self) -> AbstractContextManager[None]:
        return translated(self.name, _edge_translate)

    def dense_vector_names(self) -> list[str]:
        with self._engine():
            records, _ = self.shard.scroll(qe.ScrollRequest(limit=1, with_payload=False, with_vector=True))
        if not records:
            return []
        vector = records[0].vector
        if isinstance(vector, dict):
            return sorted(k for k, v in vector.items() if isinstance(v, list))
        return [""]

    def has_sparse_vector(self, sparse: str) -> bool:
        return self.count() - self.count(missing=sparse) > 0

    def count(self, missing: str | None = None) -> int:
        flt = None if missing is None else qe.Filter(must_not=[qe.HasVectorCondition(missing)])
        with self._engine():
            return int(self.shard.count(qe.CountRequest(exact=True, filter=flt)))

    def first_id(self) -> PointId | None:
        with self._engine():
            records, _ = self.shard.scroll(qe.ScrollRequest(limit=1, with_payload=False, with_vector=False))
        return point_id(records[0].id) if records else None

    def scroll_missing(self, dense: str, sparse: str, offset: PointId | None, limit: int) -> Batch:
        request = qe.ScrollRequest(
            offset=offset,
            limit=limit,
            filter=qe.Filter(must_not=[qe.HasVectorCondition(sparse)]),
            with_payload=False,
            with_vector=[dense] if dense else True,
        )
        with self._engine():
            records, next_offset = self.shard.scroll(request)
        ids = [point_id(r.id) for r in records]
        rows = [_pick(r.vector, dense, pid) for r, pid in zip(records, ids, strict=True)]
        nxt = None if next_offset is None else point_id(next_offset)
        return Batch(ids, _dense_matrix(rows, ids, dense), nxt)

    def create_sparse_vector(self, sparse: str) -> None:
        with self._engine():
            self.shard.update(qe.UpdateOperation.create_sparse_vector(sparse))

    def delete_vector_name(self, sparse: str) -> None:
        with self._engine():
            try:
                self.shard.update(qe.UpdateOperation.delete_vector_name(sparse))
            except Exception as error:  # the engine raises plain Exceptions
                if "not" not in str(error).lower():
                    raise
            self.shard.flush()

    def write(self, ids: Sequence[PointId], sparse: str, vectors: Sequence[SparseVec], key: str) -> None:
        with self._engine():
            for pid, vector in zip(ids, vectors, strict=True):
                self.shard.update(qe.UpdateOperation.set_payload([pid], {key: firing_ids(vector)}))
            updates = [
                qe.PointVectors(pid, {sparse: qe.SparseVector(indices, values)})
                for pid, indices, values in vector_writes(ids, vectors)
            ]
            if updates:
                self.shard.update(qe.UpdateOperation.update_vectors(updates))

    def delete_payload_key(self, key: str) -> None:
        with self._engine():
            self.shard.update(qe.UpdateOperation.delete_payload_by_filter(qe.Filter(), [key]))
            self.shard.flush()
