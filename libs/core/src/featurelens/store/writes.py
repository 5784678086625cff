"""Engine-neutral write plans: a batch checked and laid out once, before any engine sees it.

Both adapters turn documents and vector updates into these plans (point ids, checked vectors
by engine vector name, the full payload with its derived fields) and only then convert them to
their engine's types. So a bad document fails the same way on every engine, with the same
sentence, and nothing of its batch is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featurelens.store import schema
from featurelens.store.errors import InvalidQueryError
from featurelens.store.plan import CollectionSchema
from featurelens.store.types import PointRecord, SparseVec

SparseLists = tuple[list[int], list[float]]
"""A checked sparse vector as the engines take it: ascending indices and their non-zero values."""


@dataclass(frozen=True)
class PointWrite:
    """One whole point to upsert: vectors not listed here are removed from a stored point."""

    point_id: str
    dense: list[float] | None
    sparse: dict[str, SparseLists]
    """Engine vector name -> checked latents."""
    payload: dict[str, Any]
    """The caller's fields and the derived ones (doc_id, date_int, sample_key, features_*)."""


@dataclass(frozen=True)
class VectorUpdate:
    """New sparse vectors of one stored point and the ``features_*`` fields that follow from them."""

    point_id: str
    sparse: dict[str, SparseLists]
    """Engine vector name -> checked latents; the point's other vectors stay."""
    fields: dict[str, Any]
    """Payload fields to merge into the point's payload."""


def point_writes(records: Iterable[PointRecord], collection: CollectionSchema) -> list[PointWrite]:
    """The points to upsert for ``records``; a doc id given twice: the last one wins."""
    latest = {record.doc_id: record for record in records}
    writes = []
    for record in latest.values():
        dense = None
        if record.dense is not None:
            what = f"the dense vector of doc {record.doc_id!r}"
            dense = schema.check_dense(record.dense, collection.dense_dim, what)
        payload = schema.build_payload(record, collection.sae_ids)
        sparse = {
            schema.sparse_vector_name(sae_id): schema.check_sparse(
                vector, f"the {sae_id!r} latents of doc {record.doc_id!r}"
            )
            for sae_id, vector in record.sparse.items()
        }
        writes.append(PointWrite(schema.point_id(record.doc_id), dense, sparse, payload))
    return writes


def vector_updates(
    vectors: Mapping[str, Mapping[str, SparseVec]], collection: CollectionSchema, name: str
) -> dict[str, VectorUpdate]:
    """The updates for ``doc_id -> sae_id -> latents``, by point id; docs with no latents are left out."""
    updates: dict[str, VectorUpdate] = {}
    for doc_id, per_sae in vectors.items():
        sparse: dict[str, SparseLists] = {}
        fields: dict[str, Any] = {}
        for sae_id, vector in per_sae.items():
            collection.require_sae(sae_id, name)
            what = f"the {sae_id!r} latents of doc {doc_id!r}"
            sparse[schema.sparse_vector_name(sae_id)] = schema.check_sparse(vector, what)
            fields[schema.features_field(sae_id)] = schema.firing(vector)
        if sparse:
            point_id = schema.point_id(doc_id)
            updates[point_id] = VectorUpdate(point_id, sparse, fields)
    return updates


def payload_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a ``set_payload`` call merges, derived ones recomputed; a doc id cannot change."""
    if schema.DOC_ID in payload:
        raise InvalidQueryError("a document's 'doc_id' cannot be changed; upsert it under the new id")
    return schema.check_payload_update(payload)


def clears_date(fields: Mapping[str, Any]) -> bool:
    """Whether merging ``fields`` empties the date, so the stale ``date_int`` must be deleted too."""
    return schema.DATE in fields and not fields[schema.DATE]


def point_ids(doc_ids: Sequence[str]) -> list[str]:
    """The point ids of ``doc_ids``, each once, in the order first given."""
    return [schema.point_id(doc_id) for doc_id in dict.fromkeys(doc_ids)]
