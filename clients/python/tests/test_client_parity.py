"""The sync and async clients offer the same methods with the same parameters.

Allowed differences: the async methods are coroutines (or async generators where the sync ones
return an ``Iterator``, or, for a paged listing, plain methods returning an ``AsyncPaginator``
where the sync ones return a ``SyncPage``), and an async method may also accept an
``AsyncIterable`` where the sync one takes an ``Iterable``. Everything else (names, parameter
names, kinds, defaults and annotations) must match, so that a user can switch between them by
adding ``await`` (or ``async for``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from featurelens.client import AsyncFeaturelensClient, AsyncPaginator, FeaturelensClient, SyncPage
from featurelens.client.encoder import AsyncEncoderClient, EncoderClient
from featurelens.client.families import AsyncFamiliesClient, FamiliesClient
from featurelens.client.labelling import AsyncLabellingClient, LabellingClient
from featurelens.client.sae import AsyncSaeClient, SaeClient
from featurelens.client.search import AsyncSearchClient, SearchClient

PAIRS: list[tuple[type, type]] = [
    (FeaturelensClient, AsyncFeaturelensClient),
    (EncoderClient, AsyncEncoderClient),
    (SaeClient, AsyncSaeClient),
    (SearchClient, AsyncSearchClient),
    (LabellingClient, AsyncLabellingClient),
    (FamiliesClient, AsyncFamiliesClient),
]

SYNC_NAME = {
    "AsyncIterator": "Iterator",
    "AsyncTransport": "SyncTransport",
    "AsyncPaginator": "SyncPage",
    **{async_cls.__name__: sync_cls.__name__ for sync_cls, async_cls in PAIRS},
}
"""What an async annotation names, in its sync counterpart."""

IMMEDIATE = {"with_options"}
"""Methods that call nothing, so they are plain functions on the async clients too."""


def _union_members(annotation: str) -> list[str]:
    """The top-level members of a ``A | B[C | D] | None`` annotation."""
    members, depth, current = [], 0, ""
    for char in annotation:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "|" and depth == 0:
            members.append(current.strip())
            current = ""
        else:
            current += char
    members.append(current.strip())
    return members


def _normal(annotation: Any, *, parameter: bool, is_async: bool) -> str:
    """An annotation as text; an async one as its sync counterpart would spell it."""
    if annotation is inspect.Parameter.empty:
        return ""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    if not is_async:
        return text
    if parameter:
        members = _union_members(text)
        text = " | ".join(m for m in members if not m.startswith(("AsyncIterable[", "AsyncIterator[")))
    return re.sub(r"\b\w+\b", lambda word: SYNC_NAME.get(word[0], word[0]), text)


def _shape(function: Any, *, is_async: bool) -> tuple[list[tuple[str, str, str, str]], str]:
    """Each parameter's name, kind, default and annotation, and the return annotation."""
    signature = inspect.signature(function)
    parameters = [
        (p.name, p.kind.name, repr(p.default), _normal(p.annotation, parameter=True, is_async=is_async))
        for p in signature.parameters.values()
    ]
    return parameters, _normal(signature.return_annotation, parameter=False, is_async=is_async)


def _returns_paginator(function: Any) -> bool:
    """A paged listing: awaited for its first page, or iterated with ``async for``."""
    returns = inspect.signature(function).return_annotation
    return str(returns).startswith("AsyncPaginator[")


def _public(cls: type) -> dict[str, Any]:
    return {name: inspect.getattr_static(cls, name) for name in dir(cls) if not name.startswith("_")}


