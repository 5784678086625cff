"""The chat client: the real openai client against the fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import FakeOpenAI, serve_fake_openai

from featurelens.interp.budget import Budget, BudgetExhausted, estimate_call_usd
from featurelens.interp.llm import (
    CachedCompletion,
    ChatClient,
    InMemoryChatCache,
    LlmConfig,
    LlmRequestError,
    LlmUnavailableError,
    cache_key,
)
from featurelens.interp.pricing import DEFAULT_PRICES, ModelPrice, PriceTable

MODEL = "gpt-4o-mini"
API_KEY = "sk-test-0123456789abcdefSECRET"
VERSION = "test-v1"
MESSAGES = [
    {"role": "system", "content": "Answer with JSON only."},
    {"role": "user", "content": "Label these documents about weak lensing."},
]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with serve_fake_openai(model=MODEL, responder=lambda body: '{"label": "weak lensing"}') as server:
        yield server


class RecordedSleep:
    """Records each backoff and yields to the loop instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def config(fake: FakeOpenAI, **overrides: Any) -> LlmConfig:
    values: dict[str, Any] = {
        "base_url": fake.base_url,
        "api_key": API_KEY,
        "timeout_s": 5.0,
        "max_retries": 3,
        "backoff_base_s": 0.001,
        "backoff_max_s": 0.01,
    }
    values.update(overrides)
    return LlmConfig(**values)


async def test_an_answer_comes_with_its_token_usage_and_cost(fake: FakeOpenAI) -> None:
    async with ChatClient(config(fake)) as client:
        completion = await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert completion.text == '{"label": "weak lensing"}'
    usage = completion.usage
    assert usage.calls == 1
    assert usage.cache_hits == 0
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.cost_usd == pytest.approx(
        DEFAULT_PRICES.cost(MODEL, usage.prompt_tokens, usage.completion_tokens)
    )
    assert client.stats.usage == usage
    assert completion.finish_reason == "stop"


async def test_the_request_carries_the_key_sampling_parameters_and_json_mode(fake: FakeOpenAI) -> None:
    fake.api_key = API_KEY
    async with ChatClient(config(fake, temperature=0.0)) as client:
        await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    request = fake.requests[-1]
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body is not None
    assert request.body["max_tokens"] == 50
    assert request.body["temperature"] == 0.0
    assert request.body["response_format"] == {"type": "json_object"}
    assert request.body["messages"] == MESSAGES


def test_reasoning_models_get_max_completion_tokens_and_their_own_temperature() -> None:
    client_config = LlmConfig("http://127.0.0.1:9/v1", reasoning_effort="low", json_mode=False)

    async def params() -> tuple[dict[str, Any], dict[str, Any]]:
        async with ChatClient(client_config) as client:
            return client.params("gpt-5-mini", 500), client.params("llama3.1:8b", 500)

    reasoning, plain = asyncio.run(params())

    assert reasoning == {"max_completion_tokens": 500, "reasoning_effort": "low"}
    assert plain == {"max_tokens": 500, "temperature": 0.0, "reasoning_effort": "low"}


async def test_a_429_with_retry_after_is_retried_after_the_time_asked_capped(fake: FakeOpenAI) -> None:
    fake.fail_next(429, headers={"Retry-After": "7"})
    sleep = RecordedSleep()

    async with ChatClient(config(fake, backoff_max_s=0.05), sleep=sleep) as client:
        completion = await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert completion.text == '{"label": "weak lensing"}'
    assert fake.chat_calls == 2
    assert sleep.delays == [0.05]
    assert client.stats.retries == 1
    assert completion.usage.calls == 1


async def test_retry_after_ms_is_honoured(fake: FakeOpenAI) -> None:
    fake.fail_next(429, headers={"retry-after-ms": "20"})
    sleep = RecordedSleep()

    async with ChatClient(config(fake, backoff_max_s=1.0), sleep=sleep) as client:
        await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert sleep.delays == [pytest.approx(0.02)]


async def test_a_500_is_retried_with_jittered_exponential_backoff(fake: FakeOpenAI) -> None:
    fake.fail_next(500, times=2, message="The server had an error while processing your request.")
    sleep = RecordedSleep()

    async with ChatClient(config(fake, backoff_base_s=0.1, backoff_max_s=1.0), sleep=sleep) as client:
        completion = await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert completion.text == '{"label": "weak lensing"}'
    assert fake.chat_calls == 3
    assert len(sleep.delays) == 2
    # Full jitter: anywhere from 0 to the doubling ceiling (0.1 s, then 0.2 s).
    assert 0.0 <= sleep.delays[0] <= 0.1
    assert 0.0 <= sleep.delays[1] <= 0.2


async def test_a_call_that_hangs_past_the_timeout_is_retried(fake: FakeOpenAI) -> None:
    fake.hang_next(seconds=10)

    async with ChatClient(config(fake, timeout_s=0.3)) as client:
        completion = await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert completion.text == '{"label": "weak lensing"}'
    assert fake.chat_calls == 2
    assert client.stats.retries == 1


