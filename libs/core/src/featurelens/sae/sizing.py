"""Default SAE size and training length from the corpus size, for when the user gives none.

One rule, used by ``featurelens sae train``, the sae service's Train and the demo, so that the
same corpus gets the same SAE whichever way it is trained. Torch-free, like the configs.

The rule (``default_train_size``):

- ``num_latents``: at least ``ROWS_PER_LATENT`` (50) training rows per latent, rounded down to a
  multiple of 64, but never below ``LATENTS_PER_K`` (32) * k: a feature should fire on at most about
  1/32 of the documents on average, or it is a broad topic rather than a feature (at 192 latents
  and k = 32 on the demo's corpus, 96% of the latents fired on more than 10% of the documents).
- ``epochs``: enough passes to show the SAE about ``TARGET_SAMPLES`` (1,000,000) training rows,
  between 1 and ``MAX_EPOCHS`` (200). Early stopping (``TrainConfig.patience``) ends the run sooner
  when the validation NMSE stops improving, so this is a budget, not a promise.

Why: an SAE's decoder has num_latents * d_in weights to fit n_train * d_in numbers, so what decides
overfitting is training rows per latent. Measured on the demo's corpus (11,636 astro-ph abstracts,
MiniLM 384-d, k=32, batch 256, lr 5e-4; validation = 10% held-out rows), validation NMSE divided by
training NMSE was 2.26 at 3.4 rows per latent (3,072 latents, 30 epochs), 1.68 at 10 (1,024), 1.35
at 20 (512), 1.18 at 41 (256) and 1.13 at 55 (192 latents, 96 epochs; val NMSE 0.319 against 0.351
for 3,072 latents): from about 50 rows per latent the held-out error stays within 15% of the
training error. Small dictionaries keep improving on held-out rows for many epochs (val NMSE still
falling after 100 epochs at 256 latents), hence a budget in rows seen rather than a fixed epoch
count: ~1M rows is 96 epochs at the demo's 10.5k training rows, and at 270k rows (the order of the
paper's astro corpus) the rule gives 4,800 latents and 5 epochs, within the paper's 3,072 to 9,216.

The two aims conflict on small corpora: below ~50 * 32 * k training rows (51k at k = 32) the
sparsity floor wins and the held-out NMSE stays more than 15% above the training NMSE (1.68 times it
at 1,024 latents on the demo's corpus). Sparse, specific features are what the rest of featurelens
(labels, families, steering) is for, so the floor is kept; a larger corpus closes the gap.

Noise narrows the gap without giving up sparsity (``TrainConfig.input_noise``: seeded Gaussian
noise on every coordinate of each training batch, so no row is seen twice the same). On the same
corpus and recipe (k = 32, up to 200 epochs, patience 5; validation NMSE / training NMSE, both
measured on the rows without noise): 1,536 latents with noise 0.04 reach 0.301 / 0.232 (+30%),
0.055 reach 0.335 / 0.294 (+14%), 0.06 reach 0.350 / 0.315 (+11%), 0.07 reach 0.373 / 0.346 (+8%);
3,072 latents with 0.05 (100 epochs) reach 0.346 / 0.293 (+18%) and with 0.06 (300 epochs)
0.359 / 0.314 (+14%); without noise, 3,072 latents and 30 epochs reach 0.351 / 0.157 (+124%). The
demo trains 1,536 latents with noise 0.055: held-out NMSE within 15% of the training NMSE and
lower than that of the 3,072-latent SAE without noise. The rule below does not choose a noise: it
depends on the embedding model's geometry (these are for unit-norm 384-d MiniLM embeddings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "LATENTS_PER_K",
    "MAX_EPOCHS",
    "ROWS_PER_LATENT",
    "TARGET_SAMPLES",
    "TrainSize",
    "default_train_size",
]

#: Fewest training rows per latent; below it the held-out NMSE drifts away from the training NMSE.
ROWS_PER_LATENT = 50
#: Training rows the default number of epochs aims to show the SAE (early stopping may end sooner).
TARGET_SAMPLES = 1_000_000
#: Most epochs the rule chooses, so a tiny corpus does not train for ever.
MAX_EPOCHS = 200
#: Fewest latents per unit of k: with top-k, a latent fires on k / num_latents of the documents on
#: average, so this keeps the average at or below 1/32.
LATENTS_PER_K = 32
#: num_latents is a multiple of this (friendly to matmul kernels, and easy to read).
_LATENT_STEP = 64


@dataclass(frozen=True)
class TrainSize:
    """The default size and length of a training run (see ``default_train_size``)."""

    num_latents: int
    """Number of latents (dictionary size)."""
    epochs: int
    """Passes over the training rows (an upper bound: early stopping may end the run sooner)."""


def default_train_size(n_rows: int, *, k: int, val_fraction: float = 0.1) -> TrainSize:
    """num_latents and epochs for ``n_rows`` embeddings, of which ``val_fraction`` is held out.

    ``k`` is the top-k width: num_latents is never below ``LATENTS_PER_K`` * k (rounded up to a
    multiple of 64).
    The held-out rows are not counted, as train_sae holds round(n_rows * val_fraction) of them out.
    """
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows <= 0:
        raise ValueError(f"n_rows must be a positive integer, got {n_rows!r}.")
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
    n_train = max(1, n_rows - round(n_rows * val_fraction))
    by_rows = n_train // (ROWS_PER_LATENT * _LATENT_STEP) * _LATENT_STEP
    smallest = math.ceil(LATENTS_PER_K * k / _LATENT_STEP) * _LATENT_STEP
    epochs = min(MAX_EPOCHS, max(1, math.ceil(TARGET_SAMPLES / n_train)))
    return TrainSize(num_latents=max(by_rows, smallest), epochs=epochs)
