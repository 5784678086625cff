"""Training rows from vectors that live elsewhere: a Qdrant collection's named vector, .npy, Parquet.

Each source is read in one streaming pass into a float32 memmap of at most ``max_rows`` rows
(``sample_rows``): while the source has no more rows than that, every row in source order; past
it, a uniform reservoir sample (Algorithm R, vectorised per batch) drawn by a seeded generator, so
the same source and seed give the same rows. Memory stays bounded whatever the source's size: the
memmap (``max_rows × dim × 4`` bytes, on disk) plus one batch; a .npy is read through a
read-only memmap and a Parquet file one record batch at a time.

The SAE id's data fingerprint stays ``featurelens.sae.data.data_fingerprint`` of the rows trained
on, whatever the source: the same vectors from a collection, a file or an embedding store give
the same id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurelens.store.vectors import VectorReader

logger = logging.getLogger(__name__)

#: Rows read per batch from a file.
FILE_BATCH = 8192


class SourceError(Exception):
    """A training source that cannot be read; the message is a sentence a caller can show."""


class SourceNotFoundError(SourceError):
    """The named collection does not exist."""


class SourceInvalidError(SourceError):
    """The source exists but is not a column or vector of dense float rows."""


class SourceEmptyError(SourceError):
    """The source holds no rows."""


@dataclass(frozen=True)
class Source:
    """A checked source: its dimension, its row count (as far as known before reading) and its rows."""

    label: str
    dim: int
    rows: int
    batches: Iterable[np.ndarray]
    """Consecutive (n, dim) batches; iterated once."""


def qdrant_source(store: VectorReader, collection: str, vector_name: str) -> Source:
    """The dense vector ``vector_name`` of ``collection``, checked (names, kind, emptiness)."""
    existing = store.vector_collections()
    if collection not in existing:
        shown = ", ".join(repr(name) for name in existing) or "none"
        raise SourceNotFoundError(f"collection {collection!r} does not exist; the store has: {shown}")
    specs = store.vector_specs(collection)
    spec = next((s for s in specs if s.name == vector_name), None)
    if spec is None:
        shown = ", ".join(f"{s.name!r} ({s.kind})" for s in specs) or "none"
        raise SourceInvalidError(
            f"collection {collection!r} has no vector named {vector_name!r}; its vectors: {shown}"
        )
    if spec.dim is None:
        raise SourceInvalidError(
            f"vector {vector_name!r} of collection {collection!r} is {spec.kind}; "
            "train from a single dense vector per point"
        )
    points = store.count_points(collection)
    if points == 0:
        raise SourceEmptyError(f"collection {collection!r} holds no points yet")
    label = f"collection {collection!r}, vector {vector_name!r}"
    return Source(label, spec.dim, points, store.scroll_vectors(collection, vector_name))


def file_source(path: Path, column: str) -> Source:
    """A .npy (2-D float array) or .parquet file (``column`` of float lists)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if column:
            raise SourceInvalidError(f"{path.name} is a .npy file: it has no columns; leave the column empty")
        return _npy_source(path)
    if suffix == ".parquet":
        return _parquet_source(path, column)
    raise SourceInvalidError(f"{path.name} is neither a .npy nor a .parquet file")


