"""Chat completions from any OpenAI-compatible endpoint: cached, budgeted, limited, retried.

``ChatClient.complete`` is the one way the labeller talks to an LLM (OpenAI, vLLM, Ollama,
llama.cpp's server) through the official ``openai`` async client. Each call:

1. looks in the cache (key: endpoint, model, messages, sampling parameters, prompt version);
   a hit costs no call and no money and is counted;
2. reserves its largest possible cost in the job's ``Budget`` (``BudgetExhausted`` propagates
   before anything is sent);
3. waits for one of ``max_concurrency`` slots, then sends with a per-call timeout, retrying
   429, 408, 409, 5xx answers, timeouts and connection errors with exponential backoff and full
   jitter (or as long as ``Retry-After`` / ``retry-after-ms`` asks, capped at ``backoff_max_s``);
   other 4xx answers raise ``LlmRequestError`` at once, exhausted retries ``LlmUnavailableError``;
4. reads the token usage of the response, prices it, settles the budget, stores the answer.

Cache lookups, the time of each call (retries included) and the tokens and dollars of each
answered call are reported to ``featurelens.telemetry`` (labelled by model, never by prompt).

The API key is given to the ``openai`` client and nowhere else: it is kept out of the config's
repr, the logs and the error messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import re
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, cast

from featurelens import telemetry
from featurelens.embedding.backends.openai_http import error_message, retry_after_seconds
from featurelens.interp.budget import Budget, estimate_call_usd, estimate_prompt_tokens
from featurelens.interp.pricing import DEFAULT_PRICES, PriceTable
from featurelens.interp.types import Usage

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

#: Bumped when the cache key's or the cached value's layout changes.
CACHE_FORMAT = 1
# Answers worth retrying besides 5xx: request timeout, conflict, rate limit.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
# OpenAI's reasoning models take max_completion_tokens and only their default temperature.
_REASONING_MODEL = re.compile(r"^(?:[\w.-]+/)?(?:o\d|gpt-5)(?:$|[-.])", re.IGNORECASE)
_SECRET_SHAPE = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-*.]{6,}")
_EFFORT = re.compile(r"^[a-z]+$")

Message = Mapping[str, str]


class LlmError(Exception):
    """An LLM call failed."""


class LlmRequestError(LlmError):
    """The endpoint refused the request (a 4xx other than 408, 409, 429): retrying cannot help."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LlmUnavailableError(LlmError):
    """The endpoint kept failing (rate limits, 5xx, timeouts, connection errors) past the retries."""


@dataclass(frozen=True)
class LlmConfig:
    """How to reach one OpenAI-compatible endpoint and how hard to try.

    ``api_key`` None (or empty) sends a placeholder, for local servers that need none; it never
    appears in ``repr`` or ``str``. ``json_mode`` asks for ``response_format={"type":
    "json_object"}`` (OpenAI, vLLM, Ollama and llama.cpp support it). ``reasoning_effort`` is
    sent as is when set (OpenAI's reasoning models: e.g. "minimal" or "low"); their answers count
    hidden reasoning tokens against ``max_tokens``, so give them larger ``*_max_tokens``.
    """

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    #: Seconds one attempt of a call may take.
    timeout_s: float = 60.0
    #: Calls in flight at once through one client.
    max_concurrency: int = 16
    #: Retries of a call after its first attempt.
    max_retries: int = 5
    #: First backoff ceiling in seconds; doubles each retry, up to ``backoff_max_s``.
    backoff_base_s: float = 0.5
    #: Longest wait before a retry, seconds (``Retry-After`` included).
    backoff_max_s: float = 30.0
    temperature: float = 0.0
    #: Most tokens of the interpreter's answer (a short JSON label).
    interpreter_max_tokens: int = 100
    #: Most tokens of one predictor answer (a batch of scores; about 12 tokens a document).
    predictor_max_tokens: int = 600
    json_mode: bool = True
    reasoning_effort: str | None = None

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^\s/]+", self.base_url):
            raise ValueError(
                f"base_url is {self.base_url!r}; give the endpoint's http(s) URL, e.g. https://api.openai.com/v1"
            )
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s is {self.timeout_s}; give a positive number of seconds")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency is {self.max_concurrency}; at least one call must be allowed")
        if self.max_retries < 0:
            raise ValueError(f"max_retries is {self.max_retries}; give 0 (no retry) or more")
        if not (math.isfinite(self.backoff_base_s) and self.backoff_base_s >= 0):
            raise ValueError(f"backoff_base_s is {self.backoff_base_s}; give 0 or more seconds")
        if not (math.isfinite(self.backoff_max_s) and self.backoff_max_s >= self.backoff_base_s):
            raise ValueError(
                f"backoff_max_s is {self.backoff_max_s}; "
                f"it must be at least backoff_base_s ({self.backoff_base_s})"
            )
        if not (math.isfinite(self.temperature) and 0.0 <= self.temperature <= 2.0):
            raise ValueError(f"temperature is {self.temperature}; OpenAI-compatible APIs take 0 to 2")
        for name in ("interpreter_max_tokens", "predictor_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} is {getattr(self, name)}; an answer needs at least one token")
        if self.reasoning_effort is not None and not _EFFORT.match(self.reasoning_effort):
            raise ValueError(f"reasoning_effort is {self.reasoning_effort!r}; give a word such as 'low'")


