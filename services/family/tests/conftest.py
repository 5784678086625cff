"""Fixtures of the family tests: the search tests' real stack (wordllama encoder, an SAE trained on
real abstracts, the corpus indexed in qdrant-edge) with the labelling and family services added."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# importlib mode puts no test folder on sys.path: make the helpers of this folder, of the search
# tests, of the labelling tests and of the core tests (the fake OpenAI server) importable.
_HERE = Path(__file__).resolve().parent
_FOLDERS = (
    _HERE,
    _HERE.parents[1] / "search" / "tests",
    _HERE.parents[1] / "labelling" / "tests",
    _HERE.parents[2] / "libs" / "core" / "tests",
)
for _folder in _FOLDERS:
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import stack_fixtures  # noqa: E402
from family_testing import FamilyStack, serve_family  # noqa: E402
from search_testing import CountingBackend  # noqa: E402

from featurelens.embedding.backends import EmbeddingBackend  # noqa: E402

# The real stack's session fixtures, shared with the other services' tests: pytest takes the
# fixtures of a conftest by name.
wordllama = stack_fixtures.wordllama
records = stack_fixtures.records
models_dir = stack_fixtures.models_dir
sae_id = stack_fixtures.sae_id
indexed_edge = stack_fixtures.indexed_edge
edge_copy = stack_fixtures.edge_copy

#: Papers indexed for these tests (every 7th of the astro file).
DOCS = 1500


@pytest.fixture(scope="session")
def corpus_docs() -> int:
    return DOCS


@pytest.fixture
async def stack(
    wordllama: EmbeddingBackend, models_dir: Path, edge_copy: Path, tmp_path: Path
) -> AsyncIterator[FamilyStack]:
    """encoder, sae, search, labelling and family on loopback; families in a fresh folder."""
    async with serve_family(CountingBackend(wordllama), models_dir, edge_copy, tmp_path) as running:
        yield running
