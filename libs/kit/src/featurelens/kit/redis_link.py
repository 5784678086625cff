"""A cache's connection to Redis that stays out of the way when Redis is down.

Redis holds caches only (embeddings, LLM answers): losing it costs time, never a failed call. A
``RedisLink`` gives a cache a blocking connection pool with short timeouts; when an operation
fails it logs one warning, answers ``should_try() == False`` for ``retry_after_s`` (so a dead
Redis costs no timeout per call), then tries again and logs once when Redis answers again.

Only the services with a Redis cache (encoder, labelling) import this module; they depend on
``redis`` themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from featurelens.kit.logs import redact

logger = logging.getLogger(__name__)


class RedisLink:
    """One Redis client for one cache; ``what`` names the cache in log lines, ``without`` says
    what happens while Redis is down (e.g. "serving uncached")."""

    def __init__(
        self,
        url: str,
        *,
        what: str,
        without: str,
        timeout_s: float = 0.5,
        max_connections: int = 32,
        retry_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s <= 0 or retry_after_s < 0 or max_connections < 1:
            raise ValueError(
                "timeout_s and max_connections must be positive and retry_after_s 0 or more; got "
                f"{timeout_s}, {max_connections} and {retry_after_s}"
            )
        self.what = what
        self.without = without
        self.retry_after_s = retry_after_s
        self.where = redact(url)
        self._clock = clock
        # A blocking pool: a burst of calls waits for a connection instead of failing on redis-py's
        # pool cap; one quick retry re-dials a connection Redis closed while idle, and no more (a
        # dead Redis must not cost a retry storm per call).
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self.redis = Redis(connection_pool=self._pool)
        #: None while Redis is believed up; else the clock time after which to try it again.
        self._down_until: float | None = None

    def should_try(self) -> bool:
        return self._down_until is None or self._clock() >= self._down_until

    def succeeded(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            logger.info("%s: Redis at %s answers again; caching resumed", self.what, self.where)

    def failed(self, error: BaseException) -> None:
        if self._down_until is None:
            logger.warning(
                "%s: Redis at %s is unreachable (%s: %s); %s, trying again every %.0fs",
                self.what,
                self.where,
                type(error).__name__,
                redact(str(error)),
                self.without,
                self.retry_after_s,
            )
        self._down_until = self._clock() + self.retry_after_s

    async def ping(self) -> bool:
        """True when Redis answers (logs like any other operation when it does not)."""
        if not self.should_try():
            return False
        try:
            await self.redis.ping()
        except Exception as error:
            self.failed(error)
            return False
        self.succeeded()
        return True

    async def close(self) -> None:
        await self.redis.aclose()
        await self._pool.aclose()
