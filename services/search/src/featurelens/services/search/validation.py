"""Checks of incoming requests that need no corpus: each failure is a sentence saying what to fix.

Checks that depend on a corpus (the vector's dimension, feature ids below the SAE's size,
whether the SAE is indexed) happen in ``querying`` once the corpus is known.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from qdrant_client import models

from featurelens.corpus import Record
from featurelens.kit import InvalidArgumentError
from featurelens.kit.echo import shown
from featurelens.kit.interventions import interventions_from_proto
from featurelens.kit.names import corpus_name
from featurelens.steering import RequestedIntervention
from featurelens.store import FusionMethod, InvalidQueryError, SearchMode, foreign_query
from featurelens.store import schema as store_schema
from featurelens.v1 import common_pb2, search_pb2
from featurelens.wire.arrays import ArrayFormatError, from_dense_vector

DEFAULT_TOP_K = 10
MAX_DOC_ID_CHARS = 512
#: Largest dense_weight / sparse_weight: only their ratio matters, and under this bound a fused
#: score (a weight times a normalised or reciprocal-rank score) can never overflow.
MAX_LEG_WEIGHT = 1000.0
#: Most payload keys a search of an attached collection returns, and the longest key (bytes).
MAX_PAYLOAD_FIELDS = 64
MAX_PAYLOAD_FIELD_BYTES = 256
#: Longest name of a Qdrant collection (bytes): a search may name an attached one.
MAX_COLLECTION_BYTES = 255

_MODES = {
    search_pb2.SEARCH_MODE_UNSPECIFIED: SearchMode.DENSE,
    search_pb2.SEARCH_MODE_DENSE: SearchMode.DENSE,
    search_pb2.SEARCH_MODE_SPARSE: SearchMode.SPARSE,
    search_pb2.SEARCH_MODE_HYBRID: SearchMode.HYBRID,
}
_FUSIONS = {
    search_pb2.FUSION_UNSPECIFIED: FusionMethod.RRF,
    search_pb2.FUSION_RRF: FusionMethod.RRF,
    search_pb2.FUSION_DBSF: FusionMethod.DBSF,
}


@dataclass(frozen=True)
class Limits:
    """Bounds on requests, from the settings (intervention limits are the same for every
    service: ``featurelens.steering``)."""

    max_top_k: int = 1000
    max_offset: int = 10_000


@dataclass(frozen=True, eq=False)
class SearchQuery:
    """A checked SearchRequest (corpus-independent checks done)."""

    corpus: str
    text: str | None
    vector: npt.NDArray[np.float32] | None
    mode: SearchMode
    sae_id: str
    fusion: FusionMethod
    dense_weight: float
    sparse_weight: float
    categories: tuple[str, ...]
    date_from: str | None
    date_to: str | None
    must_fire: tuple[int, ...]
    must_not_fire: tuple[int, ...]
    top_k: int
    offset: int
    explain: bool
    #: As the request named them; families are expanded (and everything checked) in ``querying``.
    interventions: tuple[RequestedIntervention, ...]
    with_rank_changes: bool
    with_text: bool
    #: Attached collections only: the caller's Qdrant filter, its payload keys to return, and the
    #: name of the dense vector to search ("" = the one of the SAE's size).
    qdrant_filter: models.Filter | None = None
    payload_fields: tuple[str, ...] = ()
    dense_vector: str = ""

    @property
    def needs_sae(self) -> bool:
        """Whether the request uses an SAE (a named one is always checked against the corpus)."""
        return (
            bool(self.sae_id)
            or self.mode is not SearchMode.DENSE
            or self.explain
            or bool(self.must_fire or self.must_not_fire)
            or bool(self.interventions)
        )


def count(value: int, what: str, maximum: int) -> int:
    """A result count: 0 means the default (10), else 1 to ``maximum``."""
    if value == 0:
        return min(DEFAULT_TOP_K, maximum)
    if value > maximum:
        raise InvalidArgumentError(f"{what} is {value}; the limit is {maximum}")
    return value


def date(value: str, what: str) -> str | None:
    """A YYYY-MM-DD day, None when empty."""
    if not value:
        return None
    try:
        store_schema.date_int(value)
    except InvalidQueryError:
        raise InvalidArgumentError(
            f"{what} {shown(value, 40)} is not a calendar day written YYYY-MM-DD"
        ) from None
    return value


def _query_vector(message: common_pb2.DenseVector) -> npt.NDArray[np.float32]:
    try:
        vector = from_dense_vector(message)
    except ArrayFormatError as error:
        raise InvalidArgumentError(f"the query vector is malformed: {error}") from None
    if not np.any(vector):
        raise InvalidArgumentError("the query vector is all zeros, so it has no direction to search in")
    return np.array(vector, dtype=np.float32)


def near_vector(request: search_pb2.SampleDocumentsRequest) -> npt.NDArray[np.float32] | None:
    """The ``near`` vector of a SampleDocuments request (None when unset), checked as far as it can
    be without the corpus (its dimension is checked against the corpus in ``documents``)."""
    if not request.HasField("near"):
        return None
    if request.firing:
        raise InvalidArgumentError(
            "near asks for the non-firing documents nearest a vector (hard negatives), so it needs "
            "firing=false; sample firing documents without near"
        )
    try:
        vector = from_dense_vector(request.near)
    except ArrayFormatError as error:
        raise InvalidArgumentError(f"near is malformed: {error}") from None
    if not np.any(vector):
        raise InvalidArgumentError("near is all zeros, so no document is nearer to it than another")
    return np.array(vector, dtype=np.float32)


def _weight(value: float, what: str) -> float:
    if not math.isfinite(value) or not 0 <= value <= MAX_LEG_WEIGHT:
        raise InvalidArgumentError(
            f"{what} must be a finite number from 0 to {MAX_LEG_WEIGHT:,.0f} (only the ratio of the two "
            f"weights matters), got {value:g}"
        )
    return value or 1.0


def _search_target(name: str) -> str:
    """A corpus name, or else a name a Qdrant collection may have (one an SAE is attached to)."""
    try:
        return corpus_name(name)
    except InvalidArgumentError:
        if not name or len(name.encode()) > MAX_COLLECTION_BYTES or "/" in name or not name.isprintable():
            raise
    return name


def qdrant_filter(text: str) -> models.Filter | None:
    """The caller's Qdrant filter (JSON, at most 64 KiB), None when empty."""
    if not text:
        return None
    try:
        return foreign_query.parse_filter(text)
    except InvalidQueryError as error:
        raise InvalidArgumentError(str(error)) from None