def differences(sync_cls: type, async_cls: type) -> list[str]:
    """Sentences naming each way in which ``async_cls`` does not mirror ``sync_cls``."""
    found: list[str] = []
    sync_members, async_members = _public(sync_cls), _public(async_cls)
    for name in sorted(sync_members.keys() ^ async_members.keys()):
        where = sync_cls if name in sync_members else async_cls
        found.append(f"{name} is only on {where.__name__}")
    for name in [*sorted(sync_members.keys() & async_members.keys()), "__init__"]:
        sync_member = inspect.getattr_static(sync_cls, name)
        async_member = inspect.getattr_static(async_cls, name)
        if isinstance(sync_member, property) or isinstance(async_member, property):
            if not (isinstance(sync_member, property) and isinstance(async_member, property)):
                found.append(f"{name} is a property on one client only")
                continue
            sync_member, async_member = sync_member.fget, async_member.fget
        elif name != "__init__":
            if inspect.iscoroutinefunction(sync_member) or inspect.isasyncgenfunction(sync_member):
                found.append(f"{sync_cls.__name__}.{name} is async")
            is_async = inspect.iscoroutinefunction(async_member) or inspect.isasyncgenfunction(async_member)
            if not is_async and name not in IMMEDIATE and not _returns_paginator(async_member):
                found.append(f"{async_cls.__name__}.{name} is not async")
        sync_shape = _shape(sync_member, is_async=False)
        async_shape = _shape(async_member, is_async=True)
        if sync_shape != async_shape:
            found.append(f"{name}: {sync_shape} != {async_shape}")
    return found


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=[sync.__name__ for sync, _ in PAIRS])
def test_the_async_client_mirrors_the_sync_client(sync_cls: type, async_cls: type) -> None:
    assert differences(sync_cls, async_cls) == []


def test_the_sub_clients_of_both_clients_are_each_others_mirrors() -> None:
    sync_client = FeaturelensClient("127.0.0.1:1")
    async_client = AsyncFeaturelensClient("127.0.0.1:1")
    try:
        sync_parts = {
            name: type(value) for name, value in vars(sync_client).items() if not name.startswith("_")
        }
        async_parts = {
            name: type(value) for name, value in vars(async_client).items() if not name.startswith("_")
        }
    finally:
        sync_client.close()

    assert (
        sync_parts.keys()
        == async_parts.keys()
        == {
            "encoder",
            "sae",
            "search",
            "labelling",
            "families",
        }
    )
    for name, sync_type in sync_parts.items():
        assert (sync_type, async_parts[name]) in PAIRS


def test_both_clients_are_context_managers() -> None:
    assert hasattr(FeaturelensClient, "__enter__")
    assert hasattr(FeaturelensClient, "__exit__")
    assert inspect.iscoroutinefunction(AsyncFeaturelensClient.__aenter__)
    assert inspect.iscoroutinefunction(AsyncFeaturelensClient.__aexit__)


class Widgets:
    def list(self, *, limit: int = 10) -> list[str]:
        return []

    def stream(self, items: Iterator[str]) -> Iterator[str]:
        yield from items

    def only_here(self) -> None:
        pass


class AsyncWidgets:
    async def list(self, *, limit: int = 20) -> list[str]:
        return []

    async def stream(self, items: Iterator[str] | AsyncIterator[str]) -> AsyncIterator[str]:
        for item in items:  # type: ignore[union-attr]
            yield item


class PagedWidgets:
    def list(self) -> SyncPage[str]:
        raise NotImplementedError


class AsyncPagedWidgets:
    def list(self) -> AsyncPaginator[str]:
        raise NotImplementedError


class AsyncWidgetsNotAwaitable:
    def list(self) -> SyncPage[str]:
        raise NotImplementedError


def test_a_paged_listing_mirrors_its_sync_page_with_an_async_paginator_only() -> None:
    assert differences(PagedWidgets, AsyncPagedWidgets) == []
    not_awaitable = differences(PagedWidgets, AsyncWidgetsNotAwaitable)

    assert not_awaitable == ["AsyncWidgetsNotAwaitable.list is not async"]


def test_the_check_finds_a_missing_method_and_a_changed_default() -> None:
    found = differences(Widgets, AsyncWidgets)

    assert found[0] == "only_here is only on Widgets"
    assert len(found) == 2
    assert found[1].startswith("list:")
    assert "10" in found[1]
    assert "20" in found[1]