async def test_a_400_is_not_retried_and_says_what_the_endpoint_said(fake: FakeOpenAI) -> None:
    fake.fail_next(400, message="Invalid value for 'response_format'.")
    budget = Budget(10.0)

    async with ChatClient(config(fake), budget=budget) as client:
        with pytest.raises(LlmRequestError, match=r"HTTP 400.*response_format") as raised:
            await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert raised.value.status == 400
    assert fake.chat_calls == 1
    assert client.stats.failures == 1
    # A failed call costs nothing and holds nothing.
    assert budget.spent == 0.0
    assert budget.reserved == 0.0


async def test_a_wrong_key_fails_at_once_and_the_key_appears_in_no_message_or_log(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.api_key = "sk-the-right-one"
    caplog.set_level(logging.DEBUG)

    async with ChatClient(config(fake)) as client:
        with pytest.raises(LlmRequestError, match="HTTP 401") as raised:
            await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert fake.chat_calls == 1
    assert API_KEY not in str(raised.value)
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(client.config)
    assert API_KEY not in str(client.config)


async def test_retries_exhausted_raise_unavailable_after_the_configured_attempts(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next(503, times=3)

    async with ChatClient(config(fake, max_retries=2)) as client:
        with pytest.raises(LlmUnavailableError, match="failed 3 times"):
            await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert fake.chat_calls == 3
    assert client.stats.retries == 2
    assert client.stats.calls == 0
    assert API_KEY not in caplog.text


async def test_an_endpoint_that_refuses_connections_is_unavailable_and_its_credentials_stay_hidden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = LlmConfig(
        f"http://proxy-user:pr0xy-pass@127.0.0.1:{port}/v1?token=q-secret",
        max_retries=1,
        backoff_base_s=0.001,
        backoff_max_s=0.001,
    )

    async with ChatClient(closed) as client:
        with pytest.raises(LlmUnavailableError, match="Connection") as raised:
            await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert f"http://127.0.0.1:{port}/v1 failed 2 times" in str(raised.value)
    for secret in ("pr0xy-pass", "q-secret"):
        assert secret not in str(raised.value)
        assert secret not in caplog.text


async def test_the_budget_stops_the_call_that_would_pass_it_and_keeps_what_was_spent(
    fake: FakeOpenAI,
) -> None:
    prices = PriceTable({MODEL: ModelPrice(1000.0, 1000.0)})
    async with ChatClient(config(fake), prices=prices) as probe:
        actual = (await probe.complete(MODEL, MESSAGES, VERSION, max_tokens=20)).usage.cost_usd
    reserved = estimate_call_usd(prices, MODEL, MESSAGES, 20)
    # Room for two calls and the reservation of a third; a fourth would pass the limit.
    budget = Budget(2 * actual + reserved)
    fake.requests.clear()

    async with ChatClient(config(fake), prices=prices, budget=budget) as client:
        for _ in range(3):
            await client.complete(MODEL, MESSAGES, VERSION, max_tokens=20)
        with pytest.raises(BudgetExhausted, match="would be passed"):
            await client.complete(MODEL, MESSAGES, VERSION, max_tokens=20)

    assert fake.chat_calls == 3
    assert client.stats.calls == 3
    assert budget.spent == pytest.approx(3 * actual)
    assert budget.reserved == 0.0
    assert budget.exhausted


async def test_a_budget_too_small_for_one_call_sends_nothing(fake: FakeOpenAI) -> None:
    budget = Budget(1e-9)

    async with ChatClient(config(fake), budget=budget) as client:
        with pytest.raises(BudgetExhausted, match="budget"):
            await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert fake.chat_calls == 0


async def test_a_cached_answer_makes_no_call_and_costs_nothing(fake: FakeOpenAI) -> None:
    cache = InMemoryChatCache()
    async with ChatClient(config(fake), cache=cache) as client:
        first = await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)
        calls = fake.chat_calls

        again = await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert fake.chat_calls == calls == 1
    assert again.text == first.text
    assert again.cached
    assert again.usage.calls == 0
    assert again.usage.cache_hits == 1
    assert again.usage.cost_usd == 0.0
    assert again.usage.tokens == first.usage.tokens
    assert client.stats.cache_hits == 1
    assert client.stats.calls == 1


async def test_a_new_client_finds_what_an_earlier_one_cached(fake: FakeOpenAI) -> None:
    cache = InMemoryChatCache()
    async with ChatClient(config(fake), cache=cache) as client:
        await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    budget = Budget(0.0)
    async with ChatClient(config(fake), cache=cache, budget=budget) as rerun:
        completion = await rerun.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert completion.cached
    assert fake.chat_calls == 1
    assert budget.spent == 0.0


async def test_another_prompt_version_or_max_tokens_misses_the_cache(fake: FakeOpenAI) -> None:
    cache = InMemoryChatCache()
    async with ChatClient(config(fake), cache=cache) as client:
        await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)
        await client.complete(MODEL, MESSAGES, "test-v2", max_tokens=50)
        await client.complete(MODEL, MESSAGES, VERSION, max_tokens=60)

    assert fake.chat_calls == 3
    assert client.stats.cache_hits == 0


