"""Fixtures of the explorer's browser tests: the gateway tests' real stack (wordllama encoder, an
SAE trained on ~800 real abstracts, every feature labelled, the families built) behind a real
gateway serving this folder's explorer, and one headless Debian Chromium driven by Playwright for
the whole session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# importlib mode puts no test folder on sys.path: make the helpers of this folder, of the gateway
# tests, of the search tests and of the family tests importable.
_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[2]
for _folder in (
    _HERE,
    _REPO / "services" / "gateway" / "tests",
    _REPO / "services" / "search" / "tests",
    _REPO / "services" / "family" / "tests",
):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import stack_fixtures  # noqa: E402
from browser_testing import CHROMIUM, Screenshots, open_page  # noqa: E402
from gateway_testing import RunningGateway, running_gateway  # noqa: E402
from playwright.sync_api import Browser, Page, Playwright, sync_playwright  # noqa: E402

from featurelens.embedding.backends import EmbeddingBackend  # noqa: E402

wordllama = stack_fixtures.wordllama
records = stack_fixtures.records
models_dir = stack_fixtures.models_dir
sae_id = stack_fixtures.sae_id
indexed_edge = stack_fixtures.indexed_edge

#: Papers indexed for these tests (every 7th of the astro file), as in the gateway tests.
DOCS = 800
#: The explorer under test: this checkout's files, served as they are (no build step).
EXPLORER = _REPO / "clients" / "web"
#: Screenshots of each page, kept after the run (git-ignored, as all of .featurelens/).
SCREENSHOTS = _REPO / ".featurelens" / "test-output" / "screenshots"


@pytest.fixture(scope="session")
def corpus_docs() -> int:
    return DOCS


@pytest.fixture(scope="session")
def explorer(
    wordllama: EmbeddingBackend,
    models_dir: Path,
    indexed_edge: Path,
    sae_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    """The services and a gateway serving the real explorer, for the whole session (tests only read)."""
    folder = tmp_path_factory.mktemp("explorer")
    edge = folder / "qdrant"
    subprocess.run(["cp", "-a", "--sparse=always", str(indexed_edge), str(edge)], check=True)
    with running_gateway(wordllama, models_dir, edge, folder, sae_id, static_dir=EXPLORER) as running:
        yield running


@pytest.fixture(scope="module")
def playwright(explorer: RunningGateway) -> Iterator[Playwright]:
    """Playwright's sync API, for one test module at a time: it marks an asyncio loop as running in
    this thread while it lives, so it starts after the stack is built (asyncio.run) and stops before
    another module's asyncio tests run."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure_chromium.sh (make test does)")
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium (Debian's, not Playwright's download); the tests are one module."""
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser, explorer: RunningGateway) -> Iterator[Page]:
    """A fresh page on the explorer; the test fails if the page throws a JavaScript error."""
    with open_page(browser, explorer.url) as opened:
        yield opened


@pytest.fixture(scope="session")
def screenshots() -> Screenshots:
    return Screenshots(SCREENSHOTS)
