"""Which calls the SDK retries, when, and how long it waits in between (internal).

A call is retried only when repeating it cannot change anything the first attempt did: reads,
encodes, searches, embeds, health checks. Everything else (training, indexing, deletes that
report what they deleted, streams whose requests are consumed as they are sent) is tried once,
because an attempt that failed on the way back may have done its work. The two tables below
name every RPC of the featurelens protos and the health service; a test fails when a new RPC is
in neither.

What is retried: UNAVAILABLE (nothing answered, or a dependency is down: a later attempt may
find it up), and RESOURCE_EXHAUSTED only when the server says when to come back, in the trailing
metadata ``grpc-retry-pushback-ms`` (gRFC A6) or ``retry-after-ms`` (as openai's API does);
without it a limit is a property of the request, and a retry would hit it again. A server's
pushback replaces the backoff; a negative ``grpc-retry-pushback-ms`` means "do not retry".
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc

DEFAULT_MAX_RETRIES = 2
"""Retries after the first attempt, as in openai-python."""
INITIAL_RETRY_DELAY_S = 0.5
"""The wait before the first retry; it doubles for each further one."""
MAX_RETRY_DELAY_S = 8.0
"""The longest wait the backoff reaches."""
MAX_RETRY_AFTER_S = 60.0
"""The longest server-requested wait honoured; a server asking for more is not retried."""
JITTER = 0.25
"""Each wait is shortened by a random fraction up to this, so clients that failed together spread out."""

PUSHBACK_KEYS = ("grpc-retry-pushback-ms", "retry-after-ms")

RETRIED_RPCS: frozenset[str] = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/List",
        "/featurelens.v1.EncoderService/Embed",
        "/featurelens.v1.EncoderService/ListModels",
        "/featurelens.v1.SaeService/Encode",
        "/featurelens.v1.SaeService/Decode",
        "/featurelens.v1.SaeService/Steer",
        "/featurelens.v1.SaeService/DecoderDirections",
        "/featurelens.v1.SaeService/ListSaes",
        "/featurelens.v1.SaeService/GetSae",
        "/featurelens.v1.SearchService/Search",
        "/featurelens.v1.SearchService/TopDocuments",
        "/featurelens.v1.SearchService/SampleDocuments",
        # A server stream; retried only while no response has reached the caller.
        "/featurelens.v1.SearchService/ExportActivations",
        "/featurelens.v1.SearchService/ListCorpora",
        "/featurelens.v1.LabellingService/GetLabel",
        "/featurelens.v1.LabellingService/GetLabels",
        "/featurelens.v1.LabellingService/ListLabels",
        "/featurelens.v1.LabellingService/SearchFeatures",
        # Seeded and not stored; its LLM calls are cached, so a retry costs little.
        "/featurelens.v1.LabellingService/ScoreLabel",
        # One LLM call each, stored nowhere; the answer is cached once it came, so a retry is free.
        "/featurelens.v1.LabellingService/JudgeSteering",
        "/featurelens.v1.LabellingService/RewriteQuery",
        "/featurelens.v1.FamilyService/ListFamilies",
        "/featurelens.v1.FamilyService/GetFamily",
        "/featurelens.v1.FamilyService/FeatureNeighbours",
        "/featurelens.v1.FamilyService/MatchFeatures",
        "/featurelens.v1.FamilyService/FeatureFamilies",
    }
)
"""RPCs that change nothing on the server: safe to send again."""

NOT_RETRIED_RPCS: dict[str, str] = {
    "/grpc.health.v1.Health/Watch": "a stream that lasts as long as the caller watches",
    "/featurelens.v1.EncoderService/EmbedStream": "its requests are consumed as they are sent",
    "/featurelens.v1.SaeService/Train": "a failed attempt may have trained and registered an SAE",
    "/featurelens.v1.SearchService/IndexDocuments": "its documents are consumed as they are sent",
    "/featurelens.v1.SearchService/DeleteDocuments": "a second attempt would report 0 deleted",
    "/featurelens.v1.SearchService/AttachSae": "a long job that writes as it goes (run it again: it resumes)",
    "/featurelens.v1.SearchService/DetachSae": "a second attempt would report was_attached false",
    "/featurelens.v1.LabellingService/LabelFeatures": "it stores labels as it goes",
    "/featurelens.v1.LabellingService/LabelFamilies": "a long job that spends its LLM budget as it goes",
    "/featurelens.v1.FamilyService/BuildFamilies": "it stores families as it goes",
}
"""RPCs tried once, and why."""


def rpc_path(service: str, method: str) -> str:
    """The wire name of an RPC, ``/<package>.<Service>/<Method>``, as the tables use it.

    The clients call this once per RPC at import, so a name in neither table fails there, not on
    each call.
    """
    path = f"/{service}/{method}"
    if path not in RETRIED_RPCS and path not in NOT_RETRIED_RPCS:
        raise ValueError(f"{path} is in neither table of featurelens.client.retries")
    return path


@dataclass(frozen=True)
class Backoff:
    """How long to wait before each retry: exponential from ``initial_s`` up to ``max_s``, with jitter.

    The defaults are openai-python's. ``random`` is injectable so that a test can pin the jitter.
    """

    initial_s: float = INITIAL_RETRY_DELAY_S
    max_s: float = MAX_RETRY_DELAY_S
    jitter: float = JITTER
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0 for the first retry)."""
        base = min(self.initial_s * 2.0 ** min(retry, 64), self.max_s)
        return max(base * (1.0 - self.jitter * self.random()), 0.0)


def server_pushback_s(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> float | None:
    """The wait the server asked for, seconds: ``math.inf`` for "do not retry", None when it said nothing."""
    for key, value in trailing_metadata or ():
        if key not in PUSHBACK_KEYS:
            continue
        try:
            milliseconds = float(value)
        except ValueError:
            milliseconds = -1.0
        # gRFC A6: a negative pushback, or one that is not a number, means "do not retry".
        if not math.isfinite(milliseconds) or milliseconds < 0:
            return math.inf
        return milliseconds / 1000.0
    return None


def trailing_metadata_of(error: grpc.RpcError) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata of a failed sync or asyncio call, as key-value pairs."""
    trailing_of = getattr(error, "trailing_metadata", None)
    metadata = trailing_of() if callable(trailing_of) else None
    return tuple((str(key), value) for key, value in metadata or ())


def retry_delay(
    rpc: str, code: grpc.StatusCode, pushback_s: float | None, retry: int, backoff: Backoff
) -> float | None:
    """How long to wait before retrying a failed attempt, or None to give up.

    ``retry`` counts the retries already made; the caller checks it against ``max_retries``.
    """
    if rpc not in RETRIED_RPCS:
        return None
    if pushback_s is not None:
        if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
            return None
        return pushback_s if pushback_s <= MAX_RETRY_AFTER_S else None
    if code == grpc.StatusCode.UNAVAILABLE:
        return backoff.delay(retry)
    return None
