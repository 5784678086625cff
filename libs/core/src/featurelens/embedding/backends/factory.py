"""Building a backend from its name."""

from __future__ import annotations

from typing import Any

from featurelens.embedding.backends.base import EmbeddingBackend

_ALIASES = {
    "sentence-transformers": "sentence-transformers",
    "sentence_transformers": "sentence-transformers",
    "minilm": "sentence-transformers",
    "wordllama": "wordllama",
    "openai": "openai",
}


def load_backend(spec: str, **options: Any) -> EmbeddingBackend:
    """Build the backend named by `spec`, passing `options` to its constructor.

    `spec` is "sentence-transformers" (alias "minilm"), "wordllama" or "openai"; see
    `load_sentence_transformer_backend` (whose ``engine`` option picks PyTorch or ONNX Runtime,
    ``auto`` by default), `WordLlamaBackend` and `OpenAIBackend` for their options.
    Raises `ValueError` for an unknown name.
    """
    kind = _ALIASES.get(spec.strip().lower())
    if kind == "sentence-transformers":
        from featurelens.embedding.backends.engine import load_sentence_transformer_backend

        return load_sentence_transformer_backend(**options)
    if kind == "wordllama":
        from featurelens.embedding.backends.wordllama_backend import WordLlamaBackend

        return WordLlamaBackend(**options)
    if kind == "openai":
        from featurelens.embedding.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(**options)
    raise ValueError(
        f"Unknown embedding backend {spec!r}; "
        "use 'sentence-transformers' (or 'minilm'), 'wordllama' or 'openai'."
    )
