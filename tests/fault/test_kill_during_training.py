"""kill -9 of ``featurelens up`` in the middle of training an SAE, then a restart: the registry
lists only complete checkpoints, each of which loads and encodes, nothing of the killed run is
left behind, and a new run trains and registers as usual (issue 13, point 3). Marked slow: two
host starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fault_host import host, kill9, models_dir, prepare_data

from featurelens.client import FeaturelensClient, FeaturelensError, SaeConfig
from featurelens.embedding.backends import load_backend
from featurelens.embedding.store import EmbeddingStore

ROWS = 20_000


def embedding_store(path: Path) -> None:
    """Real wordllama-sized rows (random unit vectors: training only needs the shape)."""
    wordllama = load_backend("wordllama")
    rows = np.random.default_rng(0).standard_normal((ROWS, wordllama.dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    with EmbeddingStore.create(path, wordllama.model_id, wordllama.dim, sync=False) as store:
        store.append([f"row-{i}" for i in range(ROWS)], rows)


def check_every_listed_sae_loads_and_encodes(client: FeaturelensClient, d_in: int) -> list[str]:
    listed = [info.sae_id for info in client.sae.list_saes()]
    probe = np.random.default_rng(1).standard_normal((3, d_in)).astype(np.float32)
    for sae_id in listed:
        latents = client.sae.encode(probe, sae_id)
        assert latents.sae_id == sae_id
        assert len(latents) == 3
    return listed


@pytest.mark.slow
def test_after_kill_9_mid_training_the_registry_lists_only_complete_saes_that_load_and_encode(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    existing = prepare_data(data)
    store = data / "embeddings"
    embedding_store(store)
    d_in = load_backend("wordllama").dim
    log = tmp_path / "host.log"
    config = SaeConfig(num_latents=128, k=8)

    with host(data, log, ("sae",)) as first:
        client = FeaturelensClient(first.address)
        steps: list[int] = []

        def train_until_killed() -> None:
            for progress in client.sae.train(str(store), config, epochs=50, batch_size=256, timeout=600):
                steps.append(progress.progress.done)
                # A few epochs in (of 50): mid-run.
                if progress.epoch >= 2 and first.process.poll() is None:
                    kill9(first)

        with pytest.raises(FeaturelensError):
            train_until_killed()
        client.close()
    assert steps, "the kill did not land in the middle of training"

    with host(data, log, ("sae",)) as second:
        client = FeaturelensClient(second.address)
        after_restart = check_every_listed_sae_loads_and_encodes(client, d_in)
        leftovers = sorted(p.name for p in models_dir(data).iterdir() if p.name.startswith("."))
        *_, last = client.sae.train(str(store), config, max_steps=30, batch_size=256, timeout=600)
        after_training = check_every_listed_sae_loads_and_encodes(client, d_in)
        client.close()

    assert after_restart == [existing]
    assert leftovers == [], "the restart kept what the killed run left behind"
    assert last is not None
    assert last.result is not None
    assert sorted(after_training) == sorted([existing, last.result.sae_id])
