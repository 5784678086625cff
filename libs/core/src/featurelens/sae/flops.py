"""Training compute of a top-k SAE in floating-point operations (FLOPs).

Conventions (one multiply-add = 2 FLOPs; B = batch, d = d_in, L = num_latents, k, k_aux and
K_m = the multi-k width; every count is per training run: per step, batch included, × steps):

``dense_equivalent`` (the main compute axis)
    The paper's recipe counted the usual way, forward × 3 for forward + backward (a matmul's
    backward is two matmuls of its size: the gradients of its input and of its weight). The
    forward per row is the encoder matmul 2·d·L plus, for each decoded code, 2·m·d for its m
    latents: the top-k code (m = k) every step, the AuxK code (m = k_aux) on the steps where
    AuxK runs, the multi-k code (m = K_m) every step when multik_coef > 0. So a step costs
    3·B·(2·d·L + 2·d·(k + k_aux + K_m)). The encoder is counted dense, backward included,
    although our implementation's encoder backward is sparse; the decoder is counted at what
    the algorithm needs (m rows of W_dec per row), not at a dense z @ W_dec, which would add
    2·B·L·d per decode for multiplying zeros.
``sparse``
    What our fast path (``TrainConfig.fast``, see ``sparse_ops``) actually computes: the dense
    encoder forward 2·B·d·L (every pre-activation is needed to choose the top k), then per
    selected group of m latents per row the encoder weight gradient 2·B·m·d, the decode
    2·B·m·d, its backward 4·B·m·d (the values' and W_dec's gradients) and b_pre's route through
    the encoder 2·L·d. The top-k and AuxK codes form one group; multi-k is a second one.
``paper_axis``
    Forward FLOPs of one row per step, × steps: ``dense_equivalent / (3·B)``. The FLOPs axis of
    the paper's scaling plots (O'Neill et al. 2024) leaves out the backward pass and the batch,
    so its numbers are smaller than ours by 3·B (3072 at B = 1024); this field puts a run on
    that axis for comparison.

Left out of all three: element-wise work (biases, ReLU, top-k selection, losses: O(B·(L + d))
per step, about 1/d of the encoder matmul), per-parameter optimiser work (decoder-gradient
projection, Adam, renormalisation: about 10 FLOPs per parameter per step, ~1% of the encoder
matmul at B = 1024) and all evaluation (validation and final statistics are not training).

AuxK is counted at its full width k_aux on every step from the dead-latent threshold on
(``auxk_steps``), as the loop schedules it: from then on the loop passes a dead mask every
step. When fewer than k_aux latents are dead, or none, the loop uses fewer or skips AuxK, so
the AuxK share is an upper bound; at k_aux = 2·k it is 2·k/(L + 3·k) of a step (7% at L = 768,
k = 32).
"""

from __future__ import annotations

from dataclasses import dataclass

from featurelens.sae.config import SaeConfig

__all__ = ["TrainingFlops", "auxk_steps", "training_flops"]


@dataclass(frozen=True)
class TrainingFlops:
    """FLOPs of one training run under the three conventions of this module's docstring."""

    dense_equivalent: int
    """The paper's recipe, dense-equivalent, forward + backward (3 × forward), batch included."""

    sparse: int
    """What our sparse training path computes, forward + backward, batch included."""

    paper_axis: int
    """Forward FLOPs of one row per step, × steps (the paper's axis: no backward, no batch)."""

    steps: int
    """Training steps counted."""

    auxk_steps: int
    """Steps on which AuxK is counted (from the dead-latent threshold on; 0 when auxk_coef is 0)."""

    batch_size: int
    """Rows per step."""

    def to_dict(self) -> dict[str, int]:
        """The fields as a JSON-ready dict."""
        return {
            "dense_equivalent": self.dense_equivalent,
            "sparse": self.sparse,
            "paper_axis": self.paper_axis,
            "steps": self.steps,
            "auxk_steps": self.auxk_steps,
            "batch_size": self.batch_size,
        }


def auxk_steps(sae_cfg: SaeConfig, *, steps: int, dead_threshold: int) -> int:
    """Steps of a run on which the training loop may run AuxK: those from step index dead_threshold on.

    dead_threshold is the run's resolved threshold (SaeConfig.dead_steps_threshold, or the
    steps per epoch when that is 0).
    """
    if sae_cfg.auxk_coef <= 0:
        return 0
    return max(0, steps - dead_threshold)


def training_flops(sae_cfg: SaeConfig, *, batch_size: int, steps: int, auxk_steps: int) -> TrainingFlops:
    """Count the FLOPs of `steps` training steps of `batch_size` rows (see the module docstring)."""
    if batch_size <= 0 or steps < 0 or not 0 <= auxk_steps <= steps:
        raise ValueError(
            f"training_flops needs batch_size > 0 and 0 <= auxk_steps <= steps, got batch_size={batch_size}, "
            f"steps={steps}, auxk_steps={auxk_steps}."
        )
    d, n_latents, k = sae_cfg.d_in, sae_cfg.num_latents, sae_cfg.k
    k_aux = sae_cfg.effective_k_aux
    multik = sae_cfg.effective_multik_k if sae_cfg.multik_coef > 0 else 0
    b = batch_size

    encoder = 2 * d * n_latents  # per row
    # Rows of W_dec decoded per row, summed over the run's steps.
    decoded = steps * (k + multik) + auxk_steps * k_aux
    forward_per_row = steps * encoder + 2 * d * decoded
    dense_equivalent = 3 * b * forward_per_row

    groups = steps * (1 + (1 if multik else 0))  # selected_pre_activations calls (b_pre route each)
    sparse = b * steps * encoder + 8 * b * d * decoded + 2 * n_latents * d * groups

    return TrainingFlops(
        dense_equivalent=dense_equivalent,
        sparse=sparse,
        paper_axis=forward_per_row,
        steps=steps,
        auxk_steps=auxk_steps,
        batch_size=batch_size,
    )