@dataclass(frozen=True)
class Completion:
    """An assistant's answer and what it cost (``usage.cache_hits`` is 1 when the cache answered)."""

    text: str
    usage: Usage
    #: The model that answered, as the endpoint reported it (or as recorded in the cache).
    model: str = ""
    #: "stop", "length" (cut off by max_tokens), ...; "" when unknown or cached.
    finish_reason: str = ""

    @property
    def cached(self) -> bool:
        return self.usage.cache_hits > 0


@dataclass(frozen=True)
class CachedCompletion:
    """What the cache keeps of an answer: its text and the usage it cost when it was made."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str

    def to_bytes(self) -> bytes:
        payload = {
            "v": CACHE_FORMAT,
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "model": self.model,
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedCompletion:
        """The cached answer in ``data``; ValueError when it is not one (corrupt or another format)."""
        try:
            payload = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"a cached completion is not JSON ({error})") from None
        if not isinstance(payload, dict) or payload.get("v") != CACHE_FORMAT:
            raise ValueError("a cached completion has an unknown format")
        text, prompt, completion, model = (
            payload.get("text"),
            payload.get("prompt_tokens"),
            payload.get("completion_tokens"),
            payload.get("model"),
        )
        if not (
            isinstance(text, str) and isinstance(model, str) and _is_count(prompt) and _is_count(completion)
        ):
            raise ValueError("a cached completion lacks its text, model or token counts")
        return cls(text, prompt, completion, model)


class ChatCache(Protocol):
    """Where answers are kept between calls and runs; a failing cache must behave as a miss."""

    async def get(self, key: str) -> CachedCompletion | None: ...

    async def put(self, key: str, value: CachedCompletion) -> None: ...


class InMemoryChatCache:
    """Answers in a bounded in-process LRU (running without Redis, and tests)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries is {max_entries}; the cache must hold at least one answer")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedCompletion | None:
        data = self._entries.get(key)
        if data is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return CachedCompletion.from_bytes(data)

    async def put(self, key: str, value: CachedCompletion) -> None:
        # Stored as bytes, like Redis, so a test through this cache exercises the encoding.
        self._entries[key] = value.to_bytes()
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def cache_key(
    base_url: str,
    model: str,
    messages: Sequence[Message],
    params: Mapping[str, Any],
    prompt_version: str,
) -> str:
    """Hex SHA-256 of the canonical JSON of everything that decides an answer."""
    document = {
        "format": CACHE_FORMAT,
        "base_url": base_url.rstrip("/"),
        "model": model,
        "messages": [dict(message) for message in messages],
        "params": dict(params),
        "prompt_version": prompt_version,
    }
    canonical = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class ClientStats:
    """Counters of one client since it was made (read them for progress)."""

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    #: Calls that ended in LlmRequestError or LlmUnavailableError.
    failures: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens, self.cost_usd, self.calls, self.cache_hits)


