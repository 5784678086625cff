"""Where an indexing job's documents come from: a corpus file on the server (read in a worker
thread, in batches), the client's stream (re-batched), and an embedding store's vectors."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from featurelens.corpus import CorpusError, Record, RowError, count_records, read_corpus
from featurelens.embedding import EmbeddingStore, EmbeddingStoreError
from featurelens.kit import InvalidArgumentError


async def open_embeddings(path: Path) -> EmbeddingStore:
    """The embedding store at ``path``, read-only."""
    try:
        return await asyncio.to_thread(EmbeddingStore.open, path, read_only=True)
    except EmbeddingStoreError as error:
        raise InvalidArgumentError(f"embeddings_path: {error}") from None


async def count(path: Path, limit: int) -> int:
    """The documents a job will read from a corpus file (at most ``limit`` when it is set)."""

    def counted() -> int:
        try:
            return count_records(path)
        except CorpusError as error:
            raise InvalidArgumentError(f"corpus_path: {error}") from None

    total = await asyncio.to_thread(counted)
    return min(total, limit) if limit else total


async def file_batches(
    path: Path, limit: int, batch_size: int, row_errors: list[RowError]
) -> AsyncIterator[list[Record]]:
    """Batches of a corpus file, read in a worker thread; malformed rows go to ``row_errors``."""
    records = read_corpus(path, limit=limit or None, on_error=row_errors.append)

    def next_batch() -> list[Record]:
        try:
            return list(itertools.islice(records, batch_size))
        except CorpusError as error:
            raise InvalidArgumentError(f"corpus_path: {error}") from None

    while batch := await asyncio.to_thread(next_batch):
        yield batch


async def rebatched(
    documents: AsyncIterator[Sequence[Record]] | None, batch_size: int
) -> AsyncIterator[Sequence[Record]]:
    """Streamed batches, with large ones split to ``batch_size``."""
    if documents is None:
        return
    async for batch in documents:
        for start in range(0, len(batch), batch_size):
            yield batch[start : start + batch_size]
