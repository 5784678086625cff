"""The storage port (``DocumentStore``) and its two adapters.

``EdgeDocumentStore`` runs Qdrant's engine in process (qdrant-edge, persisted to a folder);
``QdrantServerDocumentStore`` talks to a Qdrant server through qdrant-client. Both keep the
same schema (see ``featurelens.store.schema``) and give the same answers to the same calls.
``LabelStore`` keeps each SAE's feature labels in the same store (``featurelens.store.labels``),
``FamilyStore`` each SAE's feature families (``featurelens.store.families``).
"""

from typing import TYPE_CHECKING

from featurelens.store.edge import EdgeDocumentStore
from featurelens.store.errors import (
    CollectionNotFoundError,
    InvalidQueryError,
    StoreError,
    StoreUnavailableError,
)
from featurelens.store.fusion import FusedHit, LegHit, fuse
from featurelens.store.port import DocumentStore
from featurelens.store.schema import features_field, point_id, sparse_vector_name
from featurelens.store.types import (
    CollectionInfo,
    DocFilter,
    FeatureRef,
    FusionMethod,
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

if TYPE_CHECKING:
    from featurelens.store.families import FamilyRecord, FamilyStore
    from featurelens.store.labels import LabelStore
    from featurelens.store.server import QdrantServerDocumentStore


def __getattr__(name: str) -> object:
    # qdrant-client takes about a second to import; the embedded default (edge) never needs it.
    if name == "QdrantServerDocumentStore":
        from featurelens.store.server import QdrantServerDocumentStore

        return QdrantServerDocumentStore
    # Imported on first use so the store never imports featurelens.interp while it loads.
    if name == "LabelStore":
        from featurelens.store.labels import LabelStore

        return LabelStore
    if name in ("FamilyStore", "FamilyRecord"):
        from featurelens.store import families

        return getattr(families, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CollectionInfo",
    "CollectionNotFoundError",
    "DocFilter",
    "DocumentStore",
    "EdgeDocumentStore",
    "FamilyRecord",
    "FamilyStore",
    "FeatureRef",
    "FusedHit",
    "FusionMethod",
    "InvalidQueryError",
    "LabelStore",
    "LegHit",
    "PayloadSelector",
    "PointRecord",
    "QdrantServerDocumentStore",
    "QueryRequest",
    "ScoredPoint",
    "ScrollPage",
    "SearchMode",
    "SparseSelector",
    "SparseVec",
    "StoreError",
    "StoreUnavailableError",
    "StoredPoint",
    "features_field",
    "fuse",
    "point_id",
    "sparse_vector_name",
]
