"""Every point of a collection, page by page (an absent collection reads as empty)."""

from __future__ import annotations

from collections.abc import Iterator

from featurelens.store.errors import CollectionNotFoundError
from featurelens.store.port import DocumentStore
from featurelens.store.types import PayloadSelector, StoredPoint


def scan(store: DocumentStore, name: str, with_payload: PayloadSelector, page: int) -> Iterator[StoredPoint]:
    """The points of collection ``name`` in point-id order, ``page`` per scroll call."""
    offset: str | None = None
    while True:
        try:
            found = store.scroll(name, limit=page, offset=offset, with_payload=with_payload)
        except CollectionNotFoundError:
            return
        yield from found.points
        if found.next_offset is None:
            return
        offset = found.next_offset
