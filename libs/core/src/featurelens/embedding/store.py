"""An append-only, crash-safe, memory-mappable on-disk store of one corpus's embeddings under one model.

Layout of a store directory::

    manifest.json    format_version, model_id, dim, dtype, count, ids_bytes, source, timestamps
    embeddings.f32   row-major little-endian float32 matrix, `count` rows of `dim` values
    ids.txt          one document id per line (UTF-8), line i belongs to row i
    .lock            held (flock) by the one writer

The manifest is the commit record: an append writes the rows, then the ids, then replaces the
manifest atomically (temporary file + `os.replace`). Bytes past what the manifest counts are the
remains of an interrupted append; they are ignored, and cut off when the store is next opened for
writing, so an interrupted run resumes from the last committed batch.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
VECTORS_FILE = "embeddings.f32"
IDS_FILE = "ids.txt"
LOCK_FILE = ".lock"
_DTYPE = np.dtype("<f4")
_FINGERPRINT_CHUNK_BYTES = 8 << 20
_FINGERPRINT_DOMAIN = b"featurelens-embedding-store-v1\n"


class EmbeddingStoreError(ValueError):
    """An embedding store cannot be created, opened or appended to; the message says why."""


@dataclass(frozen=True, slots=True)
class StoreManifest:
    """The committed state of a store, as kept in `manifest.json`."""

    model_id: str
    """Id of the embedding model that produced every row."""
    dim: int
    """Embedding dimension (values per row)."""
    count: int
    """Number of committed rows."""
    ids_bytes: int
    """Length in bytes of the committed part of `ids.txt`."""
    created_at: str
    """ISO 8601 UTC time the store was created."""
    updated_at: str
    """ISO 8601 UTC time of the last committed append."""
    source_path: str | None = None
    """The corpus file the rows came from, for the record."""
    corpus_fingerprint: str | None = None
    """A caller-chosen fingerprint of that corpus (for example its sha256), for the record."""
    dtype: str = "float32"
    """Element type of `embeddings.f32`; always little-endian float32."""
    format_version: int = FORMAT_VERSION
    """Version of this on-disk layout."""

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: object, path: Path) -> StoreManifest:
        """Parse and check a manifest read from `path`; raise `EmbeddingStoreError` when it is invalid."""
        if not isinstance(data, dict):
            raise EmbeddingStoreError(f"The manifest {path} is not a JSON object.")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise EmbeddingStoreError(
                f"The manifest {path} has format_version {version!r}; this featurelens reads version "
                f"{FORMAT_VERSION} only."
            )
        if data.get("dtype") != "float32":
            dtype = data.get("dtype")
            raise EmbeddingStoreError(f"The manifest {path} has dtype {dtype!r}; expected 'float32'.")
        try:
            manifest = cls(**data)
        except TypeError as exc:
            raise EmbeddingStoreError(f"The manifest {path} has missing or unknown keys ({exc}).") from exc
        for name in ("dim", "count", "ids_bytes"):
            value = getattr(manifest, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise EmbeddingStoreError(f"The manifest {path} has an invalid {name}: {value!r}.")
        if manifest.dim == 0 or not isinstance(manifest.model_id, str) or not manifest.model_id:
            raise EmbeddingStoreError(f"The manifest {path} has an invalid model_id or dim.")
        return manifest


class EmbeddingStore:
    """Embeddings of one corpus under one model, in a directory; rows are only ever appended.

    Build one with `create`, `open` or `open_or_create`. A store opened for writing holds an exclusive
    lock on its directory until `close` (or the end of a `with` block), so two writers cannot interleave
    appends. Read-only stores take no lock and see the rows committed when they were opened.
    """

    def __init__(
        self, path: Path, manifest: StoreManifest, ids: list[str], *, lock: IO[bytes] | None, sync: bool
    ) -> None:
        """Internal: use `create`, `open` or `open_or_create`."""
        self._path = path
        self._manifest = manifest
        self._ids = ids
        self._index = {doc_id: row for row, doc_id in enumerate(ids)}
        self._lock = lock
        self._sync = sync
        self._closed = False
        self._cached_vectors: npt.NDArray[np.float32] | None = None
        self._cached_fingerprint: tuple[int, str] | None = None

    # -- construction --------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path | str,
        model_id: str,
        dim: int,
        *,
        source_path: str | None = None,
        corpus_fingerprint: str | None = None,
        sync: bool = True,
    ) -> EmbeddingStore:
        """Create an empty store in `path` (created if needed; must not already hold a store).

        `sync=False` skips the fsync calls that make each append durable across power loss (appends
        stay atomic across process crashes either way); use it for tests and scratch stores.
        """
        path = Path(path)
        if not model_id:
            raise EmbeddingStoreError("model_id must be a non-empty string.")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise EmbeddingStoreError(f"dim must be a positive integer, got {dim!r}.")
        if (path / MANIFEST_FILE).exists():
            raise EmbeddingStoreError(f"{path} already holds an embedding store; open it instead.")
        path.mkdir(parents=True, exist_ok=True)
        unexpected = sorted(p.name for p in path.iterdir() if p.name not in _STORE_FILE_NAMES)
        if unexpected:
            raise EmbeddingStoreError(
                f"Refusing to create an embedding store in {path}: the directory holds other files "
                f"({', '.join(unexpected[:5])})."
            )
        lock = _acquire_lock(path)
        try:
            # The manifest is written last: a directory without one is an unfinished create.
            for name in (VECTORS_FILE, IDS_FILE):
                with (path / name).open("wb") as handle:
                    _flush(handle, sync)
            now = _utc_now()
            manifest = StoreManifest(
                model_id=model_id,
                dim=dim,
                count=0,
                ids_bytes=0,
                created_at=now,
                updated_at=now,
                source_path=source_path,
                corpus_fingerprint=corpus_fingerprint,
            )
            _write_manifest(path, manifest, sync)
        except BaseException:
            lock.close()
            raise
        logger.info("Created embedding store %s (model %s, dim %d).", path, model_id, dim)
        return cls(path, manifest, [], lock=lock, sync=sync)

    @classmethod
    def open(cls, path: Path | str, *, read_only: bool = False, sync: bool = True) -> EmbeddingStore:
        """Open an existing store; for writing, cut off the remains of an interrupted append first."""
        path = Path(path)
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise EmbeddingStoreError(f"{path} is not an embedding store (it has no {MANIFEST_FILE}).")
        lock = None if read_only else _acquire_lock(path)
        try:
            manifest = _read_manifest(manifest_path)
            vectors_bytes = manifest.count * manifest.dim * _DTYPE.itemsize
            _check_committed_part(path / VECTORS_FILE, vectors_bytes, truncate=not read_only, sync=sync)
            _check_committed_part(path / IDS_FILE, manifest.ids_bytes, truncate=not read_only, sync=sync)
            ids = _read_ids(path / IDS_FILE, manifest)
        except BaseException:
            if lock is not None:
                lock.close()
            raise
        return cls(path, manifest, ids, lock=lock, sync=sync)

    @classmethod
    def open_or_create(
        cls,
        path: Path | str,
        model_id: str,
        dim: int,
        *,
        source_path: str | None = None,
        corpus_fingerprint: str | None = None,
        sync: bool = True,
    ) -> EmbeddingStore:
        """Open the store in `path` for writing, or create it when there is none.

        Refuses (`EmbeddingStoreError`) when the existing store holds another model's embeddings or
        another dimension, because mixing them would silently corrupt everything trained on it.
        """
        path = Path(path)
        if not (path / MANIFEST_FILE).is_file():
            return cls.create(
                path, model_id, dim, source_path=source_path, corpus_fingerprint=corpus_fingerprint, sync=sync
            )
        store = cls.open(path, sync=sync)
        if store.model_id != model_id or store.dim != dim:
            store.close()
            raise EmbeddingStoreError(
                f"The embedding store {path} holds model {store.model_id!r} (dim {store.dim}); refusing to "
                f"add embeddings of model {model_id!r} (dim {dim}). Use another directory for that model."
            )
        return store

    # -- reading -------------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The store's directory."""
        return self._path

    @property
    def manifest(self) -> StoreManifest:
        """The committed state of the store."""
        return self._manifest

    @property
    def model_id(self) -> str:
        """Id of the model whose embeddings the store holds."""
        return self._manifest.model_id

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._manifest.dim

    @property
    def read_only(self) -> bool:
        """True when the store was opened without the write lock."""
        return self._lock is None

    @property
    def ids(self) -> tuple[str, ...]:
        """Document ids in row order (a copy)."""
        return tuple(self._ids)

    def __len__(self) -> int:
        return self._manifest.count

    def __contains__(self, doc_id: object) -> bool:
        """Whether the store holds a row for `doc_id` (``doc_id in store``)."""
        return doc_id in self._index

    def done_ids(self) -> set[str]:
        """The ids that already have a row (a copy), so that a resumed run can skip them."""
        return set(self._index)

    def vectors(self) -> npt.NDArray[np.float32]:
        """All committed rows as a read-only (count, dim) float32 array, memory-mapped from disk."""
        if self._cached_vectors is None or len(self._cached_vectors) != len(self):
            if len(self) == 0:
                # numpy cannot memory-map zero bytes.
                empty = np.empty((0, self.dim), dtype=np.float32)
                empty.flags.writeable = False
                self._cached_vectors = empty
            else:
                self._cached_vectors = np.memmap(
                    self._path / VECTORS_FILE, dtype=_DTYPE, mode="r", shape=(len(self), self.dim)
                )
        return self._cached_vectors

    def get(self, ids: Sequence[str]) -> npt.NDArray[np.float32]:
        """The rows of `ids`, in that order, as a new (len(ids), dim) array; `KeyError` names a missing id."""
        missing = [doc_id for doc_id in ids if doc_id not in self._index]
        if missing:
            raise KeyError(
                f"{len(missing)} of the requested ids are not in the store {self._path}, "
                f"for example {missing[0]!r}."
            )
        rows = np.fromiter((self._index[doc_id] for doc_id in ids), dtype=np.int64, count=len(ids))
        return np.array(self.vectors()[rows], dtype=np.float32)

    def iter_batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False
    ) -> Iterator[npt.NDArray[np.float32]]:
        """Yield the committed rows as (≤ batch_size, dim) float32 arrays, in store order or shuffled.

        With `shuffle=True` the row order is a permutation drawn from `seed`, so runs are reproducible.
        With `drop_last=True` a final short batch is left out.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        vectors = self.vectors()
        count = len(vectors)
        order = np.random.default_rng(seed).permutation(count) if shuffle else None
        for start in range(0, count, batch_size):
            stop = min(start + batch_size, count)
            if drop_last and stop - start < batch_size:
                return
            if order is None:
                yield np.array(vectors[start:stop], dtype=np.float32)
            else:
                yield np.array(vectors[order[start:stop]], dtype=np.float32)

    def fingerprint(self) -> str:
        """A sha256 hex digest of the dimension, the ids in order and the vector bytes.

        Two stores with the same rows in the same order have the same fingerprint, whatever their
        paths, timestamps or model ids; any change to an id or a value changes it.
        """
        if self._cached_fingerprint is not None and self._cached_fingerprint[0] == len(self):
            return self._cached_fingerprint[1]
        digest = hashlib.sha256(_FINGERPRINT_DOMAIN)
        digest.update(f"{self.dim}\n{len(self)}\n".encode())
        committed = (
            (self._path / IDS_FILE, self._manifest.ids_bytes),
            (self._path / VECTORS_FILE, len(self) * self.dim * _DTYPE.itemsize),
        )
        for file_path, length in committed:
            for chunk in _read_prefix_chunks(file_path, length):
                digest.update(chunk)
        value = digest.hexdigest()
        self._cached_fingerprint = (len(self), value)
        return value

    # -- writing -------------------------------------------------------------------------------------

    def append(self, ids: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Append one row per id and commit them atomically.

        `vectors` must be a (len(ids), dim) array of floats (cast to float32) with finite values; ids
        must be non-empty strings without line breaks, unique, and not yet in the store. On any
        violation nothing is written and `EmbeddingStoreError` says what was wrong.
        """
        if self._lock is None:
            raise EmbeddingStoreError(f"The embedding store {self._path} was opened read-only.")
        if self._closed:
            raise EmbeddingStoreError(f"The embedding store {self._path} is closed.")
        ids = list(ids)
        rows = self._validated_rows(ids, vectors)
        if not ids:
            return
        id_bytes = "".join(f"{doc_id}\n" for doc_id in ids).encode("utf-8")
        old = self._manifest
        # Order matters for crash safety: data first, commit record (manifest) last.
        vectors_offset = old.count * self.dim * _DTYPE.itemsize
        _write_at(self._path / VECTORS_FILE, vectors_offset, rows.tobytes(), self._sync)
        _write_at(self._path / IDS_FILE, old.ids_bytes, id_bytes, self._sync)
        new = replace(
            old, count=old.count + len(ids), ids_bytes=old.ids_bytes + len(id_bytes), updated_at=_utc_now()
        )
        _write_manifest(self._path, new, self._sync)
        self._manifest = new
        for offset, doc_id in enumerate(ids):
            self._index[doc_id] = old.count + offset
        self._ids.extend(ids)

    def close(self) -> None:
        """Release the write lock; the store cannot be appended to afterwards. Safe to call twice."""
        self._closed = True
        self._cached_vectors = None
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        path = str(self._path)
        return f"EmbeddingStore({path!r}, model_id={self.model_id!r}, dim={self.dim}, count={len(self)})"

    def _validated_rows(self, ids: list[str], vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        array = np.asarray(vectors)
        if array.ndim != 2 or array.shape != (len(ids), self.dim):
            raise EmbeddingStoreError(
                f"Expected vectors of shape ({len(ids)}, {self.dim}) for {len(ids)} ids, got {array.shape}."
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise EmbeddingStoreError(f"Expected floating-point vectors, got dtype {array.dtype}.")
        # Values too large for float32 become inf here and are reported just below.
        with np.errstate(over="ignore"):
            rows = np.ascontiguousarray(array, dtype=_DTYPE)
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise EmbeddingStoreError(
                f"{len(bad)} vectors contain NaN or infinite values (as float32), the first for id "
                f"{ids[bad[0]]!r}; nothing was appended."
            )
        for doc_id in ids:
            if not isinstance(doc_id, str) or not doc_id:
                raise EmbeddingStoreError(f"Ids must be non-empty strings, got {doc_id!r}.")
            if "\n" in doc_id or "\r" in doc_id:
                raise EmbeddingStoreError(f"Id {doc_id!r} contains a line break.")
        seen: set[str] = set()
        for doc_id in ids:
            if doc_id in seen:
                raise EmbeddingStoreError(f"Id {doc_id!r} appears more than once in one append.")
            seen.add(doc_id)
        present = [doc_id for doc_id in ids if doc_id in self._index]
        if present:
            raise EmbeddingStoreError(
                f"{len(present)} ids are already in the store {self._path}, for example {present[0]!r}; "
                "skip done ids (see done_ids()) before appending."
            )
        return rows


_STORE_FILE_NAMES = frozenset({MANIFEST_FILE, VECTORS_FILE, IDS_FILE, LOCK_FILE, MANIFEST_FILE + ".tmp"})


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _acquire_lock(path: Path) -> IO[bytes]:
    handle = (path / LOCK_FILE).open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise EmbeddingStoreError(
            f"The embedding store {path} is already open for writing (by this or another process); "
            "close that first."
        ) from exc
    return handle


def _flush(handle: IO[bytes], sync: bool) -> None:
    handle.flush()
    if sync:
        os.fsync(handle.fileno())


def _write_at(path: Path, offset: int, data: bytes, sync: bool) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)
        # Drops anything left past the new end by an earlier failed append in this process.
        handle.truncate()
        _flush(handle, sync)


def _write_manifest(path: Path, manifest: StoreManifest, sync: bool) -> None:
    temporary = path / (MANIFEST_FILE + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(json.dumps(manifest.to_json(), indent=2).encode("utf-8"))
        _flush(handle, sync)
    os.replace(temporary, path / MANIFEST_FILE)
    if sync:
        # The rename itself is durable only once the directory entry is flushed.
        directory = os.open(path, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _read_manifest(path: Path) -> StoreManifest:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise EmbeddingStoreError(f"Cannot read the manifest {path}: {exc}") from exc
    return StoreManifest.from_json(data, path)


def _check_committed_part(path: Path, committed_bytes: int, *, truncate: bool, sync: bool) -> None:
    """Make sure `path` holds at least the committed bytes; cut off (or ignore) any uncommitted tail."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise EmbeddingStoreError(f"The embedding store file {path} is missing.") from exc
    if size < committed_bytes:
        raise EmbeddingStoreError(
            f"The embedding store file {path} is shorter ({size} bytes) than its manifest says "
            f"({committed_bytes} bytes); the store is damaged."
        )
    if size > committed_bytes and truncate:
        logger.warning(
            "Discarding %d bytes of an interrupted append at the end of %s.", size - committed_bytes, path
        )
        with path.open("r+b") as handle:
            handle.truncate(committed_bytes)
            _flush(handle, sync)


def _read_ids(path: Path, manifest: StoreManifest) -> list[str]:
    with path.open("rb") as handle:
        data = handle.read(manifest.ids_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EmbeddingStoreError(f"The ids file {path} is not valid UTF-8; the store is damaged.") from exc
    ids = text.split("\n")[:-1] if text else []
    if len(ids) != manifest.count or (text and not text.endswith("\n")):
        raise EmbeddingStoreError(
            f"The ids file {path} holds {len(ids)} ids but the manifest counts {manifest.count}; "
            "the store is damaged."
        )
    return ids


def _read_prefix_chunks(path: Path, length: int) -> Iterator[bytes]:
    """The first `length` bytes of `path`, in chunks."""
    with path.open("rb") as handle:
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(_FINGERPRINT_CHUNK_BYTES, remaining))
            if not chunk:
                raise EmbeddingStoreError(f"{path} ended early while fingerprinting; the store is damaged.")
            remaining -= len(chunk)
            yield chunk
