"""Embedding backends: local sentence-transformers and WordLlama models, and OpenAI-compatible APIs.

A sentence-transformers model runs on PyTorch or on ONNX Runtime (``engine``: auto | torch | onnx |
onnx-int8; see ``engine``). Heavy dependencies (torch, sentence-transformers, onnxruntime, wordllama,
openai) load only when a backend is built.
"""

from featurelens.embedding.backends.api_key import resolve_api_key
from featurelens.embedding.backends.base import (
    BackendUnavailableError,
    EmbeddingBackend,
    EmbeddingBackendError,
    EmbedResult,
    check_texts,
    normalise_rows,
)
from featurelens.embedding.backends.batching import estimate_tokens, split_batches, truncate_to_tokens
from featurelens.embedding.backends.engine import ENGINES, check_engine, load_sentence_transformer_backend
from featurelens.embedding.backends.factory import load_backend
from featurelens.embedding.backends.openai_backend import KNOWN_DIMS, OpenAIBackend
from featurelens.embedding.backends.sentence_transformers_backend import SentenceTransformerBackend
from featurelens.embedding.backends.wordllama_backend import WordLlamaBackend

__all__ = [
    "ENGINES",
    "KNOWN_DIMS",
    "BackendUnavailableError",
    "EmbedResult",
    "EmbeddingBackend",
    "EmbeddingBackendError",
    "OpenAIBackend",
    "SentenceTransformerBackend",
    "WordLlamaBackend",
    "check_engine",
    "check_texts",
    "estimate_tokens",
    "load_backend",
    "load_sentence_transformer_backend",
    "normalise_rows",
    "resolve_api_key",
    "split_batches",
    "truncate_to_tokens",
]