class BrokenCache:
    def __init__(self) -> None:
        self.attempts = 0

    async def get(self, key: str) -> CachedCompletion | None:
        self.attempts += 1
        raise ConnectionError("cache down")

    async def put(self, key: str, value: CachedCompletion) -> None:
        self.attempts += 1
        raise ConnectionError("cache down")


async def test_a_failing_cache_is_skipped_with_one_warning(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    cache = BrokenCache()
    caplog.set_level(logging.WARNING)

    async with ChatClient(config(fake), cache=cache) as client:
        for _ in range(2):
            await client.complete(MODEL, MESSAGES, VERSION, max_tokens=50)

    assert fake.chat_calls == 2
    assert cache.attempts == 4
    assert [record.message for record in caplog.records].count(
        "LLM answer cache failed (ConnectionError: cache down); going on uncached"
    ) == 1


async def test_no_more_calls_are_in_flight_than_the_concurrency_limit(fake: FakeOpenAI) -> None:
    lock = threading.Lock()
    in_flight = [0]
    most = [0]

    def slow(body: dict[str, Any]) -> str:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return "{}"

    fake.responder = slow
    async with ChatClient(config(fake, max_concurrency=3)) as client:
        await asyncio.gather(
            *(client.complete(MODEL, [{"role": "user", "content": str(i)}], VERSION, 10) for i in range(9))
        )

    assert fake.chat_calls == 9
    assert most[0] == 3


def test_the_cache_key_changes_with_everything_that_decides_the_answer() -> None:
    base = ("http://127.0.0.1:8000/v1", MODEL, MESSAGES, {"max_tokens": 50, "temperature": 0.0}, VERSION)
    key = cache_key(*base)
    variants = [
        ("http://127.0.0.1:8001/v1", *base[1:]),
        (base[0], "gpt-4o", *base[2:]),
        (base[0], base[1], [*MESSAGES[:1], {"role": "user", "content": "Other."}], *base[3:]),
        (*base[:3], {"max_tokens": 50, "temperature": 0.7}, VERSION),
        (*base[:3], {"max_tokens": 51, "temperature": 0.0}, VERSION),
        (*base[:4], "test-v2"),
    ]

    assert len({key, *(cache_key(*variant) for variant in variants)}) == 1 + len(variants)
    # What does not change the answer does not change the key.
    assert cache_key(*base) == key
    assert cache_key("http://127.0.0.1:8000/v1/", *base[1:]) == key
    assert cache_key(*base[:3], {"temperature": 0.0, "max_tokens": 50}, VERSION) == key
    assert len(key) == 64


def test_a_cached_completion_survives_bytes_and_corrupt_bytes_are_refused() -> None:
    value = CachedCompletion('{"label": "Hot Jupiters ☉"}', 812, 12, "gpt-4o-mini-2024-07-18")

    assert CachedCompletion.from_bytes(value.to_bytes()) == value
    for corrupt in (
        b"\xff\xfe",
        b"[]",
        b'{"v": 99}',
        b'{"v": 1, "text": "x", "model": "m", "prompt_tokens": -1}',
    ):
        with pytest.raises(ValueError, match="cached completion"):
            CachedCompletion.from_bytes(corrupt)


def test_the_in_memory_cache_forgets_the_least_recently_used_answer_first() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        cache = InMemoryChatCache(max_entries=2)
        answer = CachedCompletion("a", 1, 1, "m")
        await cache.put("one", answer)
        await cache.put("two", answer)
        await cache.get("one")
        await cache.put("three", answer)
        return (await cache.get("one") is not None, await cache.get("two") is not None, len(cache) == 2)

    assert asyncio.run(scenario()) == (True, False, True)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"base_url": "api.openai.com/v1"}, "base_url"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_retries": -1}, "max_retries"),
        ({"backoff_base_s": 2.0, "backoff_max_s": 1.0}, "backoff_max_s"),
        ({"temperature": 3.0}, "temperature"),
        ({"interpreter_max_tokens": 0}, "interpreter_max_tokens"),
        ({"predictor_max_tokens": 0}, "predictor_max_tokens"),
        ({"reasoning_effort": "Very High!"}, "reasoning_effort"),
    ],
)
def test_a_bad_config_is_refused_with_a_sentence_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    values: dict[str, Any] = {"base_url": "http://127.0.0.1:8000/v1", "api_key": API_KEY}
    values.update(overrides)

    with pytest.raises(ValueError, match=field) as raised:
        LlmConfig(**values)

    assert API_KEY not in str(raised.value)
