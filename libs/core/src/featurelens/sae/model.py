"""The top-k sparse autoencoder.

z = ReLU(topk_k(W_enc (x − b_pre) + b_lat)),  x̂ = W_decᵀ z + b_pre.

W_enc and W_dec are both stored as (num_latents, d_in), rows = latents: a row of W_dec is a
latent's unit-norm decoder direction, and a contiguous row-major W_dec is what makes the
`embedding_bag` decode fast.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featurelens.sae.config import SaeConfig
from featurelens.sae.sparse_ops import (
    TrainingWorkspace,
    needs_distinct_indices,
    selected_pre_activations,
    sparse_decode,
    sparse_decode_groups,
)

__all__ = ["EncoderOutput", "ForwardOutput", "SparseAutoencoder"]

#: Most rows ``pre_activations`` multiplies as W_enc times the rows' transpose (see there).
FEW_ROWS = 16


class EncoderOutput(NamedTuple):
    """The sparse code of a batch: k (value, latent index) pairs per row."""

    values: Tensor
    """(n, k) activations after ReLU, non-negative, in descending order within each row."""

    indices: Tensor
    """(n, k) int64 latent indices, distinct within each row."""


class ForwardOutput(NamedTuple):
    """Reconstruction and losses of one forward pass."""

    x_hat: Tensor
    """(n, d_in) reconstruction."""

    values: Tensor
    """(n, k) top-k activations after ReLU."""

    indices: Tensor
    """(n, k) int64 latent indices of `values`."""

    nmse: Tensor
    """Scalar: Σ‖x̂ − x‖² / Σ‖x − mean(x)‖² over the batch (MSE normalised by the batch-mean MSE)."""

    auxk_loss: Tensor
    """Scalar: NMSE of the dead latents' reconstruction of the residual x − x̂; 0 when none is dead."""

    multik_nmse: Tensor
    """Scalar: NMSE of the reconstruction with the top multik_k latents; 0 when multik_coef is 0."""

    loss: Tensor
    """Scalar: nmse + auxk_coef · auxk_loss + multik_coef · multik_nmse (what training minimises)."""


def _nmse(x_hat: Tensor, target: Tensor) -> Tensor:
    """Σ (x̂ − target)² / Σ (target − mean(target))²: MSE over the MSE of predicting the batch mean."""
    with torch.no_grad():
        denom = target.var(dim=0, correction=0).sum() * target.shape[0]
    # mse_loss is one fused kernel forward and backward (a few small ops otherwise, each a thread fork).
    return F.mse_loss(x_hat, target, reduction="sum") / denom


