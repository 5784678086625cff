"""What every embedding backend offers, and the errors they raise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


class EmbeddingBackendError(RuntimeError):
    """A backend failed to embed: a bad or unexpected response, a refused request, a broken model."""


class BackendUnavailableError(EmbeddingBackendError):
    """A remote backend could not be reached or kept failing after all retries; worth trying later."""


class EmbedResult(NamedTuple):
    """Embeddings of a batch of texts, rows in input order."""

    vectors: npt.NDArray[np.float32]
    """(len(texts), dim) float32, each row of unit L2 norm."""
    truncated: list[bool]
    """truncated[i] is True when text i was longer than the model's input limit and was cut."""


@runtime_checkable
class EmbeddingBackend(Protocol):
    """A text embedding model. Implementations are thread-safe for concurrent `embed` calls."""

    @property
    def model_id(self) -> str:
        """Stable id of the model (and its output dimension), used to key caches and stores."""
        ...

    @property
    def backend(self) -> str:
        """Backend kind: "sentence-transformers", "wordllama" or "openai"."""
        ...

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        ...

    @property
    def max_input_tokens(self) -> int:
        """Longest input the model reads, in tokens; 0 when the backend has no limit."""
        ...

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed non-empty texts; `ValueError` for an empty text, `EmbeddingBackendError` on failure."""
        ...


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list, once each is checked to be a non-empty string (`ValueError` names a bad one)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    checked = list(texts)
    for position, text in enumerate(checked):
        if not isinstance(text, str):
            raise ValueError(f"text {position} is a {type(text).__name__}, not a string")
        if not text:
            raise ValueError(f"text {position} is empty; every text to embed must be non-empty")
    return checked


def normalise_rows(vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Rows scaled to unit L2 norm as float32; an all-zero row stays zero instead of becoming NaN."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)
