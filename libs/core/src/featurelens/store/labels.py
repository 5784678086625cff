"""Durable feature labels: one collection per SAE, on whichever store adapter holds the corpora.

An SAE's labels live in the collection ``features.<key>`` (``schema.labels_collection``): one
point per labelled latent, its id derived from the feature number (the store's point id of the
decimal feature number), the label's embedding as the dense vector (cosine), and
``LabelRecord.to_payload()`` as the payload (next to the store's own ``doc_id`` and
``sample_key``, which ``LabelRecord.from_payload`` ignores). Points hold no sparse vectors.

``LabelStore`` is written over the ``DocumentStore`` port, so it runs on both adapters (edge and
server) with the same answers, as the congruence suite checks. The ``.`` in the collection name
keeps labels apart from corpora: no corpus name can contain one, and ``list_collections`` leaves
labels collections out, so ListCorpora never shows them.

Float fields come back from qdrant-edge within one ulp of what was put (about one in ten
17-digit floats is parsed back to a neighbour); the server adapter returns them exactly.

Sync, like the store: the labelling service calls it from worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from featurelens.interp.records import PAYLOAD_VERSION, LabelRecord
from featurelens.store import schema
from featurelens.store.errors import CollectionNotFoundError, InvalidQueryError
from featurelens.store.plan import MAX_TOP_K
from featurelens.store.port import DocumentStore
from featurelens.store.scan import scan
from featurelens.store.types import PayloadSelector, PointRecord, QueryRequest, SearchMode, StoredPoint

logger = logging.getLogger(__name__)

#: The ``kind`` in a labels collection's metadata (the name is what the store goes by).
KIND = "feature_labels"

# Points per scroll page and per upsert batch: a page of 25k labels takes 25 round trips to a
# server, and a batch of 384-dim embeddings stays far below gRPC's message limit.
_PAGE = 1024


class LabelStore:
    """Feature labels of each SAE, with their embeddings, in a ``DocumentStore``.

    Reads of an SAE that has no labels collection find nothing: ``get``, ``all_labels``,
    ``search`` and ``substring`` return empty lists, ``labelled_features`` an empty set and
    ``count`` 0. ``put`` needs the collection (``ensure`` makes it) and raises
    ``CollectionNotFoundError`` naming the SAE without one. Malformed input (a vector of the
    wrong dimension, NaN, a negative feature, a record of another SAE) is an
    ``InvalidQueryError`` saying which feature and what was wrong.
    """

    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    @property
    def store(self) -> DocumentStore:
        """The document store holding the labels."""
        return self._store

    # -- collections -------------------------------------------------------------------------

    def ensure(self, sae_id: str, dim: int) -> None:
        """Create the SAE's labels collection for ``dim``-dim label embeddings, if absent.

        InvalidQueryError if it exists with another dimension (labels embedded by another
        model): drop it first to relabel with a new embedding model.
        """
        name = schema.labels_collection(sae_id)
        stored = self._dim_or_none(sae_id)
        if stored is not None and stored != dim:
            raise InvalidQueryError(
                f"the labels of SAE {sae_id!r} hold {stored}-dim embeddings, not {dim}: drop them "
                "to store labels embedded by another model"
            )
        metadata = {"kind": KIND, "sae_id": sae_id, "payload_version": PAYLOAD_VERSION}
        self._store.ensure_collection(name, dim, metadata=metadata)

    def has(self, sae_id: str) -> bool:
        """Whether the SAE has a labels collection (it may be empty)."""
        return self._dim_or_none(sae_id) is not None

    def drop(self, sae_id: str) -> bool:
        """Delete the SAE's labels; False if it had none."""
        dropped = self._store.drop_collection(schema.labels_collection(sae_id))
        if dropped:
            logger.info("dropped the labels of SAE %r", sae_id)
        return dropped

    def count(self, sae_id: str) -> int:
        """How many features of the SAE have a label."""
        try:
            return self._store.count(schema.labels_collection(sae_id))
        except CollectionNotFoundError:
            return 0

    # -- writes ------------------------------------------------------------------------------

    def put(self, sae_id: str, items: Sequence[tuple[LabelRecord, npt.ArrayLike]]) -> int:
        """Store labels with their embeddings, replacing each feature's earlier label; returns how many.

        Every item is checked before any is written. A feature given twice: the last one wins.
        """
        dim = self._dim_or_none(sae_id)
        if dim is None:
            raise CollectionNotFoundError(
                f"SAE {sae_id!r} has no labels collection: call ensure({sae_id!r}, dim) first"
            )
        points = [_point(record, vector, sae_id, dim) for record, vector in items]
        name = schema.labels_collection(sae_id)
        for start in range(0, len(points), _PAGE):
            self._store.upsert(name, points[start : start + _PAGE])
        return len({point.doc_id for point in points})

    # -- reads -------------------------------------------------------------------------------

    def get(self, sae_id: str, features: Sequence[int]) -> list[LabelRecord]:
        """The labels of ``features`` in the order asked (each once); unlabelled features are skipped."""
        doc_ids = [_doc_id(feature) for feature in features]
        try:
            points = self._store.retrieve(schema.labels_collection(sae_id), doc_ids)
        except CollectionNotFoundError:
            return []
        return [LabelRecord.from_payload(point.payload) for point in points]

    def labelled_features(self, sae_id: str) -> set[int]:
        """The features of the SAE that have a label."""
        return {int(point.doc_id) for point in self._scan(sae_id, with_payload=False)}

    def all_labels(self, sae_id: str) -> list[LabelRecord]:
        """Every label of the SAE, by feature (paged through the store, so fine for tens of thousands)."""
        records = [LabelRecord.from_payload(point.payload) for point in self._scan(sae_id, True)]
        return sorted(records, key=lambda record: record.feature)

    def search(self, sae_id: str, vector: npt.ArrayLike, top_k: int = 10) -> list[tuple[LabelRecord, float]]:
        """The ``top_k`` labels whose embeddings are nearest ``vector`` by cosine, best first.

        Exact (a full scan): an SAE has at most tens of thousands of labels, so the scan costs
        milliseconds and a phrase always resolves to its true best match. An SAE without a
        labels collection has no matches (an empty list, not an error: ``has`` tells the two
        cases apart).
        """
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidQueryError(f"top_k must be from 1 to {MAX_TOP_K}, got {top_k}")
        dim = self._dim_or_none(sae_id)
        if dim is None:
            return []
        query = _vector(vector, dim, sae_id, "the query embedding")
        request = QueryRequest(SearchMode.DENSE, dense=query, top_k=top_k, exact=True)
        try:
            hits = self._store.query(schema.labels_collection(sae_id), request)
        except CollectionNotFoundError:  # dropped since the dimension was read
            return []
        return [(LabelRecord.from_payload(hit.payload), hit.score) for hit in hits]

    def substring(self, sae_id: str, text: str, limit: int = 10) -> list[LabelRecord]:
        """Up to ``limit`` labels containing ``text`` (ignoring case), by feature."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidQueryError("the text to find in labels is empty")
        if limit < 1:
            raise InvalidQueryError(f"limit must be at least 1, got {limit}")
        needle = text.casefold()
        # Only the labels travel for the scan; the full records are fetched for the matches alone.
        matching = sorted(
            int(point.doc_id)
            for point in self._scan(sae_id, ["label"])
            if needle in str(point.payload.get("label", "")).casefold()
        )
        return self.get(sae_id, matching[:limit])

    # -- helpers -----------------------------------------------------------------------------

    def _dim_or_none(self, sae_id: str) -> int | None:
        try:
            return self._store.collection_info(schema.labels_collection(sae_id)).dense_dim
        except CollectionNotFoundError:
            return None

    def _scan(self, sae_id: str, with_payload: PayloadSelector) -> Iterator[StoredPoint]:
        return scan(self._store, schema.labels_collection(sae_id), with_payload, _PAGE)


def _doc_id(feature: Any) -> str:
    # bool is an int, but True is no latent id.
    if isinstance(feature, bool) or not isinstance(feature, int | np.integer) or feature < 0:
        raise InvalidQueryError(f"feature {feature!r} is not a latent id (a non-negative integer)")
    return str(int(feature))


def _vector(vector: npt.ArrayLike, dim: int, sae_id: str, what: str) -> npt.NDArray[np.float32]:
    try:
        array = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidQueryError(f"{what} is not a vector of numbers") from None
    if array.ndim != 1 or array.shape[0] != dim:
        raise InvalidQueryError(
            f"{what} has shape {tuple(array.shape)}, but the labels of SAE {sae_id!r} hold "
            f"{dim}-dim embeddings"
        )
    if not np.isfinite(array).all():
        raise InvalidQueryError(f"{what} contains NaN or infinite values")
    if not np.any(array):
        raise InvalidQueryError(f"{what} is all zeros, so its cosine similarity is undefined")
    return array


def _point(record: LabelRecord, vector: npt.ArrayLike, sae_id: str, dim: int) -> PointRecord:
    if not isinstance(record, LabelRecord):
        raise InvalidQueryError(f"labels are stored as LabelRecord, got {type(record).__name__}")
    if record.sae_id != sae_id:
        raise InvalidQueryError(
            f"the label of feature {record.feature} belongs to SAE {record.sae_id!r}, not {sae_id!r}"
        )
    embedding = _vector(vector, dim, sae_id, f"the embedding of feature {record.feature}'s label")
    return PointRecord(_doc_id(record.feature), dense=embedding, payload=record.to_payload())
