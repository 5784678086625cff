"""Fixtures of the search tests: wordllama, an SAE trained on real abstracts, an indexed corpus,
and the three services on loopback (a fresh copy of the indexed corpus for every test)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# importlib mode puts no test folder on sys.path: make this folder's helpers importable.
_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from search_testing import (  # noqa: E402
    CountingBackend,
    Stack,
    astro_records,
    index_corpus,
    serve_stack,
    train_default_sae,
)

from featurelens.corpus import Record  # noqa: E402
from featurelens.embedding.backends import EmbeddingBackend, load_backend  # noqa: E402
from featurelens.sae import SaeConfig, SparseAutoencoder, save_sae  # noqa: E402
from featurelens.sae.checkpoint import make_sae_id  # noqa: E402

NUM_LATENTS = 512
K = 16


@pytest.fixture(scope="session")
def wordllama() -> EmbeddingBackend:
    """The real wordllama model (loads offline from its package in well under a second)."""
    return load_backend("wordllama")


@pytest.fixture(scope="session")
def records() -> list[Record]:
    """~1,500 real astro-ph papers spread over the year."""
    return astro_records()


@pytest.fixture(scope="session")
def models_dir(
    tmp_path_factory: pytest.TempPathFactory, wordllama: EmbeddingBackend, records: list[Record]
) -> Path:
    """A models folder: an SAE trained on the papers' wordllama embeddings (the default) and a
    second, untrained SAE of another size (for adding an SAE to an indexed corpus)."""
    models = tmp_path_factory.mktemp("models")
    train_default_sae(models, wordllama, records, NUM_LATENTS, K)
    other = SparseAutoencoder(SaeConfig(d_in=wordllama.dim, num_latents=256, k=8), seed=1)
    save_sae(other, models / make_sae_id(other.cfg, None, "other"), data_fingerprint="other")
    return models


@pytest.fixture(scope="session")
def sae_id(models_dir: Path) -> str:
    """The default (trained) SAE."""
    return (models_dir / "default").read_text().strip()


@pytest.fixture(scope="session")
def other_sae_id(models_dir: Path, sae_id: str) -> str:
    return next(p.name for p in models_dir.iterdir() if p.is_dir() and p.name != sae_id)


@pytest.fixture(scope="session")
def indexed_edge(
    tmp_path_factory: pytest.TempPathFactory,
    wordllama: EmbeddingBackend,
    models_dir: Path,
    records: list[Record],
) -> Path:
    """A qdrant-edge folder holding the papers as corpus "astro", indexed through the services."""
    edge = tmp_path_factory.mktemp("indexed") / "qdrant"
    index_corpus(edge, wordllama, models_dir, records)
    return edge


@pytest.fixture
def backend(wordllama: EmbeddingBackend) -> CountingBackend:
    return CountingBackend(wordllama)


@pytest.fixture
def corpus_root(tmp_path: Path) -> Path:
    """The one server folder the search service may read corpus files from."""
    root = tmp_path / "corpora"
    root.mkdir()
    return root


@pytest.fixture
async def stack(
    backend: CountingBackend, models_dir: Path, indexed_edge: Path, tmp_path: Path, corpus_root: Path
) -> AsyncIterator[Stack]:
    """The services over a private copy of the indexed corpus."""
    edge = tmp_path / "qdrant"
    # The engine's files are sparse (32 MiB each, mostly holes): copy them as such, in milliseconds.
    subprocess.run(["cp", "-a", "--sparse=always", str(indexed_edge), str(edge)], check=True)
    async with serve_stack(backend, models_dir, edge, corpus_roots=[corpus_root]) as running:
        yield running
