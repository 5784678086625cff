"""The stored families, through the core's ``FamilyStore`` in a worker thread.

The store is opened when the server starts the service (``open``) and its calls block, so each
runs in one worker thread (the engine is not shared between threads). Each SAE's listing (largest
first) is read once and kept until a build or a labelling of that SAE changes it: ListFamilies
pages, GetFamily and FeatureFamilies all read from it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy.typing as npt

from featurelens.kit import NotFoundError, UnavailableError
from featurelens.store import DocumentStore
from featurelens.store.errors import StoreUnavailableError
from featurelens.store.families import FamilyRecord, FamilyStore

T = TypeVar("T")


class StoredFamilies:
    """Async access to the families of every SAE."""

    def __init__(self, open_store: Callable[[], DocumentStore]) -> None:
        self._open_store = open_store
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="families")
        self._store: DocumentStore | None = None
        self._families: FamilyStore | None = None
        self._listings: dict[str, list[FamilyRecord]] = {}

    async def open(self) -> None:
        self._store = await self._run(self._open_store)
        self._families = FamilyStore(self._store)

    async def close(self) -> None:
        if self._store is not None:
            await self._run(self._store.close)
            self._store = None
            self._families = None
        self._executor.shutdown(wait=False)

    async def unready_reason(self) -> str | None:
        """None while the family store answers; else why not (a sentence naming it)."""
        if self._store is None:
            return "its family store is not open yet"
        try:
            await self._run(self._store.list_collections)
        except StoreUnavailableError as error:
            return f"the family store is unavailable: {error}"
        return None

    @property
    def store(self) -> FamilyStore:
        if self._families is None:
            raise UnavailableError("the family service is still opening its store; retry shortly")
        return self._families

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    async def has(self, sae_id: str) -> bool:
        """Whether the SAE's families were built (there may be none)."""
        return await self._run(self.store.has, sae_id)

    async def require(self, sae_id: str) -> None:
        """NOT_FOUND, saying what to do, when the SAE's families were never built."""
        if not await self.has(sae_id):
            raise NotFoundError(
                f"SAE {sae_id!r} has no families; build them first "
                "(BuildFamilies, `featurelens families build`)"
            )

    async def listing(self, sae_id: str) -> list[FamilyRecord]:
        """Every family of the SAE, largest first (empty when never built)."""
        cached = self._listings.get(sae_id)
        if cached is None:
            cached = await self._run(self.store.all_families, sae_id)
            self._listings[sae_id] = cached
        return cached

    async def get(self, sae_id: str, family_id: str) -> FamilyRecord:
        """The family; NOT_FOUND naming the SAE when it has no such family."""
        await self.require(sae_id)
        for record in await self.listing(sae_id):
            if record.family_id == family_id:
                return record
        raise NotFoundError(f"SAE {sae_id!r} has no family {family_id!r} (ListFamilies lists its families)")

    async def replace(
        self, sae_id: str, items: Sequence[tuple[FamilyRecord, npt.ArrayLike]], dim: int
    ) -> int:
        """Make ``items`` the SAE's families (the old ones not among them are deleted)."""
        self._listings.pop(sae_id, None)
        try:
            return await self._run(self.store.replace_all, sae_id, items, dim)
        finally:
            self._listings.pop(sae_id, None)

    async def set_labels(self, sae_id: str, labels: Mapping[str, str]) -> int:
        try:
            return await self._run(self.store.set_labels, sae_id, dict(labels))
        finally:
            self._listings.pop(sae_id, None)
