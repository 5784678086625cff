"""Embedding caches: Redis (shared between replicas, with a TTL) and an in-process LRU.

Both store one value per (model id, text): the row as little-endian float32 bytes followed by
one byte, 1 when the model truncated the text, so a cached row reports truncation correctly.
The cache is an optimisation only: a failing cache turns into misses, never into a failed call.
Lookups are counted for ``featurelens.telemetry`` (cache "embedding"), and each Redis round trip
is a timed "redis" operation.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from featurelens import telemetry
from featurelens.kit.redis_link import RedisLink

logger = logging.getLogger(__name__)

FLOAT32_LE = np.dtype("<f4")
KEY_PREFIX = "fl:emb"
# SET key value EX ttl for every key, in one round trip and one command: redis-py spends ~20 µs
# of Python per pipelined command (1.3-2.3 ms for 64 rows), this ~0.4 ms. Runs as EVALSHA;
# redis-py loads the script again if Redis answers NOSCRIPT (after a restart).
_SET_MANY_WITH_TTL = """
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""
_TRUNCATED = b"\x01"
_COMPLETE = b"\x00"


@dataclass(frozen=True, slots=True)
class CachedRow:
    """One cached embedding: a read-only (dim,) float32 vector and whether its text was truncated."""

    vector: np.ndarray
    truncated: bool


@dataclass(slots=True)
class CacheStats:
    """Counters since the cache was created."""

    hits: int = 0
    misses: int = 0
    #: Operations that failed (Redis unreachable or timing out); each also counts its rows as misses.
    errors: int = 0

    def count(self, rows: Sequence[CachedRow | None]) -> None:
        found = sum(row is not None for row in rows)
        self.hits += found
        self.misses += len(rows) - found
        telemetry.cache_lookups("embedding", found, len(rows) - found)


class EmbeddingCache(Protocol):
    """What the servicer needs from a cache of embeddings keyed by (model id, text)."""

    stats: CacheStats

    async def get_many(self, model_id: str, texts: Sequence[str], dim: int) -> list[CachedRow | None]:
        """The cached row of each text, or None where there is none (or it has the wrong dim)."""
        ...

    async def put_many(
        self, model_id: str, texts: Sequence[str], vectors: np.ndarray, truncated: Sequence[bool]
    ) -> None:
        """Store one row per text."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def text_digest(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text (keys stay short whatever the text's length)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(model_id: str, text: str) -> str:
    """The Redis key of a text's embedding under a model."""
    return f"{KEY_PREFIX}:{model_id}:{text_digest(text)}"


def encode_value(vector: np.ndarray, truncated: bool) -> bytes:
    """A row as stored: float32 little-endian bytes, then one truncation byte."""
    return np.ascontiguousarray(vector, dtype=FLOAT32_LE).tobytes() + (_TRUNCATED if truncated else _COMPLETE)


def decode_value(value: bytes | None, dim: int) -> CachedRow | None:
    """The row in a stored value, or None when absent or not a ``dim``-wide row."""
    if value is None or len(value) != dim * 4 + 1:
        return None
    return CachedRow(np.frombuffer(value, dtype=FLOAT32_LE, count=dim), value[-1:] == _TRUNCATED)


class RedisEmbeddingCache:
    """Embeddings in Redis under ``fl:emb:<model_id>:<sha256(text)>`` with a TTL.

    Reads are one MGET per call, writes one Lua script doing ``SET .. EX`` per row (standalone
    Redis: the keys of a batch span hash slots, which Redis Cluster refuses). When Redis cannot
    be reached the cache logs one warning, stays out of the way (every row a miss) and tries
    again after ``retry_after_s``, logging once when Redis answers again.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: int,
        timeout_s: float = 0.5,
        max_connections: int = 32,
        retry_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = CacheStats()
        self.ttl_s = ttl_s
        self.link = RedisLink(
            url,
            what="embedding cache",
            without="serving uncached",
            timeout_s=timeout_s,
            max_connections=max_connections,
            retry_after_s=retry_after_s,
            clock=clock,
        )
        self._set_many = self.link.redis.register_script(_SET_MANY_WITH_TTL)

    async def get_many(self, model_id: str, texts: Sequence[str], dim: int) -> list[CachedRow | None]:
        rows: list[CachedRow | None] = [None] * len(texts)
        if texts and self.link.should_try():
            try:
                with telemetry.operation("redis", "mget"):
                    values = await self.link.redis.mget([cache_key(model_id, text) for text in texts])
            except Exception as error:  # the cache must never fail a call
                self._failed(error)
            else:
                self.link.succeeded()
                # The client does not decode responses, so every value is bytes or None.
                rows = [decode_value(value, dim) for value in cast(list[bytes | None], values)]
        self.stats.count(rows)
        return rows

    async def put_many(
        self, model_id: str, texts: Sequence[str], vectors: np.ndarray, truncated: Sequence[bool]
    ) -> None:
        if not texts or not self.link.should_try():
            return
        keys = [cache_key(model_id, text) for text in texts]
        values = [encode_value(vector, cut) for vector, cut in zip(vectors, truncated, strict=True)]
        try:
            with telemetry.operation("redis", "set_many"):
                await self._set_many(keys=keys, args=[self.ttl_s, *values])
        except Exception as error:
            self._failed(error)
        else:
            self.link.succeeded()

    async def ping(self) -> bool:
        """True when Redis answers (logs like any other cache operation when it does not)."""
        return await self.link.ping()

    async def close(self) -> None:
        await self.link.close()

    def _failed(self, error: BaseException) -> None:
        self.stats.errors += 1
        self.link.failed(error)


class MemoryEmbeddingCache:
    """A bounded in-process LRU of embeddings, for running without Redis (embedded mode)."""

    #: Rough per-entry bookkeeping (key string, dict slot) counted against the bound.
    ENTRY_OVERHEAD_BYTES = 200

    def __init__(self, max_bytes: int) -> None:
        self.stats = CacheStats()
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, model_id: str, texts: Sequence[str], dim: int) -> list[CachedRow | None]:
        rows: list[CachedRow | None] = []
        for text in texts:
            key = cache_key(model_id, text)
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            rows.append(decode_value(value, dim))
        self.stats.count(rows)
        return rows

    async def put_many(
        self, model_id: str, texts: Sequence[str], vectors: np.ndarray, truncated: Sequence[bool]
    ) -> None:
        for text, vector, cut in zip(texts, vectors, truncated, strict=True):
            value = encode_value(vector, cut)
            size = len(value) + self.ENTRY_OVERHEAD_BYTES
            if size > self.max_bytes:
                return
            key = cache_key(model_id, text)
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old) + self.ENTRY_OVERHEAD_BYTES
            self._entries[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted) + self.ENTRY_OVERHEAD_BYTES

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0
