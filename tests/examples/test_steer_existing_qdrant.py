"""examples/steer_existing_qdrant.py runs end to end against a real embedded host (fast path:
the encoder and sae services only, wordllama, a random SAE, 100 abstracts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from featurelens.embedding.backends import load_backend
from featurelens.kit.launcher import start_embedded
from featurelens.sae import SaeConfig, SparseAutoencoder, save_sae
from featurelens.sae.checkpoint import make_sae_id

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "steer_existing_qdrant.py"
DATA = Path(os.environ.get("FEATURELENS_DATA_DIR", ROOT.parent / "shared" / "data")) / "arxiv_astro.jsonl.gz"


def test_example_attaches_steers_and_restores(tmp_path: Path) -> None:
    if not DATA.is_file():
        pytest.skip(f"real corpus not found at {DATA}")
    wordllama = load_backend("wordllama")
    sae = SparseAutoencoder(SaeConfig(d_in=wordllama.dim, num_latents=64, k=8), seed=0)
    sae_id = make_sae_id(sae.cfg, None, "example")
    models = tmp_path / "data" / "sae" / "models"
    save_sae(sae, models / sae_id, embedding_model=wordllama.model_id, data_fingerprint="example")
    (models / "default").write_text(sae_id + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with start_embedded(
        data_dir=tmp_path / "data",
        services=["encoder", "sae"],
        models=["wordllama"],
        env=env,
        log_path=tmp_path / "host.log",
    ) as host:
        run = subprocess.run(
            [sys.executable, str(EXAMPLE), "--address", host.address, "--docs", "100", "--data", str(DATA)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["points"] == 100
    assert figures["restored"] is True
    assert figures["dense_hits"] > 0
    assert figures["sparse_query_features"] > 0
