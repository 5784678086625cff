"""Embedding a corpus into an `EmbeddingStore`, resumably."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from featurelens.corpus import Record
from featurelens.embedding.store import EmbeddingStore

logger = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], npt.NDArray[np.float32]]
"""Embeds a batch of texts into a (len(texts), dim) float array, rows in input order."""


class EmbedCorpusResult(NamedTuple):
    """What one `embed_corpus` run did."""

    embedded: int
    """Records embedded and appended by this run."""
    skipped: int
    """Records skipped because their id was already in the store (or earlier in this run)."""


def embed_corpus(
    records: Iterable[Record],
    store: EmbeddingStore,
    embed_fn: EmbedFn,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    *,
    text_of: Callable[[Record], str] | None = None,
) -> EmbedCorpusResult:
    """Embed every record whose id is not yet in `store` and append the rows in batches.

    Each batch is committed on its own, so an interrupted run loses at most one batch, and running
    again embeds only what is missing. `text_of` picks the text to embed (default:
    `Record.embedding_text`, title and body). `progress(processed, embedded)` is called after each
    committed batch and after each `batch_size` skipped records, where `processed` counts records
    embedded or skipped so far and `embedded` those embedded by this run.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    text_for = text_of if text_of is not None else _embedding_text
    done = store.done_ids()
    pending_ids: list[str] = []
    pending_texts: list[str] = []
    embedded = 0
    skipped = 0

    def flush() -> None:
        nonlocal embedded
        vectors = embed_fn(list(pending_texts))
        store.append(pending_ids, vectors)
        embedded += len(pending_ids)
        pending_ids.clear()
        pending_texts.clear()
        if progress is not None:
            progress(embedded + skipped, embedded)

    for record in records:
        if record.id in done:
            skipped += 1
            if progress is not None and skipped % batch_size == 0:
                progress(embedded + skipped, embedded)
            continue
        done.add(record.id)
        pending_ids.append(record.id)
        pending_texts.append(text_for(record))
        if len(pending_ids) >= batch_size:
            flush()
    if pending_ids:
        flush()
    if progress is not None:
        progress(embedded + skipped, embedded)
    logger.info(
        "Embedded %d records into %s (%d were already there); it now holds %d.",
        embedded,
        store.path,
        skipped,
        len(store),
    )
    return EmbedCorpusResult(embedded=embedded, skipped=skipped)


def _embedding_text(record: Record) -> str:
    return record.embedding_text
