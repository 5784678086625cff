"""The collection schema both adapters write, and the search service relies on.

One collection per corpus. Vectors: ``dense`` (cosine) and one sparse vector per SAE named
``sae_<key>``. Payload: the caller's fields (``title``, ``text``, ``categories``, ``date`` ...)
plus fields the store derives: ``doc_id``, ``date_int`` (yyyymmdd, for range filters),
``sample_key`` (a hash of the doc id, for seeded sampling) and ``features_<key>`` (the latents
of that SAE with a value > 0, for must / must-not-fire filters).

``<key>`` is the ``sae_id`` with every character outside ``[A-Za-z0-9-]`` written as ``_xx``
(hex of each UTF-8 byte): vector names may not contain ``:`` or ``/`` and payload keys are JSON
paths where ``.`` and ``[`` mean nesting, and the escape keeps the mapping reversible.

The store's name space holds three kinds of collection: corpora, named by their users (letters,
digits, ``-`` and ``_``); one collection of feature labels per SAE, named ``features.<key>``
(see ``featurelens.store.labels``); and one collection of feature families per SAE, named
``families.<key>`` (see ``featurelens.store.families``). No corpus name contains a ``.`` and the
two prefixes differ, so no two can collide, and ``list_collections`` lists corpora only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from featurelens.store.errors import InvalidQueryError
from featurelens.store.types import PointRecord, SparseVec

SCHEMA_VERSION = 1
DENSE_VECTOR = "dense"
SPARSE_PREFIX = "sae_"
FEATURES_PREFIX = "features_"

DOC_ID = "doc_id"
TITLE = "title"
TEXT = "text"
CATEGORIES = "categories"
DATE = "date"
DATE_INT = "date_int"
SAMPLE_KEY = "sample_key"

#: Names of the collections of feature labels: this prefix and the SAE's key. The '.' is what
#: keeps them apart from corpora, whose names never contain one.
LABELS_PREFIX = "features."

#: Names of the collections of feature families: this prefix and the SAE's key (kept apart from
#: corpora by the '.', and from labels by the prefix).
FAMILIES_PREFIX = "families."

# Collection metadata key marking a collection this store manages (server adapter).
MARKER_KEY = "featurelens_schema"

# Fixed forever: changing it would give every stored document a new point id.
DOC_NAMESPACE = uuid.UUID("5b0c3f0e-8d1e-5b7a-9c53-6c1d7a2f4e10")

# Sample keys stay below 2**52 so they order exactly even where an engine compares as float64.
SAMPLE_KEY_BITS = 52

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_KEY = re.compile(r"(?:[A-Za-z0-9-]|_[0-9a-f]{2})+")
_SAFE = re.compile(r"[A-Za-z0-9-]")
_MAX_KEY_LEN = 180  # vector names are limited to 200 bytes
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RESERVED = frozenset({DATE_INT, SAMPLE_KEY})


class IndexKind(StrEnum):
    """Payload index kinds both adapters create."""

    KEYWORD = "keyword"
    INTEGER_RANGE = "integer_range"
    """Integer index for range filters and ordering (no exact-match lookups)."""
    INTEGER_LOOKUP = "integer_lookup"
    """Integer index for exact matches only (lighter than a range index)."""


@dataclass(frozen=True)
class PayloadIndex:
    """One payload index of the schema."""

    field: str
    kind: IndexKind


BASE_INDEXES: tuple[PayloadIndex, ...] = (
    PayloadIndex(DOC_ID, IndexKind.KEYWORD),
    PayloadIndex(CATEGORIES, IndexKind.KEYWORD),
    PayloadIndex(DATE, IndexKind.KEYWORD),
    PayloadIndex(DATE_INT, IndexKind.INTEGER_RANGE),
    PayloadIndex(SAMPLE_KEY, IndexKind.INTEGER_RANGE),
)


def feature_index(sae_id: str) -> PayloadIndex:
    """The payload index of an SAE's firing latents."""
    return PayloadIndex(features_field(sae_id), IndexKind.INTEGER_LOOKUP)