def open_npy(path: Path) -> np.ndarray:
    """A .npy file memory-mapped read-only, checked to be a non-empty 2-D float array."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise SourceInvalidError(f"{path.name} cannot be read as a .npy array: {error}") from None
    if array.ndim != 2 or array.dtype.kind != "f":
        raise SourceInvalidError(
            f"{path.name} holds a {array.dtype} array of shape {array.shape}; "
            "give a 2-D float array (rows, dim)"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise SourceEmptyError(f"{path.name} holds no rows")
    return array


def _npy_source(path: Path) -> Source:
    array = open_npy(path)

    def batches() -> Iterator[np.ndarray]:
        for start in range(0, array.shape[0], FILE_BATCH):
            yield np.asarray(array[start : start + FILE_BATCH], dtype=np.float32)

    return Source(f"{path.name}", int(array.shape[1]), int(array.shape[0]), batches())


def _parquet_source(path: Path, column: str) -> Source:
    # Imported here: pyarrow takes a while to load and only Parquet sources need it.
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not column:
        raise SourceInvalidError(f"{path.name} is a Parquet file: name the column of vectors")
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        raise SourceInvalidError(f"{path.name} cannot be read as Parquet: {error}") from None
    schema = parquet.schema_arrow
    if column not in schema.names:
        raise SourceInvalidError(
            f"{path.name} has no column {column!r}; its columns: {', '.join(schema.names)}"
        )
    kind = schema.field(column).type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ) or not (pa.types.is_floating(kind.value_type)):
        raise SourceInvalidError(f"column {column!r} of {path.name} is {kind}; give a column of float lists")
    rows = parquet.metadata.num_rows
    if rows == 0:
        raise SourceEmptyError(f"{path.name} holds no rows")
    first = next(parquet.iter_batches(batch_size=1, columns=[column]))
    dim = len(first.column(0)[0])
    if dim == 0:
        raise SourceInvalidError(f"column {column!r} of {path.name} holds empty vectors")

    def batches() -> Iterator[np.ndarray]:
        for number, batch in enumerate(parquet.iter_batches(batch_size=FILE_BATCH, columns=[column])):
            values = batch.column(0)
            flat = values.flatten().to_numpy(zero_copy_only=False)
            if values.null_count or flat.size != len(values) * dim:
                raise SourceInvalidError(
                    f"column {column!r} of {path.name} has a null or a vector whose length is not {dim} "
                    f"(in batch {number} of {FILE_BATCH:,} rows)"
                )
            yield flat.astype(np.float32, copy=False).reshape(len(values), dim)

    return Source(f"{path.name}, column {column!r}", dim, rows, batches())


def sample_rows(source: Source, *, max_rows: int, seed: int, out: Path) -> np.ndarray:
    """At most ``max_rows`` rows of ``source`` in a float32 memmap at ``out`` (see the module doc).

    Raises SourceEmptyError when the source yields no rows (e.g. no point has the vector) and
    SourceInvalidError on a batch of another dimension or with a non-finite value.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    capacity = min(max_rows, source.rows) if source.rows > 0 else max_rows
    reservoir = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(capacity, source.dim))
    rng = np.random.default_rng([seed, 0x5EED])
    seen = 0
    for batch in source.batches:
        if batch.shape[1:] != (source.dim,):
            raise SourceInvalidError(f"{source.label} has a vector of dim {batch.shape[1]}, not {source.dim}")
        if not np.isfinite(batch).all():
            raise SourceInvalidError(f"{source.label} has a vector with a NaN or infinite value")
        fill = min(capacity - min(seen, capacity), len(batch))
        if fill:
            reservoir[seen : seen + fill] = batch[:fill]
        rest = batch[fill:]
        if len(rest):
            # Row number t (from 0) replaces slot j, drawn uniformly from 0..t, when j < capacity.
            slots = rng.integers(0, seen + fill + np.arange(len(rest)) + 1)
            hit = slots < capacity
            slots, rows = slots[hit], rest[hit]
            # Later rows win over earlier ones drawing the same slot (as in the one-by-one algorithm).
            _, last_first = np.unique(slots[::-1], return_index=True)
            keep = len(slots) - 1 - last_first
            reservoir[slots[keep]] = rows[keep]
        seen += len(batch)
    reservoir.flush()
    if seen == 0:
        raise SourceEmptyError(f"{source.label} yielded no vectors (no point has that vector)")
    logger.info(
        "read %d rows of dim %d from %s; kept %d", seen, source.dim, source.label, min(seen, capacity)
    )
    return reservoir[: min(seen, capacity)]
