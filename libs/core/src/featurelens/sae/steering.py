"""Steering primitives: move an embedding along SAE features.

- additive: x + Σᵢ wᵢ dᵢ, with dᵢ the unit-norm decoder direction of feature i;
- clamp: set feature i's activation to a value in x's sparse code (adding it when absent,
  keeping the other active latents), decode, and add back x's reconstruction error x − x̂, so
  that what the SAE does not capture is preserved.

Both accept one embedding (d_in,) or a batch (n, d_in) and return the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from featurelens.sae.model import SparseAutoencoder

__all__ = ["steer_additive", "steer_clamp"]


def _as_batch(sae: SparseAutoencoder, x: Tensor) -> tuple[Tensor, bool]:
    single = x.ndim == 1
    batch = x.unsqueeze(0) if single else x
    if batch.ndim != 2 or batch.shape[1] != sae.d_in:
        raise ValueError(
            f"Expected an embedding of shape ({sae.d_in},) or (n, {sae.d_in}), got {tuple(x.shape)}."
        )
    return batch, single


def _features_and_amounts(
    sae: SparseAutoencoder, features: Sequence[int] | Tensor, amounts: Sequence[float] | Tensor, what: str
) -> tuple[Tensor, Tensor]:
    index = torch.as_tensor(features, dtype=torch.int64, device=sae.device).reshape(-1)
    amount = torch.as_tensor(amounts, dtype=sae.dtype, device=sae.device).reshape(-1)
    if index.numel() != amount.numel():
        raise ValueError(f"Got {index.numel()} features but {amount.numel()} {what}; pass one per feature.")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= sae.num_latents):
        raise ValueError(f"Feature indices must be in [0, {sae.num_latents}); got {index.tolist()}.")
    if not bool(torch.isfinite(amount).all()):
        raise ValueError(f"Steering {what} must be finite numbers.")
    return index, amount


@torch.no_grad()
def steer_additive(
    sae: SparseAutoencoder, x: Tensor, features: Sequence[int] | Tensor, weights: Sequence[float] | Tensor
) -> Tensor:
    """x + Σᵢ weights[i] · d[features[i]] (unit decoder directions). Zero weights return x exactly."""
    batch, single = _as_batch(sae, x)
    index, weight = _features_and_amounts(sae, features, weights, "weights")
    keep = weight != 0
    if not bool(keep.any()):
        return x.clone()
    shift = weight[keep] @ sae.decoder_directions(index[keep])
    out = batch + shift.to(batch.dtype)
    return out.squeeze(0) if single else out


@torch.no_grad()
def steer_clamp(
    sae: SparseAutoencoder, x: Tensor, features: Sequence[int] | Tensor, values: Sequence[float] | Tensor
) -> Tensor:
    """Set each feature's activation to its value in x's code, re-decode, add back x − x̂."""
    batch, single = _as_batch(sae, x)
    index, value = _features_and_amounts(sae, features, values, "values")
    if index.unique().numel() != index.numel():
        raise ValueError("Each feature may be clamped once; got repeated feature indices.")
    batch_sae = batch.to(sae.dtype)
    code = sae.encode(batch_sae)
    error = batch_sae - sae.decode(code.values, code.indices)
    # Drop the clamped features from the code (value 0) and append them with their new values.
    clamped = torch.isin(code.indices, index)
    values_out = torch.cat([code.values.masked_fill(clamped, 0.0), value.expand(batch.shape[0], -1)], dim=1)
    indices_out = torch.cat([code.indices, index.expand(batch.shape[0], -1)], dim=1)
    out = (sae.decode(values_out, indices_out) + error).to(batch.dtype)
    return out.squeeze(0) if single else out