def collection_indexes(name: str, sae_ids: Iterable[str]) -> tuple[PayloadIndex, ...]:
    """The payload indexes of a collection: a corpus's, or none for a labels or families collection.

    Labels and families are read by point id, in whole pages or by vector, never filtered, and
    each index costs a collection's creation about 0.1 s on the edge engine.
    """
    if is_labels_collection(name) or is_families_collection(name):
        return ()
    return (*BASE_INDEXES, *(feature_index(s) for s in sae_ids))


def check_collection_name(name: str) -> str:
    """Collection (corpus) names: letters, digits, '-' and '_', starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidQueryError(
            f"collection name {name!r} is invalid: use 1 to 128 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def is_corpus_name(name: object) -> bool:
    """Whether ``name`` is a valid corpus name (what ``check_collection_name`` accepts)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def labels_collection(sae_id: str) -> str:
    """The name of the collection holding an SAE's feature labels."""
    return LABELS_PREFIX + _key(sae_id)


def is_labels_collection(name: object) -> bool:
    """Whether ``name`` is the name of an SAE's labels collection."""
    return _is_keyed(name, LABELS_PREFIX)


def families_collection(sae_id: str) -> str:
    """The name of the collection holding an SAE's feature families."""
    return FAMILIES_PREFIX + _key(sae_id)


def is_families_collection(name: object) -> bool:
    """Whether ``name`` is the name of an SAE's families collection."""
    return _is_keyed(name, FAMILIES_PREFIX)


def _is_keyed(name: object, prefix: str) -> bool:
    if not isinstance(name, str) or not name.startswith(prefix):
        return False
    key = name[len(prefix) :]
    return len(key) <= _MAX_KEY_LEN and _KEY.fullmatch(key) is not None


def check_store_name(name: str) -> str:
    """Any collection name the store manages: a corpus name, or an SAE's labels or families collection."""
    if is_labels_collection(name) or is_families_collection(name):
        return name
    return check_collection_name(name)


def _key(sae_id: str) -> str:
    if not isinstance(sae_id, str) or not sae_id:
        raise InvalidQueryError(f"sae_id {sae_id!r} is invalid: it must be a non-empty string")
    parts = [c if _SAFE.fullmatch(c) else "".join(f"_{b:02x}" for b in c.encode()) for c in sae_id]
    key = "".join(parts)
    if len(key) > _MAX_KEY_LEN:
        raise InvalidQueryError(f"sae_id {sae_id[:40]!r}... is too long to name a vector")
    return key


