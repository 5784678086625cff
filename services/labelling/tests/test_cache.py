"""The Redis cache of LLM answers against the real Redis at 127.0.0.1:6379, and without one."""

from __future__ import annotations

import logging
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

# importlib mode puts no test folder on sys.path: make the core's fake OpenAI server importable.
_CORE_TESTS = Path(__file__).resolve().parents[3] / "libs" / "core" / "tests"
if str(_CORE_TESTS) not in sys.path:
    sys.path.insert(0, str(_CORE_TESTS))

from fake_openai import FakeOpenAI, serve_fake_openai  # noqa: E402

from featurelens.interp.budget import Budget  # noqa: E402
from featurelens.interp.llm import CachedCompletion, ChatClient, LlmConfig, LlmUnavailableError, cache_key  # noqa: E402
from featurelens.services.labelling.cache import RedisChatCache  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
TTL_S = 3600
MODEL = "gpt-4o-mini"
VERSION = "test-v1"
MESSAGES = [{"role": "user", "content": "Label documents about hot Jupiters."}]
ANSWER = CachedCompletion('{"label": "Hot Jupiter atmospheres"}', 812, 12, "gpt-4o-mini-2024-07-18")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted from Redis afterwards."""
    unique = f"fl:llm-test:{uuid.uuid4().hex[:12]}"
    yield unique
    keys = list(redis_client.scan_iter(match=f"{unique}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
async def cache(prefix: str) -> AsyncIterator[RedisChatCache]:
    cache = RedisChatCache(REDIS_URL, ttl_s=TTL_S, prefix=prefix)
    yield cache
    await cache.close()


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with serve_fake_openai(
        model=MODEL, responder=lambda body: '{"label": "Hot Jupiter atmospheres"}'
    ) as server:
        yield server


def closed_endpoint() -> LlmConfig:
    """An endpoint nothing listens on: any call that reaches the network fails."""
    return LlmConfig(f"http://127.0.0.1:{free_port()}/v1", max_retries=0)


async def test_an_answer_put_is_found_again_under_the_prefix_with_a_ttl(
    cache: RedisChatCache, prefix: str, redis_client: redis.Redis
) -> None:
    await cache.put("abc123", ANSWER)

    found = await cache.get("abc123")

    assert found == ANSWER
    assert cache.stats.hits == 1
    assert cache.stats.writes == 1
    assert 0 < redis_client.ttl(f"{prefix}:abc123") <= TTL_S


async def test_an_unknown_key_is_a_miss(cache: RedisChatCache) -> None:
    assert await cache.get("never-stored") is None
    assert cache.stats.misses == 1
    assert cache.stats.errors == 0


async def test_a_corrupt_value_is_a_miss_not_an_error(
    cache: RedisChatCache, prefix: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"{prefix}:broken", b"\x00not json")

    assert await cache.get("broken") is None
    assert cache.stats.corrupt == 1
    assert cache.stats.errors == 0


async def test_a_client_answers_from_redis_without_reaching_the_endpoint(cache: RedisChatCache) -> None:
    config = closed_endpoint()
    async with ChatClient(config, cache=cache) as client:
        key = cache_key(config.base_url, MODEL, MESSAGES, client.params(MODEL, 50), VERSION)
        await cache.put(key, ANSWER)

        completion = await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert completion.text == ANSWER.text
    assert completion.usage.cache_hits == 1
    assert completion.usage.calls == 0
    assert completion.usage.prompt_tokens == ANSWER.prompt_tokens


async def test_a_rerun_through_a_new_cache_makes_zero_calls_to_the_endpoint(
    fake: FakeOpenAI, prefix: str
) -> None:
    config = LlmConfig(fake.base_url, api_key="sk-test")
    questions = [[{"role": "user", "content": f"Label feature {i}."}] for i in range(5)]

    first_cache = RedisChatCache(REDIS_URL, ttl_s=TTL_S, prefix=prefix)
    async with ChatClient(config, cache=first_cache) as client:
        first = [await client.complete(MODEL, messages, VERSION, 50) for messages in questions]
    await first_cache.close()
    calls = fake.chat_calls

    # A restarted service: a new pool, a new client, a budget that allows no spending.
    rerun_cache = RedisChatCache(REDIS_URL, ttl_s=TTL_S, prefix=prefix)
    async with ChatClient(config, cache=rerun_cache, budget=Budget(0.0)) as client:
        again = [await client.complete(MODEL, messages, VERSION, 50) for messages in questions]
    await rerun_cache.close()

    assert calls == 5
    assert fake.chat_calls == calls
    assert [completion.text for completion in again] == [completion.text for completion in first]
    assert client.stats.cache_hits == 5
    assert rerun_cache.stats.hits == 5


async def test_redis_down_gives_misses_and_dropped_writes_with_exactly_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="featurelens.services.labelling.cache")
    cache = RedisChatCache(f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0", ttl_s=TTL_S, timeout_s=0.2)

    for _ in range(3):
        await cache.put("k", ANSWER)
        assert await cache.get("k") is None
    await cache.close()

    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()
    assert "hunter2-secret" not in caplog.text
    # Only the first operation tried Redis; the others did not wait for it.
    assert cache.stats.errors == 1
    assert cache.stats.misses == 3


async def test_a_down_redis_is_tried_again_only_after_retry_after_and_warned_about_once() -> None:
    now = [0.0]
    cache = RedisChatCache(
        f"redis://127.0.0.1:{free_port()}/0",
        ttl_s=TTL_S,
        timeout_s=0.2,
        retry_after_s=30,
        clock=lambda: now[0],
    )

    await cache.get("k")
    now[0] = 29.0
    await cache.get("k")
    errors_within_the_pause = cache.stats.errors
    now[0] = 31.0
    await cache.get("k")
    await cache.close()

    assert errors_within_the_pause == 1
    assert cache.stats.errors == 2


async def test_labelling_goes_on_uncached_when_redis_is_down(fake: FakeOpenAI) -> None:
    cache = RedisChatCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=TTL_S, timeout_s=0.2)

    async with ChatClient(LlmConfig(fake.base_url, api_key="sk-test"), cache=cache) as client:
        for _ in range(2):
            completion = await client.complete(MODEL, MESSAGES, VERSION, 50)
    await cache.close()

    assert completion.text == '{"label": "Hot Jupiter atmospheres"}'
    assert fake.chat_calls == 2
    assert client.stats.cache_hits == 0


async def test_without_a_cached_answer_the_closed_endpoint_fails_so_the_hit_above_is_real(
    cache: RedisChatCache,
) -> None:
    async with ChatClient(closed_endpoint(), cache=cache) as client:
        with pytest.raises(LlmUnavailableError):
            await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": 10, "prefix": ""}, "prefix"),
        ({"ttl_s": 10, "timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_settings_are_refused_with_a_sentence(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RedisChatCache(REDIS_URL, **kwargs)  # type: ignore[arg-type]
