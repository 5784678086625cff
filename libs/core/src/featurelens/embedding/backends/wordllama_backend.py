"""WordLlama: a fast static (token-embedding average) model, shipped with the wordllama package."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featurelens.embedding.backends.base import EmbedResult, check_texts, normalise_rows

if TYPE_CHECKING:
    from wordllama.inference import WordLlamaInference

logger = logging.getLogger(__name__)

_FULL_DIM = 256


class WordLlamaBackend:
    """Embeds with WordLlama's `l2_supercat` weights, loaded from the installed package (no network).

    `dim` may be 256 or a smaller Matryoshka prefix (64, 128, ...). WordLlama reads whole texts, so no
    text is ever truncated and `max_input_tokens` is 0. Note: importing wordllama calls
    `logging.basicConfig(level=INFO)`, which adds a root handler unless logging is configured first.
    """

    backend = "wordllama"

    def __init__(self, dim: int = _FULL_DIM, *, config: str = "l2_supercat", batch_size: int = 64) -> None:
        if not 0 < dim <= _FULL_DIM:
            raise ValueError(f"WordLlama dim must be between 1 and {_FULL_DIM}, got {dim}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self._model = load_wordllama(config=config, dim=dim)
        self._batch_size = batch_size
        self.model_id: str = f"wordllama-{config.replace('_', '-')}-{dim}"
        self.dim: int = dim
        self.max_input_tokens: int = 0
        logger.info("Loaded WordLlama model %s.", self.model_id)

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed texts into unit-norm rows; nothing is ever truncated."""
        batch = check_texts(texts)
        if not batch:
            return EmbedResult(np.empty((0, self.dim), dtype=np.float32), [])
        vectors = self._model.embed(batch, norm=False, return_np=True, batch_size=self._batch_size)
        return EmbedResult(normalise_rows(vectors), [False] * len(batch))


def load_wordllama(*, config: str, dim: int) -> WordLlamaInference:
    """Load WordLlama weights from the wordllama package folder; a plain `load()` would try the network."""
    import wordllama
    from wordllama import WordLlama

    package_folder = Path(wordllama.__file__).resolve().parent
    return WordLlama.load(
        config=config,
        dim=_FULL_DIM,
        trunc_dim=dim if dim < _FULL_DIM else None,
        cache_dir=package_folder,
        disable_download=True,
    )
