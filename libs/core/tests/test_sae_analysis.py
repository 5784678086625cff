"""evaluate(): reconstruction NMSE and latent firing statistics."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from featurelens.sae import SaeConfig, SparseAutoencoder, evaluate


def test_evaluate_counts_firing_dead_and_dense_latents() -> None:
    sae = SparseAutoencoder(SaeConfig(d_in=8, num_latents=32, k=2), seed=0)
    with torch.no_grad():
        sae.b_lat.fill_(-10.0)
        sae.b_lat[0] = 10.0  # fires on every row: dense
        sae.b_lat[1] = 5.0  # second everywhere too
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    report = evaluate(sae, x.numpy(), batch_size=16)
    assert report.num_rows == 50
    assert report.densities[0] == report.densities[1] == 1.0
    assert report.dense_fraction == pytest.approx(2 / 32)
    assert report.dead_fraction == pytest.approx(30 / 32)
    assert sum(report.histogram_counts) == 2
    assert len(report.histogram_bins) == len(report.histogram_counts) + 1


def test_evaluate_nmse_matches_a_direct_computation() -> None:
    sae = SparseAutoencoder(SaeConfig(d_in=8, num_latents=32, k=4), seed=0, dtype=torch.float64)
    x = torch.randn(70, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        code = sae.encode(x)
        x_hat = sae.decode(code.values, code.indices)
    expected = float((x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert evaluate(sae, x, batch_size=32).nmse == pytest.approx(expected, rel=1e-9)
    densities = np.zeros(32)
    np.add.at(densities, code.indices[code.values > 0].numpy(), 1)
    np.testing.assert_allclose(evaluate(sae, x).densities, densities / 70)


def test_evaluating_a_read_only_memmap_warns_about_nothing(tmp_path: Path) -> None:
    sae = SparseAutoencoder(SaeConfig(d_in=8, num_latents=32, k=4), seed=0)
    x = np.random.default_rng(2).standard_normal((40, 8)).astype(np.float32)
    x.tofile(tmp_path / "x.f32")
    mm = np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="r", shape=x.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = evaluate(sae, mm, batch_size=16)
    assert report.nmse == pytest.approx(evaluate(sae, x, batch_size=16).nmse)
