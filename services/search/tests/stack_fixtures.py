"""Session fixtures of a real stack on real abstracts, shared by the test folders of the services
built on search (labelling, family): wordllama, an SAE trained on the papers, the corpus indexed
in qdrant-edge, and a private copy of it per test.

A conftest imports them by name and defines ``corpus_docs`` (how many papers, every 7th of the
astro file); pytest then treats them as its own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from search_testing import astro_records, index_corpus, train_default_sae

from featurelens.corpus import Record
from featurelens.embedding.backends import EmbeddingBackend, load_backend

#: Latents and k of the SAE the papers are indexed with.
NUM_LATENTS = 256
K = 8


@pytest.fixture(scope="session")
def wordllama() -> EmbeddingBackend:
    return load_backend("wordllama")


@pytest.fixture(scope="session")
def records(corpus_docs: int) -> list[Record]:
    return astro_records(corpus_docs)


@pytest.fixture(scope="session")
def models_dir(
    tmp_path_factory: pytest.TempPathFactory, wordllama: EmbeddingBackend, records: list[Record]
) -> Path:
    models = tmp_path_factory.mktemp("models")
    train_default_sae(models, wordllama, records, NUM_LATENTS, K)
    return models


@pytest.fixture(scope="session")
def sae_id(models_dir: Path) -> str:
    return (models_dir / "default").read_text().strip()


@pytest.fixture(scope="session")
def indexed_edge(
    tmp_path_factory: pytest.TempPathFactory,
    wordllama: EmbeddingBackend,
    models_dir: Path,
    records: list[Record],
) -> Path:
    edge = tmp_path_factory.mktemp("indexed") / "qdrant"
    index_corpus(edge, wordllama, models_dir, records)
    return edge


@pytest.fixture
def edge_copy(indexed_edge: Path, tmp_path: Path) -> Path:
    """A private copy of the indexed corpus (sparse files copied as such, in milliseconds)."""
    edge = tmp_path / "qdrant"
    subprocess.run(["cp", "-a", "--sparse=always", str(indexed_edge), str(edge)], check=True)
    return edge
