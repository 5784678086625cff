"""Redis stopped in the middle of a run: the encoder and the labelling LLM path keep answering,
uncached, and cache again once Redis is back (issue 13, point 3).

Redis here is a redis-server of the test's own on a free port (the shared one on 6379 is never
touched), killed and started again on the same port. The caches retry a down Redis every
``retry_after_s`` (30 s in the services; 0.2 s here, so recovery shows in well under a second).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis
from fake_openai import FakeOpenAI, serve_fake_openai
from fault_host import RedisProcess
from grpc import aio
from search_testing import CountingBackend

from featurelens.embedding.backends import load_backend
from featurelens.interp.llm import ChatClient, LlmConfig
from featurelens.kit import GrpcServer
from featurelens.services.encoder.cache import RedisEmbeddingCache
from featurelens.services.encoder.servicer import EncoderServicer
from featurelens.services.labelling.cache import RedisChatCache
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc
from featurelens.wire.arrays import from_dense_matrix

RETRY_AFTER_S = 0.2
TIMEOUT_S = 0.2


def keys_in(server: RedisProcess) -> int:
    with redis.Redis(port=server.port, socket_timeout=2) as client:
        return int(client.dbsize())


@pytest.fixture
async def encoder(
    redis_server: RedisProcess,
) -> AsyncIterator[tuple[encoder_pb2_grpc.EncoderServiceStub, RedisEmbeddingCache, CountingBackend]]:
    backend = CountingBackend(load_backend("wordllama"))
    cache = RedisEmbeddingCache(redis_server.url, ttl_s=600, timeout_s=TIMEOUT_S, retry_after_s=RETRY_AFTER_S)
    server = GrpcServer([EncoderServicer({"wordllama": lambda: backend}, cache)], host="127.0.0.1", port=0)
    await server.start()
    await server.wait_ready(60)
    async with aio.insecure_channel(server.address) as channel:
        yield encoder_pb2_grpc.EncoderServiceStub(channel), cache, backend
    await server.stop(0)


async def embed(stub: encoder_pb2_grpc.EncoderServiceStub, *texts: str) -> int:
    reply = await stub.Embed(encoder_pb2.EmbedRequest(texts=list(texts)), timeout=30)
    return int(from_dense_matrix(reply.embeddings).shape[0])


async def test_the_encoder_serves_uncached_while_redis_is_down_and_caches_again_when_it_returns(
    encoder: tuple[encoder_pb2_grpc.EncoderServiceStub, RedisEmbeddingCache, CountingBackend],
    redis_server: RedisProcess,
) -> None:
    stub, cache, backend = encoder
    assert await embed(stub, "dark matter halos", "exoplanet transits") == 2
    assert keys_in(redis_server) == 2

    redis_server.stop()
    for round_ in range(3):
        assert await embed(stub, f"gravitational lensing {round_}") == 1
    assert cache.stats.errors >= 1, "the cache never noticed that Redis was down"

    redis_server.start()  # empty: it keeps nothing on disk
    texts_before = backend.texts

    async def cached_again() -> bool:
        await embed(stub, "cosmic microwave background")
        return keys_in(redis_server) >= 1

    # Each try goes to Redis once its pause is over; the first write after that lands.
    for _ in range(200):
        if await cached_again():
            break
    assert keys_in(redis_server) >= 1
    # And what it wrote is read back: the model is not asked again for a cached text.
    texts_after_write = backend.texts
    await embed(stub, "cosmic microwave background")
    assert backend.texts == texts_after_write
    assert texts_after_write > texts_before


async def test_llm_calls_go_on_uncached_while_redis_is_down_and_are_cached_again_when_it_returns(
    redis_server: RedisProcess,
) -> None:
    messages = [{"role": "user", "content": "Label documents about hot Jupiters."}]
    cache = RedisChatCache(redis_server.url, ttl_s=600, timeout_s=TIMEOUT_S, retry_after_s=RETRY_AFTER_S)
    fake: FakeOpenAI
    with serve_fake_openai() as fake:
        async with ChatClient(
            LlmConfig(fake.base_url, api_key="sk-test", max_retries=0), cache=cache
        ) as client:

            async def ask(text: str) -> str:
                answer = await client.complete(
                    "gpt-4o-mini", [{"role": "user", "content": text}], "fault-v1", 50
                )
                return answer.text

            assert await ask(messages[0]["content"]) == messages[0]["content"]
            assert await ask(messages[0]["content"]) == messages[0]["content"]
            assert fake.answered_chat_calls == 1, "the repeat was not served from Redis"

            redis_server.stop()
            for round_ in range(3):
                assert await ask(f"uncached question {round_}") == f"uncached question {round_}"
            assert fake.answered_chat_calls == 4
            assert cache.stats.errors >= 1

            redis_server.start()

            async def written() -> bool:
                await ask("a question after the outage")
                return keys_in(redis_server) >= 1

            for _ in range(200):
                if await written():
                    break
            calls = fake.answered_chat_calls
            assert await ask("a question after the outage") == "a question after the outage"
            assert fake.answered_chat_calls == calls, "the answer written after the outage was not read back"
    await cache.close()
