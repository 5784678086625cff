"""Dense embeddings: the on-disk embedding store, corpus embedding, and embedding backends."""

from featurelens.embedding.backends import (
    BackendUnavailableError,
    EmbeddingBackend,
    EmbeddingBackendError,
    EmbedResult,
    load_backend,
)
from featurelens.embedding.ingest import EmbedCorpusResult, EmbedFn, embed_corpus
from featurelens.embedding.store import EmbeddingStore, EmbeddingStoreError, StoreManifest

__all__ = [
    "BackendUnavailableError",
    "EmbedCorpusResult",
    "EmbedFn",
    "EmbedResult",
    "EmbeddingBackend",
    "EmbeddingBackendError",
    "EmbeddingStore",
    "EmbeddingStoreError",
    "StoreManifest",
    "embed_corpus",
    "load_backend",
]