def payload_fields(fields: Sequence[str]) -> tuple[str, ...]:
    """Payload keys to return: at most 64, each 1 to 256 bytes (repeats dropped)."""
    if len(fields) > MAX_PAYLOAD_FIELDS:
        raise InvalidArgumentError(
            f"payload_fields names {len(fields)} keys; the limit is {MAX_PAYLOAD_FIELDS}"
        )
    for field in fields:
        if not field or len(field.encode()) > MAX_PAYLOAD_FIELD_BYTES:
            raise InvalidArgumentError(
                f"payload_fields holds {shown(field)}; each key must be 1 to {MAX_PAYLOAD_FIELD_BYTES} bytes"
            )
    return tuple(dict.fromkeys(fields))


def search_query(request: search_pb2.SearchRequest, limits: Limits) -> SearchQuery:
    """A checked query, or InvalidArgumentError naming what is wrong."""
    corpus = _search_target(request.corpus)
    kind = request.WhichOneof("query")
    text = vector = None
    if kind is None:
        raise InvalidArgumentError("the query is empty: set text or vector")
    if kind == "text":
        if not request.text.strip():
            raise InvalidArgumentError("the query text is empty (or only whitespace)")
        text = request.text
    else:
        vector = _query_vector(request.vector)
    mode = _MODES.get(request.mode)
    if mode is None:
        raise InvalidArgumentError(
            f"mode {request.mode} is not a search mode; use SEARCH_MODE_DENSE, SEARCH_MODE_SPARSE or "
            "SEARCH_MODE_HYBRID"
        )
    fusion = _FUSIONS.get(request.fusion)
    if fusion is None:
        raise InvalidArgumentError(
            f"fusion {request.fusion} is not a fusion method; use FUSION_RRF or FUSION_DBSF"
        )
    top_k = count(request.top_k, "top_k", limits.max_top_k)
    if request.offset > limits.max_offset:
        raise InvalidArgumentError(f"offset is {request.offset}; pages go no deeper than {limits.max_offset}")
    flt = request.filter
    date_from = date(flt.date_from, "filter.date_from")
    date_to = date(flt.date_to, "filter.date_to")
    if date_from and date_to and date_from > date_to:
        raise InvalidArgumentError(f"filter.date_from {date_from} is after filter.date_to {date_to}")
    if any(not category for category in flt.categories):
        raise InvalidArgumentError("filter.categories holds an empty category")
    both = sorted(set(flt.features_must_fire) & set(flt.features_must_not_fire))
    if both:
        raise InvalidArgumentError(
            f"feature {both[0]} is in both features_must_fire and features_must_not_fire, so nothing matches"
        )
    return SearchQuery(
        corpus=corpus,
        text=text,
        vector=vector,
        mode=mode,
        sae_id=request.sae_id,
        fusion=fusion,
        dense_weight=_weight(request.dense_weight, "dense_weight"),
        sparse_weight=_weight(request.sparse_weight, "sparse_weight"),
        categories=tuple(dict.fromkeys(flt.categories)),
        date_from=date_from,
        date_to=date_to,
        must_fire=tuple(dict.fromkeys(flt.features_must_fire)),
        must_not_fire=tuple(dict.fromkeys(flt.features_must_not_fire)),
        top_k=top_k,
        offset=request.offset,
        explain=request.explain,
        interventions=tuple(interventions_from_proto(request.interventions)),
        with_rank_changes=request.with_rank_changes,
        with_text=request.with_text,
        qdrant_filter=qdrant_filter(request.qdrant_filter),
        payload_fields=payload_fields(request.payload_fields),
        dense_vector=_dense_vector_name(request.dense_vector),
    )


def _dense_vector_name(name: str) -> str:
    if len(name.encode()) > MAX_COLLECTION_BYTES:
        raise InvalidArgumentError(f"dense_vector {shown(name)} is no vector name (longer than 255 bytes)")
    return name


def document_problem(record: Record) -> str | None:
    """Why a document cannot be indexed, or None when it can."""
    if not record.id or record.id != record.id.strip():
        return "its id is empty or has surrounding whitespace"
    if len(record.id) > MAX_DOC_ID_CHARS:
        return f"its id is longer than {MAX_DOC_ID_CHARS} characters"
    if not record.text.strip():
        return "its text is empty"
    if any(not category for category in record.categories):
        return "it has an empty category"
    if record.date:
        try:
            store_schema.date_int(record.date)
        except InvalidQueryError:
            # No value in the reason: documents with the same problem are reported together.
            return "its date is not a calendar day written YYYY-MM-DD"
    return None
