"""A request id of the caller's own for the SDK's calls, instead of a fresh one per call.

A program that serves requests of its own (the HTTP gateway) passes its request's id on, so the
services' log lines of every call it makes for that request carry the id its caller sees::

    with using_request_id("4f2a9c1e0b7d3a55"):
        await client.search.search("astro", "dark matter halos")

The id lives in a context variable: it applies to the calls made in this thread or asyncio task
(and the tasks it starts) until the ``with`` block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from featurelens.wire.metadata import new_request_id

_given: ContextVar[str | None] = ContextVar("featurelens_client_request_id", default=None)


@contextmanager
def using_request_id(request_id: str) -> Iterator[None]:
    """Calls made inside send ``request_id`` as their ``x-request-id`` (every attempt of each)."""
    token = _given.set(request_id)
    try:
        yield
    finally:
        _given.reset(token)


def call_request_id() -> str:
    """The request id of a call starting now: the caller's (``using_request_id``) or a fresh one."""
    return _given.get() or new_request_id()
