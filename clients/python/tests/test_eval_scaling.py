"""The scaling part on a tiny synthetic embedding set (two sizes, one epoch): held-out NMSE beside
training NMSE for every SAE, a power law per k, and the figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from featurelens.evaluation.report import write_report
from featurelens.evaluation.scaling import ScalingOptions, load_embeddings, run_scaling

pytest.importorskip("torch")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def embeddings(tmp_path: Path) -> Path:
    """600 unit rows of dimension 16, each a sparse mix of 24 random directions."""
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(24, 16))
    codes = rng.random((600, 24)) * (rng.random((600, 24)) < 0.15)
    rows = codes @ atoms + 0.01 * rng.normal(size=(600, 16))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    path = tmp_path / "rows.npy"
    np.save(path, rows.astype(np.float32))
    return path


def test_every_sae_has_held_out_nmse_beside_training_nmse_and_a_fit_per_k(
    embeddings: Path, tmp_path: Path
) -> None:
    options = ScalingOptions(embeddings, latents=(32, 64), ks=(4,), epochs=1, batch_size=64)

    section = run_scaling(options)
    write_report(tmp_path / "report", [section], {})

    data = json.loads((tmp_path / "report" / "report.json").read_text())["sections"]["scaling"]
    assert [(r["num_latents"], r["k"]) for r in data["runs"]] == [(32, 4), (64, 4)]
    for run in data["runs"]:
        assert 0 < run["train_nmse"] < 2
        assert 0 < run["val_nmse"] < 2
        assert run["generalisation_gap"] == pytest.approx(run["val_nmse"] / run["train_nmse"] - 1)
        assert 0 <= run["dead_fraction"] <= 1
    [fit] = data["fits"]
    assert fit["k"] == 4
    assert fit["val_r2"] == pytest.approx(1.0)
    assert data["rows"] == 600
    assert data["d_in"] == 16
    assert (tmp_path / "report" / "scaling_nmse_vs_latents.png").read_bytes().startswith(PNG_MAGIC)
    assert "held-out NMSE" in section.markdown
    assert "0.12 to 0.18" in section.markdown


def test_a_scaling_sweep_without_held_out_rows_is_refused(embeddings: Path) -> None:
    with pytest.raises(ValueError, match="held-out"):
        ScalingOptions(embeddings, val_fraction=0.0)


def test_max_rows_keeps_the_first_rows(embeddings: Path) -> None:
    vectors, model_id = load_embeddings(embeddings, max_rows=100)

    assert vectors.shape == (100, 16)
    assert vectors.dtype == np.float32
    assert model_id is None
    np.testing.assert_array_equal(vectors, np.load(embeddings)[:100])


def test_a_path_that_is_no_embedding_set_is_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")

    with pytest.raises(ValueError, match=r"neither an embedding store directory nor a \.npy file"):
        load_embeddings(text)