class SparseAutoencoder(nn.Module):
    """A top-k sparse autoencoder on d_in-dimensional embeddings (see the module docstring).

    Construction initialises the weights deterministically from `seed` (Xavier-uniform decoder
    directions normalised to unit norm, encoder = decoder, zero biases); call `init_pre_bias_`
    with a data sample to set b_pre to its coordinate-wise median before training.
    """

    W_enc: nn.Parameter
    b_lat: nn.Parameter
    W_dec: nn.Parameter
    b_pre: nn.Parameter

    def __init__(
        self,
        cfg: SaeConfig,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        # Drawn on CPU from a private generator: the same seed gives the same SAE on any device,
        # and the caller's global RNG is left alone.
        if torch.device(device).type == "meta":  # shapes only, e.g. to load a checkpoint into
            w_dec = torch.empty(cfg.num_latents, cfg.d_in, device=device, dtype=dtype)
        else:
            generator = torch.Generator().manual_seed(seed)
            w_dec = torch.empty(cfg.num_latents, cfg.d_in, dtype=torch.float64)
            nn.init.xavier_uniform_(w_dec, generator=generator)
            w_dec /= w_dec.norm(dim=1, keepdim=True)
            w_dec = w_dec.to(device=device, dtype=dtype)
        self.W_dec = nn.Parameter(w_dec.contiguous())
        self.W_enc = nn.Parameter(w_dec.clone())
        self.b_lat = nn.Parameter(torch.zeros(cfg.num_latents, device=device, dtype=dtype))
        self.b_pre = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=dtype))

    # -- shape ---------------------------------------------------------------------------------

    @property
    def d_in(self) -> int:
        """Input dimension."""
        return self.cfg.d_in

    @property
    def num_latents(self) -> int:
        """Number of latents."""
        return self.cfg.num_latents

    @property
    def k(self) -> int:
        """Active latents per input."""
        return self.cfg.k

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.W_dec.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the parameters."""
        return self.W_dec.dtype

    # -- initialisation and constraints -------------------------------------------------------

    @torch.no_grad()
    def init_pre_bias_(self, sample: Tensor) -> None:
        """Set b_pre to the coordinate-wise median of `sample` (n, d_in)."""
        if sample.ndim != 2 or sample.shape[1] != self.d_in or sample.shape[0] == 0:
            raise ValueError(
                f"init_pre_bias_ needs a non-empty (n, {self.d_in}) sample, got {tuple(sample.shape)}."
            )
        self.b_pre.copy_(sample.to(device=self.device, dtype=self.dtype).median(dim=0).values)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every decoder direction (row of W_dec) to unit norm, in place."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True))

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Remove from each decoder direction's gradient its component along the direction.

        With unit-norm rows, g ← g − (g·d) d keeps the step tangent to the unit sphere (Gao et al.).
        """
        grad = self.W_dec.grad
        if grad is None:
            return
        parallel = torch.einsum("ld,ld->l", self.W_dec, grad)
        grad.addcmul_(parallel.unsqueeze(1), self.W_dec, value=-1.0)

    # -- encoding and decoding ----------------------------------------------------------------

    def _as_input(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"Expected inputs of shape (n, {self.d_in}), got {tuple(x.shape)}.")
        return x.to(device=self.device, dtype=self.dtype)

    def pre_activations(self, x: Tensor) -> Tensor:
        """W_enc (x − b_pre) + b_lat for every latent: (n, num_latents).

        Up to ``FEW_ROWS`` rows (a query, a steered pair), the product is taken as W_enc times the
        rows' transpose, which reads W_enc in the order it is stored. ``benchmarks/sae_encode.py``
        (d_in 384, 6144 latents, 2 CPU cores) measured 2 rows between idle gaps, as a service sees
        queries, at 2.05 ms the other way round and 0.56 ms this way (0.57 and 0.29 ms back to back).
        """
        x = self._as_input(x)
        if x.shape[0] <= FEW_ROWS:
            return torch.addmm(self.b_lat.unsqueeze(1), self.W_enc, (x - self.b_pre).t()).t()
        return torch.addmm(self.b_lat, x - self.b_pre, self.W_enc.t())

    def encode(self, x: Tensor) -> EncoderOutput:
        """The top-k code of x: values (n, k) ≥ 0 in descending order and their int64 latent indices."""
        top = self.pre_activations(x).topk(self.k, dim=1, sorted=True)
        return EncoderOutput(F.relu(top.values), top.indices)

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        """x̂ from a sparse code: Σⱼ values[:, j] · W_dec[indices[:, j]] + b_pre, shape (n, d_in).

        Any number of (value, index) pairs per row works, repeated indices included.
        """
        if values.shape != indices.shape or values.ndim != 2:
            raise ValueError(
                "values and indices must both be (n, m); "
                f"got {tuple(values.shape)} and {tuple(indices.shape)}."
            )
        out = F.embedding_bag(indices, self.W_dec, per_sample_weights=values.to(self.dtype), mode="sum")
        return out + self.b_pre

    def decode_dense(self, z: Tensor) -> Tensor:
        """x̂ from dense latents z (n, num_latents): z @ W_dec + b_pre."""
        return z.to(self.dtype) @ self.W_dec + self.b_pre

    def decoder_directions(self, features: Tensor | list[int]) -> Tensor:
        """Unit-norm decoder directions of the given latents: (len(features), d_in)."""
        index = torch.as_tensor(features, dtype=torch.int64, device=self.device)
        return self.W_dec.index_select(0, index.reshape(-1))

    # -- training forward ----------------------------------------------------------------------

    def forward(
        self,
        x: Tensor,
        *,
        dead_mask: Tensor | None = None,
        fast: bool = True,
        workspace: TrainingWorkspace | None = None,
    ) -> ForwardOutput:
        """Encode, decode and compute the training losses for a batch x (n, d_in).

        dead_mask: (num_latents,) bool, the latents that count as dead for AuxK (None: no AuxK);
        latents selected in this batch's top-k never count as dead.
        fast: the sparse path (sparse decode, sparse encoder gradient); False is the dense
        reference (dense latents by scatter, dense decode, autograd everywhere). Both give the
        same values and gradients up to floating-point summation order.
        workspace: reuse large buffers across calls (fast path; see TrainingWorkspace).
        The returned codes are sorted by latent index within each row.
        """
        cfg = self.cfg
        x = self._as_input(x)
        k = cfg.k
        multik_k = cfg.effective_multik_k if cfg.multik_coef > 0 else 0
        zero = x.new_zeros(())
        x_centered = x - self.b_pre
        pre_buffer = None
        if fast:
            with torch.no_grad():
                shape = (x.shape[0], self.num_latents)
                # Ops with out= are not autocast, so the buffer is only for full-precision runs.
                if workspace is not None and not torch.is_autocast_enabled(x.device.type):
                    pre_buffer = workspace.take(shape, self.dtype, self.device)
                pre = torch.addmm(self.b_lat, x_centered, self.W_enc.t(), out=pre_buffer)
        else:
            pre = torch.addmm(self.b_lat, x_centered, self.W_enc.t())

        # One topk serves both: the first k of the sorted top-multik_k are the top-k.
        top = pre.topk(max(k, multik_k), dim=1, sorted=multik_k > 0)
        top_idx, top_vals = _by_index(top.indices[:, :k], top.values[:, :k])
        aux = self._select_dead(pre, top_idx, dead_mask)
        if pre_buffer is not None and workspace is not None:
            workspace.give(pre_buffer)  # everything taken from pre above is a copy

        groups = [(top_idx, top_vals)] + ([aux[:2]] if aux is not None else [])
        if fast:
            # One encoder call for the top-k and AuxK selections (disjoint per row): W_enc gets a
            # single gradient tensor.
            selected = selected_pre_activations(
                x,
                self.W_enc,
                self.b_lat,
                self.b_pre,
                torch.cat([indices for indices, _ in groups], dim=1),
                torch.cat([vals for _, vals in groups], dim=1),
                workspace=workspace,
            )
            widths = [indices.shape[1] for indices, _ in groups]
            activations = F.relu(selected).split(widths, dim=1)
            codes = [(indices, acts) for (indices, _), acts in zip(groups, activations, strict=True)]
            decoded = sparse_decode_groups(codes, self.W_dec, workspace=workspace)
        else:
            codes = [(indices, F.relu(vals)) for indices, vals in groups]
            decoded = [self._dense_decode(pre, indices, values) for indices, values in codes]

        values = codes[0][1]
        x_hat = decoded[0] + self.b_pre
        nmse = _nmse(x_hat, x)
        auxk_loss = _nmse(decoded[1], (x - x_hat).detach()) if aux is not None else zero
        if aux is not None and aux[2] is not None:
            auxk_loss = torch.where(aux[2], auxk_loss, zero)  # no dead latent: no AuxK loss

        multik_nmse = zero
        if multik_k:
            multik_idx, multik_vals = _by_index(top.indices, top.values)
            if fast:
                multik_vals = selected_pre_activations(
                    x, self.W_enc, self.b_lat, self.b_pre, multik_idx, multik_vals, workspace=workspace
                )
                multik_rec = sparse_decode(multik_idx, F.relu(multik_vals), self.W_dec, workspace=workspace)
            else:
                multik_rec = self._dense_decode(pre, multik_idx, F.relu(multik_vals))
            multik_nmse = _nmse(multik_rec + self.b_pre, x)

        loss = nmse + cfg.auxk_coef * auxk_loss + cfg.multik_coef * multik_nmse
        return ForwardOutput(x_hat, values, top_idx, nmse, auxk_loss, multik_nmse, loss)

    def _dense_decode(self, pre: Tensor, indices: Tensor, values: Tensor) -> Tensor:
        """W_decᵀ z (no b_pre) with z the dense latents, built by scatter (the reference path)."""
        z = torch.zeros_like(pre).scatter(1, indices, values)
        return z @ self.W_dec

    def _select_dead(
        self, pre: Tensor, top_idx: Tensor, dead_mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """The AuxK selection: top-k_aux pre-activations among dead latents, or None if there is none.

        Returns (indices, values, any_dead). On CPU (and in the dense reference path) the selection
        holds the dead latents only and any_dead is None. Elsewhere (CUDA) it has a fixed width,
        padded with entries of value -inf (activation 0, no gradient) when fewer than k_aux latents
        are dead, and any_dead is a 0-d bool tensor: counting the dead latents on the host would
        stop the GPU pipeline every step.
        """
        if dead_mask is None or self.cfg.auxk_coef <= 0:
            return None
        with torch.no_grad():
            dead_mask = dead_mask.to(device=self.device, dtype=torch.bool).clone()
            # A latent selected now is alive; excluding it also keeps each row's indices distinct
            # across the top-k and AuxK groups (the sparse kernels need that).
            dead_mask.index_fill_(0, top_idx.reshape(-1), False)
        if not pre.requires_grad and not needs_distinct_indices(pre):
            k_aux = min(self.cfg.effective_k_aux, self.num_latents)
            with torch.no_grad():
                vals, idx = pre.masked_fill(~dead_mask, float("-inf")).topk(k_aux, dim=1, sorted=False)
            indices, values = _by_index(idx, vals)
            return indices, values, dead_mask.any()
        with torch.no_grad():
            dead = dead_mask.nonzero().squeeze(1)
        num_dead = int(dead.numel())
        if num_dead == 0:
            return None
        k_aux = min(self.cfg.effective_k_aux, num_dead)
        if pre.requires_grad:
            vals, idx = pre.masked_fill(~dead_mask, float("-inf")).topk(k_aux, dim=1, sorted=False)
        else:
            # Reuse the pre-activations (no extra matmul); topk over the dead columns only.
            vals, local = pre.index_select(1, dead).topk(k_aux, dim=1, sorted=False)
            idx = dead[local]
        indices, values = _by_index(idx, vals)
        return indices, values, None


def _by_index(indices: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder each row by ascending latent index (canonical for the sparse kernels)."""
    indices, order = indices.sort(dim=1)
    return indices, values.gather(1, order)
