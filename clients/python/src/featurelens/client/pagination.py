"""Pages of a paged listing, in the openai-python style.

A listing call returns its first page. Iterating a page yields every item from that page on,
fetching the next pages as it goes; ``items`` holds the page's own items, and ``has_next_page``,
``get_next_page`` and ``iter_pages`` walk the pages one at a time. A page's
``next_page_token`` can be handed to the listing call later to go on from there.

```
for label in client.labelling.list_labels("sae-a"):          # every label, page after page
    ...
page = client.labelling.list_labels("sae-a", page_size=50)   # one page
first_fifty = page.items
```

The asyncio client's listing call returns an ``AsyncPaginator``: ``await`` it for the first
page, or ``async for`` over it for every item.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["AsyncPage", "AsyncPaginator", "SyncPage"]


def _no_next_page() -> RuntimeError:
    return RuntimeError("this is the last page; check has_next_page() before get_next_page()")


class SyncPage(Generic[T]):
    """One page of a listing; iterating it yields every item from this page on."""

    def __init__(self, items: Sequence[T], next_page_token: str, fetch: Callable[[str], SyncPage[T]]) -> None:
        self.items: tuple[T, ...] = tuple(items)
        """This page's items."""
        self.next_page_token = next_page_token
        """The token of the next page; empty on the last page."""
        self._fetch = fetch

    def has_next_page(self) -> bool:
        return bool(self.next_page_token)

    def get_next_page(self) -> SyncPage[T]:
        """The next page (one call); ``RuntimeError`` on the last page."""
        if not self.has_next_page():
            raise _no_next_page()
        return self._fetch(self.next_page_token)

    def iter_pages(self) -> Iterator[SyncPage[T]]:
        """This page and each page after it, fetched as the iteration reaches it."""
        page = self
        yield page
        while page.has_next_page():
            page = page.get_next_page()
            yield page

    def __iter__(self) -> Iterator[T]:
        for page in self.iter_pages():
            yield from page.items

    def __repr__(self) -> str:
        return f"SyncPage(items={len(self.items)}, next_page_token={self.next_page_token!r})"


class AsyncPage(Generic[T]):
    """One page of a listing (asyncio); ``async for`` over it yields every item from this page on."""

    def __init__(
        self, items: Sequence[T], next_page_token: str, fetch: Callable[[str], Awaitable[AsyncPage[T]]]
    ) -> None:
        self.items: tuple[T, ...] = tuple(items)
        """This page's items."""
        self.next_page_token = next_page_token
        """The token of the next page; empty on the last page."""
        self._fetch = fetch

    def has_next_page(self) -> bool:
        return bool(self.next_page_token)

    async def get_next_page(self) -> AsyncPage[T]:
        """The next page (one call); ``RuntimeError`` on the last page."""
        if not self.has_next_page():
            raise _no_next_page()
        return await self._fetch(self.next_page_token)

    async def iter_pages(self) -> AsyncIterator[AsyncPage[T]]:
        """This page and each page after it, fetched as the iteration reaches it."""
        page = self
        yield page
        while page.has_next_page():
            page = await page.get_next_page()
            yield page

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.iter_pages():
            for item in page.items:
                yield item

    def __repr__(self) -> str:
        return f"AsyncPage(items={len(self.items)}, next_page_token={self.next_page_token!r})"


class AsyncPaginator(Generic[T]):
    """What an asyncio listing call returns: ``await`` it for its first page, or ``async for`` over
    it for every item. Nothing is called until then."""

    def __init__(self, fetch: Callable[[str], Awaitable[AsyncPage[T]]], page_token: str) -> None:
        self._fetch = fetch
        self._page_token = page_token

    def __await__(self) -> Generator[object, None, AsyncPage[T]]:
        return self._fetch(self._page_token).__await__()

    async def __aiter__(self) -> AsyncIterator[T]:
        page = await self._fetch(self._page_token)
        async for item in page:
            yield item
