"""Fixtures of the sae service tests: a models folder with two small SAEs, a served sae service."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# importlib mode puts no test folder on sys.path: make this folder's helpers (sae_testing) importable.
_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from sae_testing import Running, make_sae, save_checkpoint, serve_sae  # noqa: E402

from featurelens.sae import SparseAutoencoder  # noqa: E402
from featurelens.v1 import sae_pb2_grpc  # noqa: E402


@pytest.fixture
def sae() -> SparseAutoencoder:
    """The library SAE the default checkpoint was saved from (compare answers with it)."""
    return make_sae(seed=0)


@pytest.fixture
def models_dir(tmp_path: Path, sae: SparseAutoencoder) -> Path:
    """A models folder holding ``sae`` (marked default) and a second, different SAE."""
    models = tmp_path / "models"
    default_id = save_checkpoint(models, sae, "default")
    save_checkpoint(models, make_sae(seed=1), "other")
    (models / "default").write_text(default_id + "\n")
    return models


@pytest.fixture
def sae_id(models_dir: Path) -> str:
    return (models_dir / "default").read_text().strip()


@pytest.fixture
def other_id(models_dir: Path, sae_id: str) -> str:
    return next(p.name for p in models_dir.iterdir() if p.is_dir() and p.name != sae_id)


@pytest.fixture
def train_roots(tmp_path: Path) -> Path:
    """The one folder the served Train RPC may read embedding stores from."""
    root = tmp_path / "stores"
    root.mkdir()
    return root


@pytest.fixture
async def running(models_dir: Path, train_roots: Path) -> AsyncIterator[Running]:
    """The sae service over ``models_dir``, ready (default SAE loaded and warmed)."""
    async with serve_sae(
        models_dir, train_data_roots=[train_roots], train_progress_interval_s=0.0
    ) as running:
        yield running


@pytest.fixture
def stub(running: Running) -> sae_pb2_grpc.SaeServiceAsyncStub:
    return running.stub
