"""The storage port: what the search service needs from a vector store.

Two adapters implement it: ``EdgeDocumentStore`` (qdrant-edge, in process, the embedded
default) and ``QdrantServerDocumentStore`` (a Qdrant server through qdrant-client). One
congruence suite runs the same scenarios on both and requires the same answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from featurelens.store.types import (
    CollectionInfo,
    DocFilter,
    PayloadSelector,
    PointRecord,
    QueryRequest,
    ScoredPoint,
    ScrollPage,
    SparseSelector,
    SparseVec,
    StoredPoint,
)


@runtime_checkable
class DocumentStore(Protocol):
    """Documents with a dense vector, per-SAE sparse vectors and a payload, in named collections.

    Documents are addressed by their own ``doc_id``; the point id is derived from it, so
    upserting a document again replaces it (vectors and payload). Every method raises
    ``CollectionNotFoundError`` for an unknown collection, ``InvalidQueryError`` for a malformed
    request and ``StoreUnavailableError`` when the engine cannot be reached.
    """

    reads_hold_gil: bool
    """True when a read runs in this process and holds the GIL until it returns (qdrant-edge): a
    caller gains nothing by handing it to a worker thread. False when reads wait on a server."""

    def ensure_collection(
        self,
        name: str,
        dense_dim: int,
        sae_ids: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> CollectionInfo:
        """Create the collection if absent; add sparse vectors for new ``sae_ids``; merge ``metadata``.

        An existing collection with another ``dense_dim`` is an InvalidQueryError.
        """
        ...

    def collection_info(self, name: str) -> CollectionInfo:
        """Points, dense dimension, SAEs and metadata of a collection."""
        ...

    def list_collections(self) -> list[str]:
        """Names of the corpora this store manages, sorted.

        SAEs' labels collections (``features.<key>``, see ``featurelens.store.labels``) are not
        corpora and are left out; every other method accepts their names.
        """
        ...

    def drop_collection(self, name: str) -> bool:
        """Delete a collection and its data; False if there was none."""
        ...

    def upsert(self, name: str, points: Sequence[PointRecord]) -> None:
        """Insert or replace documents (whole points: vectors not given are removed)."""
        ...

    def update_vectors(self, name: str, vectors: Mapping[str, Mapping[str, SparseVec]]) -> int:
        """Set sparse vectors (``doc_id -> sae_id -> latents``) of stored documents, keeping the rest.

        Also refreshes the documents' ``features_<sae_id>`` fields. Unknown doc ids are skipped;
        returns how many documents were updated.
        """
        ...

    def set_payload(self, name: str, doc_ids: Sequence[str], payload: Mapping[str, Any]) -> int:
        """Merge ``payload`` into the payload of stored documents; returns how many were updated."""
        ...

    def query(self, name: str, request: QueryRequest) -> list[ScoredPoint]:
        """Dense, sparse or hybrid search; hits best first, ties broken by point id."""
        ...

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
        """One page of the matching documents in point-id order; pass ``next_offset`` back for more."""
        ...

    def retrieve(
        self,
        name: str,
        doc_ids: Sequence[str],
        with_payload: PayloadSelector = True,
        with_dense: bool = False,
        with_sparse: SparseSelector = False,
    ) -> list[StoredPoint]:
        """The stored documents among ``doc_ids``, in the order asked; unknown ids are skipped."""
        ...

    def delete(self, name: str, doc_ids: Sequence[str]) -> int:
        """Delete documents; returns how many existed."""
        ...

    def count(self, name: str, filter: DocFilter | None = None) -> int:
        """Exact number of matching documents."""
        ...

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
        """Up to ``n`` matching documents, the same for the same seed and the same documents.

        Documents sit in a fixed pseudo-random order (a hash of their doc id); the seed picks a
        starting place and the sample is the next ``n`` matching documents, wrapping around.
        Every document is equally likely to be picked; the cost is O(n), not O(corpus).
        """
        ...

    def optimize(self, name: str) -> None:
        """Build indexes now where the engine must be told (edge); a no-op where it indexes by itself."""
        ...

    def close(self) -> None:
        """Flush and release the engine."""
        ...
