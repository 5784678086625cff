"""The checked settings of an indexing job (from its IndexSetup), and which server files it may read.

A job may only read files under the configured corpus roots, by the rules of
``featurelens.kit.paths``: a path that resolves (symbolic links followed) outside every root is
PERMISSION_DENIED, so a caller cannot make the server read arbitrary files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from featurelens.kit import InvalidArgumentError
from featurelens.kit.paths import allowed_path
from featurelens.services.search.validation import corpus_name
from featurelens.v1 import search_pb2

#: The setting that lists the folders corpus_path and embeddings_path may name.
ROOTS_SETTING = "FEATURELENS_SEARCH_CORPUS_ROOTS"
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


def check_setup(setup: search_pb2.IndexSetup, roots: Sequence[Path], default_batch_size: int) -> IndexJob:
    """An IndexJob, or the service error that says what is wrong with the setup."""
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
        corpus_path=_server_file(setup.corpus_path, roots, "corpus_path"),
        embeddings_path=_server_file(setup.embeddings_path, roots, "embeddings_path"),
        batch_size=setup.batch_size or default_batch_size,
        limit=setup.limit,
        sparse_only=setup.sparse_only,
    )


def _server_file(value: str, roots: Sequence[Path], field: str) -> Path | None:
    """The server file a setup field names (None when it names none), inside the corpus roots."""
    return allowed_path(value, roots, field=field, setting=ROOTS_SETTING) if value else None
