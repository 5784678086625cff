"""Attach an SAE to a Qdrant collection that featurelens did not create, and detach it again.

Attaching adds two things to every point, and touches nothing else:

- the SAE's sparse vector, named ``schema.sparse_vector_name(sae_id)`` (the rule featurelens'
  own corpora use), written with ``update_vectors`` so the point's other vectors stay;
- the ids of the latents that fire, in the payload key ``schema.features_field(sae_id)``, written
  with ``set_payload`` (a merge: the point's other payload keys stay).

Qdrant cannot add a named vector through ``update_collection`` (its ``sparse_vectors_config``
only tunes vectors that exist); it has a dedicated call since 1.18, ``create_vector_name``
(``PUT /collections/{name}/vectors/{vector}``; qdrant-client ``create_vector_name``, qdrant-edge
``UpdateOperation.create_sparse_vector``), and ``delete_vector_name`` to remove one. Attach uses
those, so the caller's collection is never copied.

Resume: the checkpoint is the sparse vector itself. Each batch writes the payload key first and
the sparse vector second, and attach scrolls only the points that lack the vector
(``must_not has_vector``). A crash between the two writes leaves a point with the key and no
vector, which the next run writes again (both writes replace, never append), so a rerun after a
crash finishes the job and every point ends with the vector exactly once.

Detach deletes the named sparse vector (the whole vector name, so the collection config is as
before) and the payload key from every point. A collection attached and then detached holds the
same points, vectors and payload as before attaching.

The point ids are the caller's (integers or UUIDs); attach reads them from the points and hands
them back unchanged. The dense vector is named by the caller; ``""`` means the unnamed default.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from featurelens.store import schema
from featurelens.store.errors import CollectionNotFoundError, InvalidQueryError
from featurelens.store.types import SparseVec

logger = logging.getLogger(__name__)

#: The unnamed default vector of a Qdrant collection.
DEFAULT_VECTOR = ""
#: Points per scroll / encode / write batch, by default and at most.
DEFAULT_BATCH = 256
MAX_BATCH = 4096

PointId = int | str
Encoder = Callable[[npt.NDArray[np.float32]], Sequence[SparseVec]]


@dataclass(frozen=True)
class Batch:
    """Points of one scroll page that lack the SAE's vector, with their dense vectors."""

    ids: list[PointId]
    dense: npt.NDArray[np.float32]
    next_offset: PointId | None


class ForeignCollection(Protocol):
    """What attach needs from a collection it did not create (one per engine)."""

    name: str

    def dense_vector_names(self) -> list[str]:
        """Names of the collection's dense vectors (``""`` for the unnamed default)."""
        ...

    def has_sparse_vector(self, sparse: str) -> bool:
        """Whether the collection has this named sparse vector."""
        ...

    def count(self, missing: str | None = None) -> int:
        """Points in the collection; with ``missing``, only those lacking that vector."""
        ...

    def first_id(self) -> PointId | None:
        """The id of one point (for the dry-run's id type), None when the collection is empty."""
        ...

    def scroll_missing(self, dense: str, sparse: str, offset: PointId | None, limit: int) -> Batch:
        """One page of points lacking ``sparse``, in id order, with their ``dense`` vectors."""
        ...

    def create_sparse_vector(self, sparse: str) -> None:
        """Add a named sparse vector (dot product) to the collection."""
        ...

    def delete_vector_name(self, sparse: str) -> None:
        """Remove a named vector, with its data, from every point and the collection (none: no-op)."""
        ...

    def write(self, ids: Sequence[PointId], sparse: str, vectors: Sequence[SparseVec], key: str) -> None:
        """Set the payload key to each point's firing latents, then the sparse vector (in this order)."""
        ...

    def delete_payload_key(self, key: str) -> None:
        """Remove a payload key from every point."""
        ...


@dataclass(frozen=True)
class AttachPlan:
    """What attaching an SAE would change (and what a dry-run reports)."""

    collection: str
    sae_id: str
    dense_vector: str
    sparse_vector: str
    payload_key: str
    id_type: str
    points: int
    points_to_write: int
    add_sparse_config: bool


@dataclass(frozen=True)
class AttachProgress:
    """Progress of an attach: points written so far (this run) of ``total`` to write."""

    done: int
    total: int


def check_batch_size(batch_size: int) -> int:
    """0 means the default; 1 to MAX_BATCH otherwise."""
    if batch_size == 0:
        return DEFAULT_BATCH
    if not 1 <= batch_size <= MAX_BATCH:
        raise InvalidQueryError(f"batch_size is {batch_size}; use 1 to {MAX_BATCH} (0 means {DEFAULT_BATCH})")
    return batch_size


def _id_type(point: PointId | None) -> str:
    if point is None:
        return "none (empty collection)"
    return "integer" if isinstance(point, int) else "uuid"


