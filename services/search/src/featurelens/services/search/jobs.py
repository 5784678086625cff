"""The checked settings of an indexing job (from its IndexSetup), and which server files it may read.

A job may only read files under the configured corpus roots: a path that resolves (symbolic
links followed) outside every root is refused, so a caller cannot make the server read
arbitrary files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from featurelens.kit import InvalidArgumentError
from featurelens.services.search.validation import corpus_name
from featurelens.v1 import search_pb2

#: Most documents in one batch (the encoder's default limit of texts per call).
MAX_BATCH_SIZE = 2048


@dataclass(frozen=True)
class IndexJob:
    """A checked IndexSetup."""

    corpus: str
    embedding_model: str
    sae_ids: tuple[str, ...]
    """The SAEs asked for; empty: the sae service's default SAE."""
    corpus_path: Path | None
    embeddings_path: Path | None
    batch_size: int
    limit: int
    sparse_only: bool


def server_path(value: str, roots: Sequence[Path], what: str) -> Path:
    """``value`` as a path under one of ``roots`` (relative paths: under the first root)."""
    if not roots:
        raise InvalidArgumentError(
            f"{what} names a server file, but this server reads none (FEATURELENS_SEARCH_CORPUS_ROOTS "
            "is empty); stream the documents instead"
        )
    candidate = Path(value)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    resolved = candidate.resolve()
    for root in roots:
        if resolved.is_relative_to(root.resolve()):
            if not resolved.exists():
                raise InvalidArgumentError(f"{what} {value!r} does not exist on the server")
            return resolved
    allowed = ", ".join(str(root) for root in roots)
    raise InvalidArgumentError(f"{what} {value!r} is outside the folders this server may read ({allowed})")


def check_setup(setup: search_pb2.IndexSetup, roots: Sequence[Path], default_batch_size: int) -> IndexJob:
    """An IndexJob, or InvalidArgumentError naming what is wrong with the setup."""
    corpus = corpus_name(setup.corpus)
    if setup.batch_size > MAX_BATCH_SIZE:
        raise InvalidArgumentError(f"batch_size is {setup.batch_size}; the limit is {MAX_BATCH_SIZE}")
    if any(not sae_id for sae_id in setup.sae_ids):
        raise InvalidArgumentError("sae_ids holds an empty id; leave sae_ids empty for the default SAE")
    if setup.sparse_only and (setup.corpus_path or setup.embeddings_path):
        raise InvalidArgumentError(
            "sparse_only fills SAE latents of documents already indexed from their stored embeddings; "
            "it reads no corpus_path or embeddings_path"
        )
    if setup.limit and not setup.corpus_path:
        raise InvalidArgumentError("limit applies to a corpus_path; leave it 0 when streaming documents")
    return IndexJob(
        corpus=corpus,
        embedding_model=setup.embedding_model,
        sae_ids=tuple(dict.fromkeys(setup.sae_ids)),
        corpus_path=server_path(setup.corpus_path, roots, "corpus_path") if setup.corpus_path else None,
        embeddings_path=(
            server_path(setup.embeddings_path, roots, "embeddings_path") if setup.embeddings_path else None
        ),
        batch_size=setup.batch_size or default_batch_size,
        limit=setup.limit,
        sparse_only=setup.sparse_only,
    )
