"""Fixtures of the labelling tests: the search tests' real stack (wordllama encoder, an SAE
trained on real abstracts, the corpus indexed in qdrant-edge) with the labelling service added,
and the core's fake OpenAI-compatible server for the LLM path."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# importlib mode puts no test folder on sys.path: make the helpers of this folder, of the search
# tests and of the core tests (the fake OpenAI server) importable.
_HERE = Path(__file__).resolve().parent
for _folder in (_HERE, _HERE.parents[1] / "search" / "tests", _HERE.parents[2] / "libs" / "core" / "tests"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import stack_fixtures  # noqa: E402
from labelling_testing import LabellingStack, serve_labelling  # noqa: E402
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

REDIS_URL = "redis://127.0.0.1:6379/0"
#: Papers indexed for these tests (every 7th of the astro file).
DOCS = 800


@pytest.fixture(scope="session")
def corpus_docs() -> int:
    return DOCS


@pytest.fixture
async def stack(
    wordllama: EmbeddingBackend, models_dir: Path, edge_copy: Path, tmp_path: Path
) -> AsyncIterator[LabellingStack]:
    """encoder, sae, search and labelling on loopback; labels in a fresh folder; offline labeller."""
    async with serve_labelling(
        CountingBackend(wordllama), models_dir, edge_copy, tmp_path / "labels"
    ) as running:
        yield running


@pytest.fixture
async def cached_stack(
    wordllama: EmbeddingBackend, models_dir: Path, edge_copy: Path, tmp_path: Path
) -> AsyncIterator[LabellingStack]:
    """The services with the LLM answer cache in the real Redis."""
    async with serve_labelling(
        CountingBackend(wordllama),
        models_dir,
        edge_copy,
        tmp_path / "labels",
        redis_url=REDIS_URL,
        llm_max_retries=3,
    ) as running:
        yield running
