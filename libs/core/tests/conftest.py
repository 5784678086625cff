"""Shared fixtures for the core library's tests: slices of the real arXiv corpus."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from featurelens.corpus import Record, read_corpus

# pytest runs in importlib mode, which does not put test folders on sys.path; this makes the
# reusable `fake_openai` module importable from the tests here.
_TESTS_DIR = Path(__file__).resolve().parent
if str(_TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(_TESTS_DIR))

_DEFAULT_DATA_DIR = _TESTS_DIR.parents[2].parent / "shared" / "data"
SLICE_SIZE = 200


def _data_dir() -> Path:
    return Path(os.environ.get("FEATURELENS_DATA_DIR", _DEFAULT_DATA_DIR))


@pytest.fixture(scope="session")
def astro_path() -> Path:
    """The real astro-ph corpus (JSONL.gz); tests that need it are skipped where it is absent."""
    path = _data_dir() / "arxiv_astro.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"real corpus not found at {path} (set FEATURELENS_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def astro_records(astro_path: Path) -> list[Record]:
    """The first 200 records of the astro-ph corpus."""
    return list(read_corpus(astro_path, limit=SLICE_SIZE))
