"""Configuration of a top-k sparse autoencoder and of its training run.

Both are plain dataclasses that round-trip through JSON (`to_dict` / `from_dict`), so a
checkpoint's `config.json` says exactly how its SAE was built and trained.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["SaeConfig", "SaeConfigError", "TrainConfig"]

_DTYPES = ("float32", "float64", "bfloat16", "float16")


class SaeConfigError(ValueError):
    """A configuration value is out of range or inconsistent with another one."""


def _from_dict(cls: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SaeConfigError(f"The {what} has unknown fields {unknown}; known fields are {sorted(names)}.")
    return dict(data)


@dataclass(frozen=True)
class SaeConfig:
    """Shape and loss of a top-k sparse autoencoder (Gao et al. 2024; O'Neill et al. 2024)."""

    d_in: int
    """Dimension of the input embeddings (1536 for text-embedding-3-small, 384 for MiniLM)."""

    num_latents: int
    """Number of latents (dictionary size); the paper's main SAE has 9216 on 1536-d inputs."""

    k: int
    """Number of latents kept per input by the top-k activation (the L0 of every code)."""

    k_aux: int = 0
    """Number of dead latents used by the AuxK loss per input; 0 means 2 * k (capped at num_latents)."""

    auxk_coef: float = 1.0 / 32.0
    """Weight of the AuxK loss (dead latents reconstructing the residual); 0 switches it off."""

    dead_steps_threshold: int = 0
    """A latent is dead after this many training steps without firing; 0 means one epoch of steps."""

    multik_coef: float = 0.0
    """Weight of the multi-k loss (the reconstruction with the top multik_k latents); 0 skips it."""

    multik_k: int = 0
    """Number of latents in the multi-k reconstruction; 0 means 4 * k (capped at num_latents)."""

    @property
    def effective_k_aux(self) -> int:
        """The AuxK width after resolving the 0 default (never more than num_latents)."""
        return min(self.k_aux or 2 * self.k, self.num_latents)

    @property
    def effective_multik_k(self) -> int:
        """The multi-k width after resolving the 0 default (never more than num_latents)."""
        return min(self.multik_k or 4 * self.k, self.num_latents)

    def validate(self) -> SaeConfig:
        """Raise SaeConfigError with a sentence naming the bad field; return self when valid."""
        for name in ("d_in", "num_latents", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SaeConfigError(f"SaeConfig.{name} must be a positive integer, got {value!r}.")
        if self.k > self.num_latents:
            raise SaeConfigError(
                f"SaeConfig.k ({self.k}) cannot exceed num_latents ({self.num_latents}): "
                "top-k keeps k of the num_latents latents."
            )
        for name in ("k_aux", "dead_steps_threshold", "multik_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SaeConfigError(
                    f"SaeConfig.{name} must be a non-negative integer (0 selects the default), got {value!r}."
                )
        if self.multik_k and self.multik_k < self.k:
            raise SaeConfigError(
                f"SaeConfig.multik_k ({self.multik_k}) must be at least k ({self.k}), or 0 for 4 * k."
            )
        # An explicit width beyond the dictionary is a mistake, not a request for "all latents":
        # only the 0 defaults (2 * k, 4 * k) are quietly capped at num_latents.
        for name in ("k_aux", "multik_k"):
            value = getattr(self, name)
            if value > self.num_latents:
                raise SaeConfigError(
                    f"SaeConfig.{name} ({value}) cannot exceed num_latents ({self.num_latents}); "
                    "use 0 for the default."
                )
        for name in ("auxk_coef", "multik_coef"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise SaeConfigError(f"SaeConfig.{name} must be a finite number >= 0, got {value!r}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SaeConfig:
        """Build and validate a config from `to_dict` output."""
        return cls(**_from_dict(cls, data, "SAE config")).validate()


@dataclass(frozen=True)
class TrainConfig:
    """How an SAE is trained: optimiser, schedule, data split, device and numerics."""

    batch_size: int = 1024
    """Rows per optimisation step (the paper uses 1024); the last incomplete batch of an epoch is dropped."""

    lr: float = 1e-4
    """Adam learning rate."""

    epochs: int = 1
    """Passes over the training rows."""

    max_steps: int | None = None
    """Stop after this many steps in total, even mid-epoch (None: run all epochs)."""

    seed: int = 0
    """Seeds the initialisation, the validation split, the median sample and the shuffling."""

    val_fraction: float = 0.1
    """Fraction of rows held out for validation (chosen by seed, stable across runs); 0 disables it."""

    grad_clip: float = 1.0
    """Global gradient-norm clip applied before each Adam step; 0 disables clipping."""

    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's beta1 and beta2."""

    adam_eps: float = 1e-8
    """Adam's epsilon."""

    median_sample_size: int = 10_000
    """Rows sampled (by seed) from the training rows whose coordinate-wise median initialises b_pre."""

    fast: bool = True
    """Use the sparse training path (sparse decode and encoder gradient); False: the dense reference."""

    device: str = "cpu"
    """Torch device to train on, e.g. "cpu" or "cuda:0"."""

    dtype: str = "float32"
    """Parameter dtype: "float32" (default) or "float64" (tests); low precision belongs in use_bf16."""

    use_tf32: bool = True
    """On CUDA, allow TensorFloat-32 matmuls during training (restored afterwards); ignored on CPU."""

    use_bf16: bool = False
    """On CUDA, run the forward pass under bfloat16 autocast (parameters stay float32); ignored on CPU."""

    cuda_graph: bool = False
    """On CUDA, record the training step once as a CUDA graph and replay it (the host launches one
    graph instead of ~150 kernels a step; same results). Ignored on CPU, with input_noise and with
    fast=False. Off by default until it has run on a GPU (see featurelens.sae.cuda_graph)."""

    eval_every: int = 0
    """Also compute the validation NMSE every this many steps (0: only at the end of each epoch)."""

    checkpoint_every: int = 0
    """With a checkpoint directory, also write a resumable checkpoint every this many steps (0: end only)."""

    patience: int = 5
    """Early stopping: end the run after this many epochs in a row without a new best validation NMSE
    (0: run every epoch). Either way, with a validation split the SAE returned and saved is the one
    of the epoch with the best validation NMSE, not the last: small corpora overfit (see sizing.py)."""

    input_noise: float = 0.0
    """Standard deviation of Gaussian noise added to every coordinate of each training batch, fresh
    each step (seeded by seed and step); 0: none. A regulariser for small corpora: the SAE cannot
    memorise rows it never sees twice the same. The per-step losses are of the noisy batches; the
    validation NMSE and the final training NMSE are measured on the rows as they are. About 0.02 to
    0.06 suits unit-norm 384-d embeddings (see featurelens.sae.sizing)."""

    def validate(self) -> TrainConfig:
        """Raise SaeConfigError with a sentence naming the bad field; return self when valid."""
        for name in ("batch_size", "epochs", "median_sample_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SaeConfigError(f"TrainConfig.{name} must be a positive integer, got {value!r}.")
        if self.batch_size < 2:
            raise SaeConfigError(
                f"TrainConfig.batch_size must be at least 2 (NMSE divides by the batch's variance), "
                f"got {self.batch_size}."
            )
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps <= 0
        ):
            raise SaeConfigError(
                f"TrainConfig.max_steps must be a positive integer or None, got {self.max_steps!r}."
            )
        for name in ("seed", "eval_every", "checkpoint_every", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SaeConfigError(f"TrainConfig.{name} must be a non-negative integer, got {value!r}.")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise SaeConfigError(f"TrainConfig.lr must be a finite number > 0, got {self.lr!r}.")
        if not (0.0 <= self.val_fraction < 1.0):
            raise SaeConfigError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction!r}.")
        if not (
            isinstance(self.input_noise, int | float)
            and math.isfinite(self.input_noise)
            and 0.0 <= self.input_noise <= 1.0
        ):
            raise SaeConfigError(
                f"TrainConfig.input_noise must be a number in [0, 1] (0: none), got {self.input_noise!r}."
            )
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise SaeConfigError(
                f"TrainConfig.grad_clip must be a finite number >= 0 (0 disables it), got {self.grad_clip!r}."
            )
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise SaeConfigError(
                f"TrainConfig.adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}."
            )
        if not self.adam_eps > 0:
            raise SaeConfigError(f"TrainConfig.adam_eps must be > 0, got {self.adam_eps!r}.")
        if self.dtype not in _DTYPES:
            raise SaeConfigError(f"TrainConfig.dtype must be one of {list(_DTYPES)}, got {self.dtype!r}.")
        if not isinstance(self.device, str) or not self.device:
            raise SaeConfigError(f"TrainConfig.device must be a torch device string, got {self.device!r}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build and validate a config from `to_dict` output."""
        fields = _from_dict(cls, data, "training config")
        if "adam_betas" in fields:
            fields["adam_betas"] = tuple(fields["adam_betas"])
        return cls(**fields).validate()
