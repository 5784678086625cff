"""Fixtures of the gateway tests: the search tests' real stack (wordllama encoder, an SAE trained
on real abstracts, the corpus indexed in qdrant-edge) with labelling and family added, every
feature labelled and the families built, behind a real gateway on loopback, once per session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# importlib mode puts no test folder on sys.path: make the helpers of this folder, of the search
# tests and of the family tests importable.
_HERE = Path(__file__).resolve().parent
for _folder in (_HERE, _HERE.parents[1] / "search" / "tests", _HERE.parents[1] / "family" / "tests"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import fuzz_http  # noqa: E402
import stack_fixtures  # noqa: E402
from gateway_testing import RunningGateway, running_gateway  # noqa: E402

from featurelens.embedding.backends import EmbeddingBackend  # noqa: E402

# The real stack's session fixtures, shared with the other services' tests: pytest takes the
# fixtures of a conftest by name.
wordllama = stack_fixtures.wordllama
records = stack_fixtures.records
models_dir = stack_fixtures.models_dir
sae_id = stack_fixtures.sae_id
indexed_edge = stack_fixtures.indexed_edge

#: Papers indexed for these tests (every 7th of the astro file).
DOCS = 800


@pytest.fixture(scope="session")
def corpus_docs() -> int:
    return DOCS


@pytest.fixture(scope="session")
def gateway(
    wordllama: EmbeddingBackend,
    models_dir: Path,
    indexed_edge: Path,
    sae_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    """The services and a gateway in front of them, for the whole session (the tests only read)."""
    folder = tmp_path_factory.mktemp("gateway")
    edge = folder / "qdrant"
    subprocess.run(["cp", "-a", "--sparse=always", str(indexed_edge), str(edge)], check=True)
    with running_gateway(wordllama, models_dir, edge, folder, sae_id) as running:
        yield running


@pytest.fixture
def http(gateway: RunningGateway) -> Iterator[httpx.Client]:
    """An HTTP client of the running gateway."""
    with httpx.Client(base_url=gateway.url, timeout=60.0) as client:
        yield client


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The count of what the gateway's fuzz tests sent, by endpoint and HTTP status."""
    fuzz_http.terminal_summary(terminalreporter, config)
