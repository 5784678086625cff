"""Helpers of the encoder tests: test backends around the real wordllama model, a loopback server.

The test backends wrap a real model (no mocks): one counts the calls that reach the model, one
reports long texts as truncated, one fails like a broken model, one waits before it loads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpc import aio

from featurelens.corpus import read_corpus
from featurelens.embedding.backends import EmbeddingBackend, EmbedResult
from featurelens.kit import GrpcServer
from featurelens.services.encoder.cache import EmbeddingCache, MemoryEmbeddingCache
from featurelens.services.encoder.servicer import BackendLoader, EncoderServicer
from featurelens.v1 import common_pb2, encoder_pb2_grpc
from featurelens.wire.arrays import from_dense_matrix

REDIS_URL = "redis://127.0.0.1:6379/0"
SERVICE = "featurelens.v1.EncoderService"
DATA_DIR = Path(
    os.environ.get("FEATURELENS_DATA_DIR", Path(__file__).resolve().parents[4] / "shared" / "data")
)
# Small limits so the validation cases stay cheap.
MAX_TEXTS = 8
MAX_TEXT_BYTES = 1000


class CountingBackend:
    """Counts the calls and texts that reach the wrapped model; may serve it under another id."""

    def __init__(self, inner: EmbeddingBackend, model_id: str | None = None) -> None:
        self.inner = inner
        self.model_id = model_id or inner.model_id
        self.backend = inner.backend
        self.dim = inner.dim
        self.max_input_tokens = inner.max_input_tokens
        self.calls = 0
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        with self._lock:
            self.calls += 1
            self.texts.extend(texts)
        return self.inner.embed(texts)


class TruncatingBackend(CountingBackend):
    """Like a model with a short input window: texts over ``max_chars`` characters are cut."""

    def __init__(self, inner: EmbeddingBackend, model_id: str, max_chars: int = 100) -> None:
        super().__init__(inner, model_id)
        self.max_chars = max_chars
        self.max_input_tokens = max_chars // 4

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        result = super().embed([text[: self.max_chars] for text in texts])
        return EmbedResult(result.vectors, [len(text) > self.max_chars for text in texts])


class FailingBackend(CountingBackend):
    """A model that raises ``error`` on any batch with a text containing "boom"."""

    def __init__(self, inner: EmbeddingBackend, error: Exception) -> None:
        super().__init__(inner)
        self.error = error

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        if any("boom" in text for text in texts):
            raise self.error
        return super().embed(texts)


class GatedLoader:
    """A loader that blocks (in the servicer's loading thread) until ``release()``."""

    def __init__(self, backend: EmbeddingBackend) -> None:
        self.backend = backend
        self.entered = threading.Event()
        self._released = threading.Event()

    def __call__(self) -> EmbeddingBackend:
        self.entered.set()
        if not self._released.wait(timeout=30):
            raise TimeoutError("the test never released the loader")
        return self.backend

    def release(self) -> None:
        self._released.set()


@dataclass
class Running:
    """A started server with its servicer and an aio stub."""

    server: GrpcServer
    servicer: EncoderServicer
    channel: aio.Channel
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub


@asynccontextmanager
async def serve_encoder(
    loaders: Mapping[str, BackendLoader] | EncoderServicer,
    cache: EmbeddingCache | None = None,
    *,
    wait_ready: bool = True,
    **options: Any,
) -> AsyncIterator[Running]:
    """Serve the loaders (or a built servicer) on 127.0.0.1:0 in this event loop; stop afterwards."""
    if isinstance(loaders, EncoderServicer):
        servicer = loaders
    else:
        settings = {"max_texts": MAX_TEXTS, "max_text_bytes": MAX_TEXT_BYTES} | options
        servicer = EncoderServicer(loaders, cache or MemoryEmbeddingCache(16 * 1024 * 1024), **settings)
    server = GrpcServer([servicer], host="127.0.0.1", port=0, grace_period_s=5.0)
    await server.start()
    try:
        if wait_ready:
            await server.wait_ready(timeout=60)
        async with aio.insecure_channel(server.address) as channel:
            yield Running(server, servicer, channel, encoder_pb2_grpc.EncoderServiceStub(channel))
    finally:
        await server.stop(0)


def rows_of(matrix: common_pb2.DenseMatrix) -> np.ndarray:
    """The (count, dim) float32 rows of a DenseMatrix."""
    return from_dense_matrix(matrix)


async def failure_of(call: Awaitable[object]) -> aio.AioRpcError:
    """The status error a call ends with (fails the test when the call succeeds)."""
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value


def abstracts(limit: int) -> list[str]:
    """Title and abstract of the first ``limit`` real astro-ph papers (skips the test without the data)."""
    path = DATA_DIR / "arxiv_astro.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"real corpus not found at {path} (set FEATURELENS_DATA_DIR)")
    return [record.embedding_text for record in read_corpus(path, limit=limit)]
