"""Fixtures of the encoder tests: the wordllama model, a served encoder, unique Redis model ids."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

# importlib mode puts no test folder on sys.path: make this folder's helpers (encoder_testing) and
# the core library's fake OpenAI server (fake_openai) importable.
_HERE = Path(__file__).resolve().parent
for _folder in (_HERE, _HERE.parents[2] / "libs" / "core" / "tests"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from encoder_testing import REDIS_URL, CountingBackend, Running, serve_encoder  # noqa: E402

from featurelens.embedding.backends import EmbeddingBackend, load_backend  # noqa: E402
from featurelens.services.encoder.cache import KEY_PREFIX  # noqa: E402
from featurelens.v1 import encoder_pb2_grpc  # noqa: E402


@pytest.fixture(scope="session")
def wordllama() -> EmbeddingBackend:
    """The real wordllama model (loads offline from its package in well under a second)."""
    return load_backend("wordllama")


@pytest.fixture
def counting(wordllama: EmbeddingBackend) -> CountingBackend:
    """wordllama behind a call counter."""
    return CountingBackend(wordllama)


@pytest.fixture
async def running(counting: CountingBackend) -> AsyncIterator[Running]:
    """The encoder serving wordllama (as ``counting``) with an in-process cache, ready."""
    async with serve_encoder({"wordllama": lambda: counting}) as running:
        yield running


@pytest.fixture
def stub(running: Running) -> encoder_pb2_grpc.EncoderServiceAsyncStub:
    return running.stub


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A client of the real Redis at 127.0.0.1:6379 (the tests fail, loudly, without one)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("these tests need Redis at 127.0.0.1:6379; start one with scripts/ensure_redis.sh")
    yield client
    client.close()


@pytest.fixture
def redis_model_id(redis_client: redis.Redis) -> Iterator[str]:
    """A model id no other test uses; its cached embeddings are deleted from Redis afterwards."""
    model_id = f"test-{uuid.uuid4().hex[:12]}"
    yield model_id
    keys = list(redis_client.scan_iter(match=f"{KEY_PREFIX}:{model_id}:*", count=1000))
    if keys:
        redis_client.delete(*keys)
