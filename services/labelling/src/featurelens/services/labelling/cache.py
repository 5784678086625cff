"""The Redis cache of LLM answers (the core's ``ChatCache`` protocol).

One value per answer under ``<prefix>:<key>``, ``key`` being the core's ``cache_key`` (a SHA-256
of the endpoint, model, messages, sampling parameters and prompt version), the value the
answer's text and token usage as JSON (``CachedCompletion.to_bytes``), with a TTL. A rerun of a
labelling job, here or in another replica, finds every answer and makes no LLM call.

The cache is an optimisation only: when Redis cannot be reached the cache logs one warning,
answers every lookup with a miss and drops every write (labelling goes on uncached), and tries
Redis again only every ``retry_after_s`` seconds, so a dead Redis costs no time per call. A
corrupt or foreign value is a miss, never an error. Each Redis round trip is a timed "redis"
operation for ``featurelens.telemetry`` (the core's ChatClient counts the hits and misses).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from featurelens import telemetry
from featurelens.interp.llm import CachedCompletion
from featurelens.kit.redis_link import RedisLink

logger = logging.getLogger(__name__)

KEY_PREFIX = "fl:llm"


@dataclass(slots=True)
class ChatCacheStats:
    """Counters since the cache was created."""

    hits: int = 0
    misses: int = 0
    #: Values found but unreadable (corrupt, or written by another format); each is also a miss.
    corrupt: int = 0
    writes: int = 0
    #: Operations that failed (Redis unreachable or timing out); each lookup is also a miss.
    errors: int = 0


class RedisChatCache:
    """LLM answers in Redis under ``<prefix>:<key>`` for ``ttl_s`` seconds (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: int,
        prefix: str = KEY_PREFIX,
        timeout_s: float = 0.5,
        max_connections: int = 32,
        retry_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s is {ttl_s}; cached answers must be kept at least one second")
        if not prefix or any(character.isspace() for character in prefix):
            raise ValueError(f"prefix is {prefix!r}; give a non-empty key prefix without spaces")
        self.stats = ChatCacheStats()
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.link = RedisLink(
            url,
            what="LLM cache",
            without="labelling goes on uncached",
            timeout_s=timeout_s,
            max_connections=max_connections,
            retry_after_s=retry_after_s,
            clock=clock,
        )

    def redis_key(self, key: str) -> str:
        """The Redis key under which the answer with cache key ``key`` is kept."""
        return f"{self.prefix}:{key}"

    async def get(self, key: str) -> CachedCompletion | None:
        if not self.link.should_try():
            self.stats.misses += 1
            return None
        try:
            with telemetry.operation("redis", "get"):
                value = await self.link.redis.get(self.redis_key(key))
        except Exception as error:  # the cache must never fail a call
            self._failed(error)
            self.stats.misses += 1
            return None
        self.link.succeeded()
        if value is None:
            self.stats.misses += 1
            return None
        try:
            # The client does not decode responses, so a value is bytes.
            found = CachedCompletion.from_bytes(cast(bytes, value))
        except ValueError as error:
            self.stats.corrupt += 1
            self.stats.misses += 1
            logger.debug(
                "LLM cache: unreadable value under %s (%s); treated as a miss", self.redis_key(key), error
            )
            return None
        self.stats.hits += 1
        return found

    async def put(self, key: str, value: CachedCompletion) -> None:
        if not self.link.should_try():
            return
        try:
            with telemetry.operation("redis", "set"):
                await self.link.redis.set(self.redis_key(key), value.to_bytes(), ex=self.ttl_s)
        except Exception as error:
            self._failed(error)
            return
        self.link.succeeded()
        self.stats.writes += 1

    async def ping(self) -> bool:
        """True when Redis answers (logs like any other cache operation when it does not)."""
        return await self.link.ping()

    async def close(self) -> None:
        await self.link.close()

    def _failed(self, error: BaseException) -> None:
        self.stats.errors += 1
        self.link.failed(error)