def plan(collection: ForeignCollection, sae_id: str, dense_vector: str) -> AttachPlan:
    """Check the request against the collection and say what attaching would change."""
    dense_names = collection.dense_vector_names()
    if dense_vector not in dense_names:
        shown = ", ".join(repr(n) for n in dense_names) or "none"
        raise InvalidQueryError(
            f"collection {collection.name!r} has no dense vector {dense_vector!r}; it has {shown} "
            "('' is the unnamed default vector)"
        )
    sparse = schema.sparse_vector_name(sae_id)
    exists = collection.has_sparse_vector(sparse)
    points = collection.count()
    return AttachPlan(
        collection=collection.name,
        sae_id=sae_id,
        dense_vector=dense_vector,
        sparse_vector=sparse,
        payload_key=schema.features_field(sae_id),
        id_type=_id_type(collection.first_id()),
        points=points,
        points_to_write=collection.count(missing=sparse) if exists else points,
        add_sparse_config=not exists,
    )


def prepare(collection: ForeignCollection, sae_id: str, dense_vector: str) -> AttachPlan:
    """The plan, after adding the SAE's sparse vector to the collection's config when it lacks it."""
    attach_plan = plan(collection, sae_id, dense_vector)
    if attach_plan.add_sparse_config:
        collection.create_sparse_vector(attach_plan.sparse_vector)
        logger.info("collection %r: added sparse vector %r", collection.name, attach_plan.sparse_vector)
    return attach_plan


def write_batch(
    collection: ForeignCollection, attach_plan: AttachPlan, batch: Batch, vectors: Sequence[SparseVec]
) -> None:
    """Write one scrolled batch's latents (payload key first, then the vector: see the module docstring)."""
    if len(vectors) != len(batch.ids):
        raise InvalidQueryError(f"the encoder returned {len(vectors)} vectors for {len(batch.ids)} points")
    collection.write(batch.ids, attach_plan.sparse_vector, vectors, attach_plan.payload_key)


def attach(
    collection: ForeignCollection,
    sae_id: str,
    dense_vector: str,
    encode: Encoder,
    batch_size: int = DEFAULT_BATCH,
) -> Iterator[AttachProgress]:
    """Add the SAE's sparse vector and firing-latent payload key to every point lacking them.

    Yields progress before the first batch and after each one. Idempotent and resumable: points
    that already carry the vector are skipped (see the module docstring).
    """
    limit = check_batch_size(batch_size)
    attach_plan = prepare(collection, sae_id, dense_vector)
    total = attach_plan.points_to_write
    done = 0
    offset: PointId | None = None
    yield AttachProgress(done, total)
    while True:
        batch = collection.scroll_missing(dense_vector, attach_plan.sparse_vector, offset, limit)
        if batch.ids:
            write_batch(collection, attach_plan, batch, list(encode(batch.dense)))
            done += len(batch.ids)
            yield AttachProgress(done, max(total, done))
        if batch.next_offset is None:
            break
        offset = batch.next_offset
    logger.info("collection %r: attached SAE %r to %d points", collection.name, sae_id, done)


def detach(collection: ForeignCollection, sae_id: str) -> bool:
    """Remove the SAE's sparse vector and payload key; False when it was not attached."""
    sparse = schema.sparse_vector_name(sae_id)
    key = schema.features_field(sae_id)
    attached = collection.has_sparse_vector(sparse)
    collection.delete_payload_key(key)
    collection.delete_vector_name(sparse)
    logger.info("collection %r: detached SAE %r (was attached: %s)", collection.name, sae_id, attached)
    return attached


def firing_ids(vector: SparseVec) -> list[int]:
    """The payload value: latents with a value > 0, ascending (the rule featurelens' corpora use)."""
    return schema.firing(vector)


def vector_writes(
    ids: Sequence[PointId], vectors: Sequence[SparseVec]
) -> list[tuple[PointId, list[int], list[float]]]:
    """The sparse vectors to write: checked, sorted, zero entries dropped, and no empty ones.

    An empty sparse vector is no vector to Qdrant (``has_vector`` is false and local mode keeps a
    stray empty entry after ``delete_vector_name``), so a point on which nothing fires gets only
    the payload key (``[]``), and a rerun encodes it again (same result, nothing changes).
    """
    writes = []
    for pid, vector in zip(ids, vectors, strict=True):
        indices, values = schema.check_sparse(vector, f"latents of point {pid!r}")
        if indices:
            writes.append((pid, indices, values))
    return writes


def point_id(value: Any) -> PointId:
    """A point id as the engine gave it, normalised to int or str."""
    if isinstance(value, int):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def missing_collection(name: str, existing: Sequence[str]) -> CollectionNotFoundError:
    """The error for an unknown collection, naming the ones that exist."""
    shown = ", ".join(repr(n) for n in sorted(existing)) or "none"
    return CollectionNotFoundError(f"collection {name!r} does not exist; the store holds {shown}")
