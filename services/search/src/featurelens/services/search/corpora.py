"""The document store as the servicer uses it: calls off the event loop, storage errors as
service errors, and what the service keeps in each collection's metadata.

Collection metadata (merged key by key by ``ensure_collection``): ``embedding_model`` (the
encoder model of the dense vectors) and one ``sae:<sae_id>`` entry per SAE with its
``num_latents`` and ``d_in``, so feature ids are checked without asking the sae service.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from featurelens.kit import InvalidArgumentError, NotFoundError, UnavailableError
from featurelens.kit.echo import shown
from featurelens.store import (
    CollectionInfo,
    CollectionNotFoundError,
    DocumentStore,
    InvalidQueryError,
    QueryRequest,
    ScoredPoint,
    StoreUnavailableError,
)

T = TypeVar("T")

EMBEDDING_MODEL_KEY = "embedding_model"
_SAE_KEY_PREFIX = "sae:"


@contextmanager
def _service_errors() -> Iterator[None]:
    """Storage errors as service errors."""
    try:
        yield
    except CollectionNotFoundError as error:
        raise NotFoundError(str(error)) from None
    except InvalidQueryError as error:
        raise InvalidArgumentError(str(error)) from None
    except StoreUnavailableError as error:
        raise UnavailableError(f"the document store is unavailable: {error}") from None


def sae_metadata(sae_id: str, num_latents: int, d_in: int) -> dict[str, Any]:
    """The metadata entry recording an SAE indexed in a corpus."""
    return {_SAE_KEY_PREFIX + sae_id: {"num_latents": num_latents, "d_in": d_in}}


@dataclass(frozen=True)
class Corpus:
    """One indexed corpus, as the service sees it."""

    name: str
    documents: int
    dim: int
    embedding_model: str
    sae_ids: tuple[str, ...]
    num_latents: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, info: CollectionInfo) -> Corpus:
        latents = {
            key[len(_SAE_KEY_PREFIX) :]: int(value.get("num_latents", 0))
            for key, value in info.metadata.items()
            if key.startswith(_SAE_KEY_PREFIX) and isinstance(value, dict)
        }
        return cls(
            name=info.name,
            documents=info.points,
            dim=info.dense_dim,
            embedding_model=str(info.metadata.get(EMBEDDING_MODEL_KEY, "")),
            sae_ids=info.sae_ids,
            num_latents=latents,
        )

    def require_sae(self, sae_id: str) -> int:
        """The SAE's number of latents; NotFoundError when it is not indexed in this corpus."""
        if sae_id not in self.sae_ids:
            indexed = ", ".join(self.sae_ids) or "none yet"
            raise NotFoundError(
                f"SAE {shown(sae_id)} is not indexed in corpus {self.name!r} (indexed SAEs: {indexed}); "
                "add it with IndexDocuments and sparse_only"
            )
        return self.num_latents.get(sae_id, 0)

    def check_feature(self, sae_id: str, feature: int, what: str = "feature") -> None:
        """InvalidArgumentError when ``feature`` is not a latent of the SAE."""
        num_latents = self.require_sae(sae_id)
        if num_latents and feature >= num_latents:
            raise InvalidArgumentError(
                f"{what} {feature} does not exist: SAE {sae_id!r} has latents 0 to {num_latents - 1}"
            )


class Corpora:
    """A DocumentStore called from async code: each call runs in a worker thread, except a search
    where the store's reads hold the GIL (``search``).

    ``recent`` serves the search path a corpus as read less than ``max_age_s`` ago: reading it costs
    an exact document count in the engine (3-5 ms at 60k documents, growing with the corpus) and
    a thread hop, and a search needs only its model, dimension and SAEs, which change rarely
    (this service forgets what it changes itself at once; a change made through another replica
    shows within ``max_age_s``, or at once when a search names an SAE it did not know).
    """

    def __init__(self, store: DocumentStore, max_age_s: float = 2.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self._read: dict[str, tuple[float, Corpus]] = {}

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call in a thread; storage errors become service errors."""
        with _service_errors():
            return await asyncio.to_thread(functools.partial(function, *args, **kwargs))

    async def search(self, name: str, request: QueryRequest) -> list[ScoredPoint]:
        """The store's ``query`` (every query of this service goes through here): in this thread
        where the store's reads hold the GIL for their whole length (``DocumentStore.reads_hold_gil``:
        qdrant-edge), since a worker thread would run no Python meanwhile either and only adds two
        thread wake-ups per query; in a worker thread otherwise. A long query holds up the event
        loop as long as it would have held the GIL."""
        if not self.store.reads_hold_gil:
            return await self.run(self.store.query, name, request)
        with _service_errors():
            return self.store.query(name, request)

    async def get(self, name: str) -> Corpus:
        """An indexed corpus; NotFoundError naming it when there is none of that name."""
        try:
            info = await self.run(self.store.collection_info, name)
        except NotFoundError:
            raise NotFoundError(
                f"corpus {name!r} does not exist; index it first (ListCorpora lists the indexed ones)"
            ) from None
        corpus = Corpus.of(info)
        self._read[name] = (time.monotonic(), corpus)
        return corpus

    async def recent(self, name: str) -> Corpus:
        """The corpus as read less than ``max_age_s`` ago (0: always read); its count may be stale."""
        read = self._read.get(name)
        if read is not None and time.monotonic() - read[0] < self.max_age_s:
            return read[1]
        return await self.get(name)

    def forget(self, name: str) -> None:
        """Drop what was read of a corpus (after changing its model, dimension or SAEs)."""
        self._read.pop(name, None)

    async def find(self, name: str) -> Corpus | None:
        """An indexed corpus, or None."""
        try:
            return await self.get(name)
        except NotFoundError:
            return None

    async def all(self) -> list[Corpus]:
        """Every indexed corpus, by name."""
        names = await self.run(self.store.list_collections)
        corpora = [await self.find(name) for name in names]
        return [corpus for corpus in corpora if corpus is not None]

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)