class ChatClient:
    """Cached, budgeted, concurrency-limited, retried chat completions (see the module docstring).

    ``budget`` None spends without a limit; ``cache`` None caches nothing. ``sleep`` and ``rng``
    are there for tests. Use as an async context manager, or call ``aclose``.
    """

    def __init__(
        self,
        config: LlmConfig,
        prices: PriceTable = DEFAULT_PRICES,
        budget: Budget | None = None,
        cache: ChatCache | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        import openai

        self.config = config
        self.prices = prices
        self.budget = budget
        self.cache = cache
        self.stats = ClientStats()
        self._openai = openai
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            # A placeholder keeps the client from reading OPENAI_API_KEY from the environment.
            api_key=config.api_key or "no-key",
            timeout=config.timeout_s,
            max_retries=0,
        )
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        #: The endpoint as messages and logs name it: no user-info, no query.
        self.endpoint = _display_url(config.base_url)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._cache_failed = False

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    def params(self, model: str, max_tokens: int) -> dict[str, Any]:
        """The sampling parameters sent with a call (and hashed into its cache key)."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens is {max_tokens}; an answer needs at least one token")
        params: dict[str, Any] = {}
        if _REASONING_MODEL.match(model):
            params["max_completion_tokens"] = max_tokens
        else:
            params["max_tokens"] = max_tokens
            params["temperature"] = self.config.temperature
        if self.config.reasoning_effort is not None:
            params["reasoning_effort"] = self.config.reasoning_effort
        if self.config.json_mode:
            params["response_format"] = {"type": "json_object"}
        return params

    async def complete(
        self, model: str, messages: Sequence[Message], prompt_version: str, max_tokens: int
    ) -> Completion:
        """The assistant's answer to ``messages`` (from the cache when it holds one)."""
        if not model.strip():
            raise ValueError("model is empty; name the model to call")
        if not messages:
            raise ValueError("messages is empty; a chat completion needs at least one message")
        params = self.params(model, max_tokens)
        key = cache_key(self.config.base_url, model, messages, params, prompt_version)
        cached = await self._cache_get(key)
        if self.cache is not None:
            telemetry.cache_lookups("llm", hits=int(cached is not None), misses=int(cached is None))
        if cached is not None:
            self.stats.cache_hits += 1
            self.stats.prompt_tokens += cached.prompt_tokens
            self.stats.completion_tokens += cached.completion_tokens
            usage = Usage(cached.prompt_tokens, cached.completion_tokens, 0.0, 0, 1)
            return Completion(cached.text, usage, cached.model)

        reservation = None
        if self.budget is not None:
            reservation = self.budget.reserve(estimate_call_usd(self.prices, model, messages, max_tokens))
        try:
            with telemetry.operation("llm", "chat", model=model):
                response = await self._send(model, messages, params)
        except BaseException:
            if reservation is not None and self.budget is not None:
                self.budget.release(reservation)
            raise
        text, prompt_tokens, completion_tokens, finish_reason = self._read(response, messages)
        cost = self.prices.cost(model, prompt_tokens, completion_tokens)
        if reservation is not None and self.budget is not None:
            self.budget.settle(reservation, cost)
        self.stats.calls += 1
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        self.stats.cost_usd += cost
        telemetry.llm_usage(model, prompt_tokens, completion_tokens, cost)
        answered_by = str(getattr(response, "model", "") or model)
        await self._cache_put(key, CachedCompletion(text, prompt_tokens, completion_tokens, answered_by))
        usage = Usage(prompt_tokens, completion_tokens, cost, 1, 0)
        return Completion(text, usage, answered_by, finish_reason)

    async def _send(self, model: str, messages: Sequence[Message], params: dict[str, Any]) -> Any:
        openai = self._openai
        config = self.config
        for attempt in range(config.max_retries + 1):
            retry_after: float | None = None
            try:
                async with self._semaphore:
                    # The client's own timeout ends a quiet connection; this one, a trickling answer.
                    async with asyncio.timeout(config.timeout_s * 1.5 + 1.0):
                        return await self._client.chat.completions.create(
                            model=model, messages=cast(Any, [dict(m) for m in messages]), **params
                        )
            except (openai.APIConnectionError, TimeoutError) as exc:
                # APITimeoutError is an APIConnectionError.
                error: Exception = exc
            except openai.APIStatusError as exc:
                if exc.status_code not in _RETRYABLE_STATUSES and exc.status_code < 500:
                    self.stats.failures += 1
                    raise LlmRequestError(
                        f"the LLM endpoint at {self.endpoint} refused the request for model {model!r} "
                        f"(HTTP {exc.status_code}): {self._scrub(_bounded(error_message(exc)))}",
                        exc.status_code,
                    ) from None
                error = exc
                retry_after = retry_after_seconds(exc.response.headers)
            except openai.APIResponseValidationError as exc:
                self.stats.failures += 1
                raise LlmRequestError(
                    f"the LLM endpoint at {self.endpoint} sent an answer that is not a chat completion "
                    f"(model {model!r}): {self._scrub(_bounded(str(exc)))}"
                ) from None
            if attempt == config.max_retries:
                self.stats.failures += 1
                raise LlmUnavailableError(
                    f"the LLM endpoint at {self.endpoint} failed {attempt + 1} times for model {model!r}; "
                    f"last error: {self._scrub(_describe(error))}"
                ) from None
            delay = self._delay(attempt, retry_after)
            self.stats.retries += 1
            logger.warning(
                "LLM call to %s (model %s) failed: %s; retry %d of %d in %.2f s",
                self.endpoint,
                model,
                self._scrub(_describe(error)),
                attempt + 1,
                config.max_retries,
                delay,
            )
            await self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        config = self.config
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), config.backoff_max_s)
        # Full jitter: calls that failed together do not come back together.
        return self._rng.uniform(0.0, min(config.backoff_base_s * 2**attempt, config.backoff_max_s))

    def _read(self, response: Any, messages: Sequence[Message]) -> tuple[str, int, int, str]:
        """Text, prompt tokens, completion tokens and finish reason of a response."""
        choices = getattr(response, "choices", None) or []
        text = ""
        finish_reason = ""
        if choices:
            message = choices[0].message
            text = message.content or getattr(message, "refusal", None) or ""
            finish_reason = str(choices[0].finish_reason or "")
        usage = getattr(response, "usage", None)
        if usage is not None and _is_count(usage.prompt_tokens) and _is_count(usage.completion_tokens):
            return text, usage.prompt_tokens, usage.completion_tokens, finish_reason
        # Some local servers send no usage; estimate it so that costs and budgets still count.
        logger.debug("the LLM endpoint at %s sent no token usage; estimating it", self.endpoint)
        return text, estimate_prompt_tokens(messages), math.ceil(len(text) / 4), finish_reason

    async def _cache_get(self, key: str) -> CachedCompletion | None:
        if self.cache is None:
            return None
        try:
            return await self.cache.get(key)
        except Exception as error:  # the cache is an optimisation; it never fails a call
            self._cache_error(error)
            return None

    async def _cache_put(self, key: str, value: CachedCompletion) -> None:
        if self.cache is None:
            return
        try:
            await self.cache.put(key, value)
        except Exception as error:
            self._cache_error(error)

    def _cache_error(self, error: Exception) -> None:
        if not self._cache_failed:
            self._cache_failed = True
            logger.warning("LLM answer cache failed (%s: %s); going on uncached", type(error).__name__, error)

    def _scrub(self, text: str) -> str:
        key = self.config.api_key
        if key:
            text = text.replace(key, "***")
        return _SECRET_SHAPE.sub("***", text)


def _display_url(url: str) -> str:
    """``url`` without user-info or query (either may hold a credential)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _bounded(text: str, limit: int = 300) -> str:
    """An error body as a message shows it: one line, at most ``limit`` characters (an HTML error
    page from a proxy would otherwise fill the log)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _describe(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    if status:
        return f"{type(error).__name__} (HTTP {status})"
    if isinstance(error, TimeoutError):
        return "TimeoutError: no answer in time"
    cause = error.__cause__
    detail = f"{type(error).__name__}: {error}"
    return f"{detail} ({type(cause).__name__}: {cause})" if cause is not None else detail
