"""The Redis embedding cache against the real Redis at 127.0.0.1:6379, and without one."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import redis
from encoder_testing import REDIS_URL, CountingBackend, TruncatingBackend, serve_encoder

from featurelens.embedding.backends import EmbeddingBackend
from featurelens.services.encoder.cache import RedisEmbeddingCache, cache_key
from featurelens.v1 import encoder_pb2

TEXTS = [
    "Cosmic shear from the first year of survey data.",
    "Radio relics in merging galaxy clusters.",
    "Exoplanet atmospheres with transmission spectroscopy.",
]
TTL_S = 3600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_second_call_is_served_from_redis_without_reaching_the_model(
    wordllama: EmbeddingBackend, redis_model_id: str, redis_client: redis.Redis
) -> None:
    counting = CountingBackend(wordllama, redis_model_id)
    cache = RedisEmbeddingCache(REDIS_URL, ttl_s=TTL_S)
    async with serve_encoder({"wordllama": lambda: counting}, cache) as running:
        first = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))
        calls_after_first = counting.calls

        second = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))

    assert first.cached_count == 0
    assert second.cached_count == len(TEXTS)
    assert counting.calls == calls_after_first
    assert second.embeddings.data == first.embeddings.data
    assert cache.stats.hits == len(TEXTS)
    for text in TEXTS:
        assert 0 < redis_client.ttl(cache_key(redis_model_id, text)) <= TTL_S


async def test_a_restarted_encoder_finds_the_rows_an_earlier_one_cached(
    wordllama: EmbeddingBackend, redis_model_id: str
) -> None:
    async with serve_encoder(
        {"wordllama": lambda: CountingBackend(wordllama, redis_model_id)},
        RedisEmbeddingCache(REDIS_URL, ttl_s=TTL_S),
    ) as running:
        first = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))

    counting = CountingBackend(wordllama, redis_model_id)
    async with serve_encoder(
        {"wordllama": lambda: counting}, RedisEmbeddingCache(REDIS_URL, ttl_s=TTL_S)
    ) as running:
        calls_after_warm_up = counting.calls
        again = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))

    assert again.cached_count == len(TEXTS)
    assert counting.calls == calls_after_warm_up
    assert again.embeddings.data == first.embeddings.data


async def test_truncation_flags_survive_the_redis_cache(
    wordllama: EmbeddingBackend, redis_model_id: str
) -> None:
    truncating = TruncatingBackend(wordllama, redis_model_id, max_chars=45)
    async with serve_encoder(
        {"short": lambda: truncating}, RedisEmbeddingCache(REDIS_URL, ttl_s=TTL_S)
    ) as running:
        computed = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))
        cached = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))

    assert list(computed.truncated) == [True, False, True]
    assert cached.cached_count == len(TEXTS)
    assert list(cached.truncated) == [True, False, True]


async def test_a_cached_value_of_another_dimension_is_a_miss_not_a_wrong_row(
    wordllama: EmbeddingBackend, redis_model_id: str, redis_client: redis.Redis
) -> None:
    redis_client.set(cache_key(redis_model_id, TEXTS[0]), np.ones(8, dtype="<f4").tobytes() + b"\x00")
    counting = CountingBackend(wordllama, redis_model_id)
    async with serve_encoder(
        {"wordllama": lambda: counting}, RedisEmbeddingCache(REDIS_URL, ttl_s=TTL_S)
    ) as running:
        reply = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS[:1]))

    assert reply.cached_count == 0
    assert reply.embeddings.dim == 256


async def test_with_redis_unreachable_calls_succeed_uncached_and_one_warning_is_logged(
    wordllama: EmbeddingBackend, caplog: pytest.LogCaptureFixture
) -> None:
    counting = CountingBackend(wordllama)
    cache = RedisEmbeddingCache("redis://127.0.0.1:1/0", ttl_s=TTL_S)
    with caplog.at_level(logging.INFO):
        async with serve_encoder({"wordllama": lambda: counting}, cache) as running:
            replies = [await running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS)) for _ in range(3)]

    assert [reply.cached_count for reply in replies] == [0, 0, 0]
    assert all(reply.embeddings.count == len(TEXTS) for reply in replies)
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    assert "Redis at redis://127.0.0.1:1/0 is unreachable" in warnings[0].getMessage()


@pytest.fixture
def redis_port_without_server() -> Iterator[tuple[int, Callable[[], None]]]:
    """A free port and a function that starts a throw-away redis-server on it."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        command = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    yield port, start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


async def test_the_cache_retries_after_a_pause_and_resumes_once_redis_answers(
    redis_port_without_server: tuple[int, Callable[[], None]], caplog: pytest.LogCaptureFixture
) -> None:
    port, start_redis = redis_port_without_server
    now = [1000.0]
    cache = RedisEmbeddingCache(
        f"redis://127.0.0.1:{port}/0", ttl_s=TTL_S, retry_after_s=30, clock=lambda: now[0]
    )
    row = np.full((1, 4), 0.5, dtype=np.float32)
    try:
        with caplog.at_level(logging.INFO, logger="featurelens.kit.redis_link"):
            assert await cache.get_many("m", ["text"], 4) == [None]
            start_redis()
            now[0] += 10  # within the pause: the cache does not try Redis yet
            await cache.put_many("m", ["text"], row, [False])
            assert await cache.get_many("m", ["text"], 4) == [None]

            now[0] += 25  # past the pause
            await cache.put_many("m", ["text"], row, [False])
            cached = await cache.get_many("m", ["text"], 4)
    finally:
        await cache.close()

    assert cached[0] is not None
    np.testing.assert_array_equal(cached[0].vector, row[0])
    messages = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in messages] == ["WARNING", "INFO"]
    assert "answers again" in messages[1][1]
