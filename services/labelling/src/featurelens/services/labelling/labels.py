"""The stored labels, through the core's ``LabelStore`` in a worker thread.

The store is opened when the server starts the service (``open``) and its calls block, so each
runs in one worker thread (the engine is not shared between threads). Listings (best score
first) are sorted once per SAE and kept until a label of that SAE changes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

from featurelens.interp.records import LabelRecord
from featurelens.interp.types import Vector
from featurelens.kit import NotFoundError, UnavailableError
from featurelens.store import DocumentStore
from featurelens.store.errors import StoreUnavailableError
from featurelens.store.labels import LabelStore

T = TypeVar("T")


def listing_order(record: LabelRecord) -> tuple[int, float, int]:
    """Best first: defined pearson_r from high to low, undefined last; then by feature."""
    if record.pearson_r is None:
        return (1, 0.0, record.feature)
    return (0, -record.pearson_r, record.feature)


class Labels:
    """Async access to the labels of every SAE."""

    def __init__(self, open_store: Callable[[], DocumentStore]) -> None:
        self._open_store = open_store
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="labels")
        self._store: DocumentStore | None = None
        self._labels: LabelStore | None = None
        self._listings: dict[str, list[LabelRecord]] = {}

    async def open(self) -> None:
        self._store = await self._run(self._open_store)
        self._labels = LabelStore(self._store)

    async def close(self) -> None:
        if self._store is not None:
            await self._run(self._store.close)
            self._store = None
            self._labels = None
        self._executor.shutdown(wait=False)

    async def unready_reason(self) -> str | None:
        """None while the label store answers; else why not (a sentence naming it)."""
        if self._store is None:
            return "its label store is not open yet"
        try:
            await self._run(self._store.list_collections)
        except StoreUnavailableError as error:
            return f"the label store is unavailable: {error}"
        return None

    @property
    def store(self) -> LabelStore:
        if self._labels is None:
            raise UnavailableError("the labelling service is still opening its label store; retry shortly")
        return self._labels

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    async def ensure(self, sae_id: str, dim: int) -> None:
        await self._run(self.store.ensure, sae_id, dim)

    async def put(self, record: LabelRecord, vector: Vector) -> None:
        await self._run(self.store.put, record.sae_id, [(record, vector)])
        self._listings.pop(record.sae_id, None)

    async def has(self, sae_id: str) -> bool:
        """Whether the SAE has a labels collection (it has been labelled at least once)."""
        return await self._run(self.store.has, sae_id)

    async def require(self, sae_id: str) -> None:
        """NOT_FOUND, saying what to do, when the SAE has no labels at all."""
        if not await self.has(sae_id):
            raise NotFoundError(
                f"SAE {sae_id!r} has no labels; label its features first (LabelFeatures, `featurelens label`)"
            )

    async def labelled(self, sae_id: str) -> set[int]:
        return await self._run(self.store.labelled_features, sae_id)

    async def get(self, sae_id: str, features: Sequence[int]) -> list[LabelRecord]:
        return await self._run(self.store.get, sae_id, list(features))

    async def listing(self, sae_id: str) -> list[LabelRecord]:
        """Every label of the SAE, best first."""
        cached = self._listings.get(sae_id)
        if cached is None:
            records = await self._run(self.store.all_labels, sae_id)
            cached = sorted(records, key=listing_order)
            self._listings[sae_id] = cached
        return cached

    async def search(self, sae_id: str, vector: Vector, top_k: int) -> list[tuple[LabelRecord, float]]:
        return await self._run(self.store.search, sae_id, vector, top_k)

    async def substring(self, sae_id: str, text: str, limit: int) -> list[LabelRecord]:
        return await self._run(self.store.substring, sae_id, text, limit)
