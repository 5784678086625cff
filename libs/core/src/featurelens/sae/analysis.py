"""Evaluation of a trained SAE on a set of embeddings: reconstruction and latent statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from featurelens.sae.data import EmbeddingsLike, iter_row_batches, num_rows
from featurelens.sae.model import SparseAutoencoder

__all__ = ["DENSE_THRESHOLD", "EvalReport", "evaluate"]

DENSE_THRESHOLD = 0.1
"""A latent is dense when it fires on more than this fraction of the rows."""


@dataclass(frozen=True)
class EvalReport:
    """How well an SAE reconstructs a set of embeddings, and how often each latent fires."""

    nmse: float
    """Σ‖x̂ − x‖² / Σ‖x − mean(x)‖² over all rows (mean over the whole set)."""

    dead_fraction: float
    """Fraction of latents that never fire (activation > 0) on these rows."""

    dense_fraction: float
    """Fraction of latents that fire on more than DENSE_THRESHOLD of the rows."""

    densities: np.ndarray
    """(num_latents,) float64: fraction of rows on which each latent fires."""

    histogram_bins: list[float]
    """Edges of the log10-density histogram (dead latents, density 0, are left out of it)."""

    histogram_counts: list[int]
    """Latents per log10-density bin (len(histogram_bins) − 1 entries)."""

    num_rows: int
    """Rows evaluated."""


@torch.no_grad()
def evaluate(
    sae: SparseAutoencoder,
    embeddings: EmbeddingsLike,
    batch_size: int = 1024,
    *,
    num_bins: int = 40,
) -> EvalReport:
    """Reconstruct every row of `embeddings` (array, tensor or memmap of shape (n, d_in)) in batches."""
    n = num_rows(embeddings)
    if n == 0:
        raise ValueError("evaluate needs at least one row of embeddings.")
    counts = torch.zeros(sae.num_latents, dtype=torch.float64, device=sae.device)
    sq_err = torch.zeros((), dtype=torch.float64, device=sae.device)
    total = torch.zeros(sae.d_in, dtype=torch.float64, device=sae.device)
    total_sq = torch.zeros((), dtype=torch.float64, device=sae.device)
    for batch in iter_row_batches(embeddings, batch_size, device=sae.device, dtype=sae.dtype):
        code = sae.encode(batch)
        x_hat = sae.decode(code.values, code.indices)
        sq_err += (x_hat - batch).double().pow(2).sum()
        total += batch.double().sum(dim=0)
        total_sq += batch.double().pow(2).sum()
        counts.index_add_(0, code.indices.reshape(-1), (code.values > 0).reshape(-1).double())
    # Σ‖x − mean‖² = Σ‖x‖² − n‖mean‖², accumulated in float64.
    variance = float(total_sq - total.pow(2).sum() / n)
    nmse = float(sq_err) / variance if variance > 0 else math.inf
    densities = (counts / n).cpu().numpy()
    low = math.floor(math.log10(1.0 / n))
    edges = np.linspace(low, 0.0, num_bins + 1)
    alive = densities[densities > 0]
    hist, _ = np.histogram(np.log10(alive), bins=edges)
    return EvalReport(
        nmse=nmse,
        dead_fraction=float((densities == 0).mean()),
        dense_fraction=float((densities > DENSE_THRESHOLD).mean()),
        densities=densities,
        histogram_bins=[float(e) for e in edges],
        histogram_counts=[int(c) for c in hist],
        num_rows=n,
    )