def _unkey(key: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(key):
        if key[i] == "_":
            raw.append(int(key[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(key[i].encode())
            i += 1
    return raw.decode()


def sparse_vector_name(sae_id: str) -> str:
    """The engine's name of an SAE's sparse vector."""
    return SPARSE_PREFIX + _key(sae_id)


def sae_id_of(vector_name: str) -> str | None:
    """The sae_id behind a sparse vector name, or None for a name this schema did not make."""
    if not vector_name.startswith(SPARSE_PREFIX):
        return None
    try:
        return _unkey(vector_name[len(SPARSE_PREFIX) :])
    except (ValueError, UnicodeDecodeError):
        return None


def features_field(sae_id: str) -> str:
    """The payload field holding the latents of an SAE that fire on a document."""
    return FEATURES_PREFIX + _key(sae_id)


def point_id(doc_id: str) -> str:
    """The point id of a document: uuid5 of a fixed namespace and the doc id (idempotent upserts)."""
    if not isinstance(doc_id, str) or not doc_id:
        raise InvalidQueryError(f"doc id {doc_id!r} is invalid: it must be a non-empty string")
    return str(uuid.uuid5(DOC_NAMESPACE, doc_id))


def _hash52(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") >> (64 - SAMPLE_KEY_BITS)


def sample_key(doc_id: str) -> int:
    """A document's position in the fixed pseudo-random order that sampling walks."""
    return _hash52(b"doc:" + doc_id.encode())


def sample_start(seed: int) -> int:
    """Where in that order a seeded sample starts."""
    return _hash52(b"seed:" + str(int(seed)).encode())


def date_int(date: str) -> int:
    """``YYYY-MM-DD`` as the integer yyyymmdd; InvalidQueryError for anything else."""
    if not isinstance(date, str) or not _DATE.fullmatch(date):
        raise InvalidQueryError(f"date {date!r} is invalid: use YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise InvalidQueryError(f"date {date!r} is not a calendar day") from None
    return day.year * 10000 + day.month * 100 + day.day


def check_dense(vector: Any, dim: int, what: str) -> list[float]:
    """A finite, non-zero vector of the collection's dimension, as a list for the engine."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.shape[0] != dim:
        raise InvalidQueryError(
            f"{what} has shape {tuple(array.shape)}, but this collection's dense vectors have {dim} dims"
        )
    if not np.isfinite(array).all():
        raise InvalidQueryError(f"{what} contains NaN or infinite values")
    if not np.any(array):
        raise InvalidQueryError(f"{what} is all zeros, so its cosine similarity is undefined")
    return array.tolist()


def check_sparse(vector: SparseVec, what: str) -> tuple[list[int], list[float]]:
    """Sorted indices and values of the non-zero entries, after checking the vector is sane.

    Zero entries are dropped: they contribute nothing to a dot product, and engines disagree
    on whether a shared zero entry makes a document a match.
    """
    if not isinstance(vector, SparseVec):
        raise InvalidQueryError(f"{what} must be a SparseVec, got {type(vector).__name__}")
    if vector.indices.size and (vector.indices.min() < 0 or vector.indices.max() >= 2**32):
        raise InvalidQueryError(f"{what} has indices outside 0..2**32-1")
    if not np.isfinite(vector.values).all():
        raise InvalidQueryError(f"{what} contains NaN or infinite values")
    order = np.argsort(vector.indices, kind="stable")
    indices = vector.indices[order]
    if indices.size > 1 and np.any(indices[1:] == indices[:-1]):
        raise InvalidQueryError(f"{what} has repeated indices")
    values = vector.values[order]
    keep = values != 0
    return indices[keep].tolist(), values[keep].tolist()


def firing(vector: SparseVec) -> list[int]:
    """The latents that fire (value > 0), ascending."""
    return sorted(int(i) for i in vector.indices[vector.values > 0])


def check_payload_update(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A caller's payload with the derived fields recomputed; rejects writes to derived fields."""
    out = dict(payload)
    for key in out:
        if key in _RESERVED or key.startswith(FEATURES_PREFIX):
            raise InvalidQueryError(f"payload field {key!r} is derived by the store and cannot be set")
    if CATEGORIES in out:
        cats = out[CATEGORIES]
        if isinstance(cats, str) or not all(isinstance(c, str) for c in cats):
            raise InvalidQueryError("payload field 'categories' must be a list of strings")
        out[CATEGORIES] = list(cats)
    if out.get(DATE):
        out[DATE_INT] = date_int(out[DATE])
    return out


def build_payload(record: PointRecord, sae_ids: Iterable[str]) -> dict[str, Any]:
    """The full payload stored for a record (caller fields + derived fields)."""
    payload = check_payload_update(record.payload)
    if payload.get(DOC_ID, record.doc_id) != record.doc_id:
        raise InvalidQueryError(f"doc {record.doc_id!r} carries a different 'doc_id' in its payload")
    payload[DOC_ID] = record.doc_id
    payload[SAMPLE_KEY] = sample_key(record.doc_id)
    known = set(sae_ids)
    for sae_id, vector in record.sparse.items():
        if sae_id not in known:
            raise InvalidQueryError(
                f"doc {record.doc_id!r} has latents of SAE {sae_id!r}, which this collection has no "
                "sparse vector for: add it with ensure_collection first"
            )
        payload[features_field(sae_id)] = firing(vector)
    return payload
