"""Protobuf messages of the encoder API from the servicer's numpy results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from featurelens.embedding.backends import EmbeddingBackend
from featurelens.v1 import encoder_pb2
from featurelens.wire.arrays import to_dense_matrix


def embed_response(
    model_id: str, vectors: np.ndarray, truncated: Sequence[bool], cached_count: int
) -> encoder_pb2.EmbedResponse:
    """An EmbedResponse carrying a (count, dim) float32 matrix."""
    return encoder_pb2.EmbedResponse(
        embeddings=to_dense_matrix(vectors), model_id=model_id, truncated=truncated, cached_count=cached_count
    )


def embed_stream_response(
    batch_id: int, model_id: str, vectors: np.ndarray, truncated: Sequence[bool], cached_count: int
) -> encoder_pb2.EmbedStreamResponse:
    """The answer to one batch of an EmbedStream."""
    return encoder_pb2.EmbedStreamResponse(
        batch_id=batch_id,
        embeddings=to_dense_matrix(vectors),
        model_id=model_id,
        truncated=truncated,
        cached_count=cached_count,
    )


def model_info(backend: EmbeddingBackend, dim: int, *, is_default: bool) -> encoder_pb2.ModelInfo:
    """The ModelInfo of a loaded backend (``dim`` 0 while a remote model's size is still unknown)."""
    return encoder_pb2.ModelInfo(
        id=backend.model_id,
        backend=backend.backend,
        dim=dim,
        max_input_tokens=backend.max_input_tokens or 0,
        is_default=is_default,
    )
