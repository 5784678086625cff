"""Fixtures of the family tests: the search tests' real stack (wordllama encoder, an SAE trained on
real abstracts, the corpus indexed in qdrant-edge) with the labelling and family services added."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# importlib mode puts no test folder on sys.path: make the helpers of this folder, of the search
# tests and of the labelling tests importable.
_HERE = Path(__file__).resolve().parent
for _folder in (_HERE, _HERE.parents[1] / "search" / "tests", _HERE.parents[1] / "labelling" / "tests"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from family_testing import FamilyStack, serve_family  # noqa: E402
from search_testing import CountingBackend, astro_records, index_corpus, train_default_sae  # noqa: E402

from featurelens.corpus import Record  # noqa: E402
from featurelens.embedding.backends import EmbeddingBackend, load_backend  # noqa: E402

#: Papers indexed for these tests (every 7th of the astro file), latents and k of their SAE.
DOCS = 1500
NUM_LATENTS = 256
K = 8


@pytest.fixture(scope="session")
def wordllama() -> EmbeddingBackend:
    return load_backend("wordllama")


@pytest.fixture(scope="session")
def records() -> list[Record]:
    return astro_records(DOCS)


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


@pytest.fixture
async def stack(
    wordllama: EmbeddingBackend, models_dir: Path, edge_copy: Path, tmp_path: Path
) -> AsyncIterator[FamilyStack]:
    """encoder, sae, search, labelling and family on loopback; families in a fresh folder."""
    async with serve_family(CountingBackend(wordllama), models_dir, edge_copy, tmp_path) as running:
        yield running
