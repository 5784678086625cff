"""Training loop for the top-k SAE (the recipe of Gao et al. 2024 / O'Neill et al. 2024).

Each step: forward (NMSE + AuxK on dead latents) → backward → remove the decoder gradient's
component along each decoder direction → clip the global gradient norm → Adam → renormalise the
decoder directions. Deterministic under TrainConfig.seed on CPU; resumable from a checkpoint;
cancellable between steps. Side effects (progress, metrics, checkpoints) go through callbacks.

With a validation split, the validation NMSE at each epoch's end decides which weights the run
returns: those of the best epoch, not the last (on small corpora the training NMSE keeps falling
long after the held-out NMSE has stopped), and TrainConfig.patience epochs without a new best end
the run early.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from featurelens.sae.analysis import EvalReport, evaluate
from featurelens.sae.checkpoint import (
    SaeCheckpointError,
    load_sae,
    load_train_state,
    make_sae_id,
    read_checkpoint,
    save_sae,
)
from featurelens.sae.config import SaeConfig, SaeConfigError, TrainConfig
from featurelens.sae.cuda_graph import GraphedStep
from featurelens.sae.data import (
    EmbeddingsLike,
    data_fingerprint,
    derived_seed,
    epoch_permutation,
    gather_rows,
    num_rows,
    split_rows,
)
from featurelens.sae.model import SparseAutoencoder
from featurelens.sae.sparse_ops import TrainingWorkspace

__all__ = ["EpochMetrics", "StepMetrics", "TrainCallbacks", "TrainResult", "train_sae"]

logger = logging.getLogger(__name__)

# Most points of the training curve written to metrics.json (the full curve stays in TrainResult).
_MAX_CURVE_POINTS = 1000
# The SAE's parameters, copied when an epoch sets a new best validation NMSE.
_WEIGHTS = ("W_enc", "b_lat", "W_dec", "b_pre")


@dataclass(frozen=True)
class StepMetrics:
    """Progress reported every TrainCallbacks.step_every steps (losses averaged over those steps)."""

    step: int
    """Steps completed so far."""
    total_steps: int
    """Steps the run will take if not cancelled."""
    epoch: int
    """Epoch of the latest step (0-based)."""
    loss: float
    """Mean total loss (nmse + weighted AuxK / multi-k) over the steps since the last report."""
    nmse: float
    """Mean training-batch NMSE over the steps since the last report."""
    auxk_loss: float
    """Mean AuxK loss over the steps since the last report (0 while no latent is dead)."""
    dead_fraction: float
    """Fraction of latents that have not fired for dead_steps_threshold steps."""
    samples_per_s: float
    """Training throughput since the run (or resume) started, validation time excluded."""
    eta_s: float
    """Estimated seconds to finish at that throughput."""


@dataclass(frozen=True)
class EpochMetrics:
    """Reported at the end of each epoch."""

    epoch: int
    """The epoch that ended (0-based)."""
    step: int
    """Steps completed so far."""
    train_nmse: float
    """Mean training-batch NMSE over the epoch's steps (those run in this process)."""
    val_nmse: float | None
    """NMSE on the validation rows (None without a validation split)."""
    dead_fraction: float
    """Fraction of latents that have not fired for dead_steps_threshold steps."""
    best_val_nmse: float | None = None
    """The best validation NMSE so far, this epoch's included (the weights the run will return)."""
    best_epoch: int | None = None
    """The epoch (0-based) of best_val_nmse."""


@dataclass
class TrainCallbacks:
    """Side effects of a training run; every callback is optional."""

    on_step: Callable[[StepMetrics], None] | None = None
    """Called every step_every steps and after the last step."""
    on_epoch_end: Callable[[EpochMetrics], None] | None = None
    """Called after each epoch (and its validation)."""
    on_checkpoint: Callable[[Path], None] | None = None
    """Called with the directory after each checkpoint is written."""
    step_every: int = 10
    """How often on_step is called, in steps."""


@dataclass
class TrainResult:
    """The trained SAE and what happened while training it."""

    sae: SparseAutoencoder
    """The trained (or partially trained, if cancelled) SAE."""
    sae_id: str
    """Deterministic id from the SAE config, the training recipe and the data fingerprint."""
    data_fingerprint: str
    """sha256 of the training embeddings."""
    steps: int
    """Steps completed."""
    total_steps: int
    """Steps the full run takes."""
    cancelled: bool
    """True when should_stop ended the run early."""
    train_curve: list[tuple[int, float, float]]
    """(step, loss, nmse) for every step run in this process (and before, when resumed)."""
    val_curve: list[tuple[int, int, float]]
    """(epoch, step, validation NMSE) at each epoch end and every eval_every steps."""
    final_train: EvalReport | None
    """Evaluation on the training rows at the end (None when cancelled)."""
    final_val: EvalReport | None
    """Evaluation on the validation rows at the end (None when cancelled or without a split)."""
    dead_fraction: float
    """Fraction of latents dead by the training criterion (not fired for dead_steps_threshold steps)."""
    steps_since_fired: Tensor
    """(num_latents,) int64: steps since each latent last fired."""
    train_seconds: float
    """Wall time spent in training steps (validation, evaluation and checkpoints excluded)."""
    steps_this_run: int
    """Steps run by this call (steps minus the resumed step)."""
    batch_size: int
    """Rows per step."""
    checkpoint_path: Path | None = None
    """The last checkpoint written, if any."""
    best_epoch: int | None = None
    """The epoch (0-based) whose weights `sae` holds: the best validation NMSE (None without a split)."""
    best_step: int | None = None
    """Steps completed at the end of best_epoch."""
    stopped_early: bool = False
    """True when TrainConfig.patience epochs without a new best validation NMSE ended the run."""

    @property
    def samples_per_s(self) -> float:
        """Training throughput of this call's steps."""
        return self.steps_this_run * self.batch_size / self.train_seconds if self.train_seconds else 0.0


@dataclass
class _Best:
    """The epoch with the lowest validation NMSE so far, and a copy of its weights."""

    val_nmse: float
    epoch: int
    step: int
    weights: dict[str, Tensor]


@dataclass
class _State:
    """Everything a resumed run needs besides the model and optimiser."""

    step: int
    steps_since_fired: Tensor
    train_curve: list[tuple[int, float, float]]
    val_curve: list[tuple[int, int, float]]
    best: _Best | None = None
    epochs_since_best: int = 0


def _uses_cuda_graph(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the step is replayed as a CUDA graph (see featurelens.sae.cuda_graph)."""
    return cfg.cuda_graph and cfg.fast and device.type == "cuda" and cfg.input_noise == 0


def _optimizer(sae: SparseAutoencoder, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam, fused where torch has a fused kernel for this device and dtype (much faster on CPU too);
    capturable (step counters on the device) when the step is a CUDA graph."""
    kwargs: dict[str, Any] = {"lr": cfg.lr, "betas": cfg.adam_betas, "eps": cfg.adam_eps}
    if _uses_cuda_graph(cfg, sae.device):
        kwargs["capturable"] = True
    try:
        return torch.optim.Adam(sae.parameters(), fused=True, **kwargs)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(sae.parameters(), foreach=True, **kwargs)


@contextlib.contextmanager
def _numerics(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """TF32 for the run on CUDA (the global flag is restored afterwards)."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = cfg.use_tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def _downsample(curve: list[tuple[int, float, float]]) -> list[list[float]]:
    stride = max(1, math.ceil(len(curve) / _MAX_CURVE_POINTS))
    points = curve[::stride]
    if curve and points[-1] != curve[-1]:
        points.append(curve[-1])
    return [[s, round(loss, 6), round(nmse, 6)] for s, loss, nmse in points]


def _metrics_json(
    result_fields: dict[str, Any], final_train: EvalReport | None, final_val: EvalReport | None
) -> dict[str, Any]:
    metrics: dict[str, Any] = dict(result_fields)
    if final_train is not None:
        metrics.update(
            final_train_nmse=final_train.nmse,
            dead_fraction=final_train.dead_fraction,
            dense_fraction=final_train.dense_fraction,
            latent_densities=[float(f"{d:.4g}") for d in final_train.densities],
            density_histogram={"bins": final_train.histogram_bins, "counts": final_train.histogram_counts},
        )
    if final_val is not None:
        metrics["final_val_nmse"] = final_val.nmse
    return metrics


def batch_noise(batch: Tensor, seed: int, step: int) -> Tensor:
    """Standard normal noise shaped like ``batch``, the same for the same seed and step (so a resumed
    run adds what an uninterrupted one would)."""
    generator = torch.Generator(device=batch.device)
    generator.manual_seed((seed * 1_000_003 + step) % 2**63)
    return torch.randn(batch.shape, generator=generator, device=batch.device, dtype=batch.dtype)


def _weights(sae: SparseAutoencoder) -> dict[str, Tensor]:
    """A copy of the SAE's parameters (on their device)."""
    return {name: getattr(sae, name).detach().clone() for name in _WEIGHTS}


def _load_weights(sae: SparseAutoencoder, weights: dict[str, Tensor]) -> None:
    """Copy `weights` into the SAE's parameters in place (keeping their layout and the optimiser's hold)."""
    with torch.no_grad():
        for name in _WEIGHTS:
            getattr(sae, name).copy_(weights[name])


def train_sae(
    embeddings: EmbeddingsLike,
    sae_cfg: SaeConfig,
    train_cfg: TrainConfig,
    *,
    callbacks: TrainCallbacks | None = None,
    resume_from: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    embedding_model: str | None = None,
) -> TrainResult:
    """Train a top-k SAE on `embeddings` (n, d_in): numpy array, memmap or tensor.

    A validation split (val_fraction of the rows, chosen by seed) is held out; the rest is copied
    to train_cfg.device once. The validation NMSE is measured at each epoch's end; the returned
    (and saved) SAE has the weights of the epoch with the lowest one, and train_cfg.patience epochs
    in a row without a new lowest end the run early. With checkpoint_dir, a resumable checkpoint is
    written there every checkpoint_every steps, when cancelled and at the end. resume_from continues
    a run from such a checkpoint (same SAE config, recipe and data; epochs, max_steps and patience
    may change): the result is the same as an uninterrupted run. should_stop is polled before each
    step; when it returns True the run stops cleanly and the partial result (the last step's
    weights) is returned with cancelled=True.
    """
    sae_cfg.validate()
    train_cfg.validate()
    resume_from = Path(resume_from) if resume_from is not None else None
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    callbacks = callbacks or TrainCallbacks()
    if callbacks.step_every <= 0:
        raise SaeConfigError(f"TrainCallbacks.step_every must be positive, got {callbacks.step_every}.")
    device = torch.device(train_cfg.device)
    dtype = getattr(torch, train_cfg.dtype)
    n = num_rows(embeddings)
    if embeddings.shape[1] != sae_cfg.d_in:
        raise SaeConfigError(
            f"The embeddings have dimension {embeddings.shape[1]} but SaeConfig.d_in is {sae_cfg.d_in}."
        )
    fingerprint = data_fingerprint(embeddings)
    sae_id = make_sae_id(sae_cfg, train_cfg, fingerprint)
    train_rows, val_rows = split_rows(n, train_cfg.val_fraction, train_cfg.seed)
    n_train = train_rows.numel()
    if n_train < 2:
        raise SaeConfigError(
            f"Training needs at least 2 training rows; {n} rows leave {n_train} after the split."
        )
    batch_size = min(train_cfg.batch_size, n_train)
    steps_per_epoch = n_train // batch_size
    total_steps = train_cfg.epochs * steps_per_epoch
    if train_cfg.max_steps is not None:
        total_steps = min(total_steps, train_cfg.max_steps)
    dead_threshold = sae_cfg.dead_steps_threshold or steps_per_epoch

    train_x = gather_rows(embeddings, train_rows, device=device, dtype=dtype)
    val_x = gather_rows(embeddings, val_rows, device=device, dtype=dtype) if val_rows.numel() else None

    if resume_from is not None:
        sae, optimizer, state = _resume(resume_from, sae_cfg, train_cfg, fingerprint, device, dtype)
    else:
        sae = SparseAutoencoder(sae_cfg, device=device, dtype=dtype, seed=train_cfg.seed)
        sample_gen = torch.Generator().manual_seed(derived_seed(train_cfg.seed, "median-sample"))
        sample = torch.randperm(n_train, generator=sample_gen)[: train_cfg.median_sample_size]
        sae.init_pre_bias_(train_x.index_select(0, sample.to(device)))
        optimizer = _optimizer(sae, train_cfg)
        state = _State(0, torch.zeros(sae_cfg.num_latents, dtype=torch.int64, device=device), [], [])

    params = list(sae.parameters())
    workspace = TrainingWorkspace() if train_cfg.fast else None
    use_autocast = train_cfg.use_bf16 and device.type == "cuda"
    logger.info(
        "Training %s: %d train / %d val rows, %d steps of %d (%d per epoch), dead after %d steps",
        sae_id, n_train, n - n_train, total_steps, batch_size, steps_per_epoch, dead_threshold,
    )  # fmt: skip

    # Per-step losses stay on the device (no sync per step) and are read at report time.
    pending: list[Tensor] = []
    start_step = state.step
    train_seconds = 0.0
    # Sums of (loss, nmse, auxk) and step counts since the last report / over the current epoch.
    report_sums, report_count = [0.0, 0.0, 0.0], 0
    epoch_nmse_sum, epoch_count = 0.0, 0
    perm: Tensor | None = None
    cancelled = False
    stopped_early = False
    checkpoint_path: Path | None = None

    def dead_fraction() -> float:
        return float((state.steps_since_fired >= dead_threshold).double().mean())

    def flush() -> None:
        """Move pending per-step losses (a device sync) into the curve and the running sums."""
        nonlocal report_count, epoch_nmse_sum, epoch_count
        if not pending:
            return
        rows = torch.stack(pending).double().cpu().tolist()
        first = state.step - len(rows)
        state.train_curve.extend((first + i + 1, r[0], r[1]) for i, r in enumerate(rows))
        pending.clear()
        for r in rows:
            for i in range(3):
                report_sums[i] += r[i]
        report_count += len(rows)
        epoch_nmse_sum += sum(r[1] for r in rows)
        epoch_count += len(rows)

    def validate(epoch: int) -> float | None:
        if val_x is None:
            return None
        sae.eval()
        val = evaluate(sae, val_x, train_cfg.batch_size).nmse
        sae.train()
        state.val_curve.append((epoch, state.step, val))
        return val

    def track_best(epoch: int, val: float) -> bool:
        """Keep the weights when val is a new best; True when patience says to stop."""
        if state.best is None or val < state.best.val_nmse:
            state.best = _Best(val, epoch, state.step, _weights(sae))
            state.epochs_since_best = 0
        else:
            state.epochs_since_best += 1
        return bool(train_cfg.patience) and state.epochs_since_best >= train_cfg.patience

    def write_checkpoint(
        final_train: EvalReport | None = None,
        final_val: EvalReport | None = None,
        last_weights: dict[str, Tensor] | None = None,
    ) -> Path:
        assert checkpoint_dir is not None
        metrics = _metrics_json(
            {
                "steps": state.step,
                # Every step takes a full batch (steps_per_epoch rounds down), so this is exact.
                "samples": state.step * batch_size,
                "total_steps": total_steps,
                "completed": state.step >= total_steps or stopped_early,
                "stopped_early": stopped_early,
                "best_epoch": state.best.epoch if state.best is not None else None,
                "best_step": state.best.step if state.best is not None else None,
                "best_val_nmse": state.best.val_nmse if state.best is not None else None,
                "dead_fraction_training": dead_fraction(),
                "train_curve": _downsample(state.train_curve),
                "val_curve": [[e, s, v] for e, s, v in state.val_curve],
            },
            final_train,
            final_val,
        )
        train_state = {
            "step": state.step,
            "steps_since_fired": state.steps_since_fired.cpu(),
            "optimizer": optimizer.state_dict(),
            "train_curve": [list(p) for p in state.train_curve],
            "val_curve": [list(p) for p in state.val_curve],
            "sae_id": sae_id,
            "epochs_since_best": state.epochs_since_best,
        }
        if state.best is not None:
            train_state["best"] = {
                "val_nmse": state.best.val_nmse,
                "epoch": state.best.epoch,
                "step": state.best.step,
                "weights": {name: t.cpu() for name, t in state.best.weights.items()},
            }
        if last_weights is not None:
            # The saved model holds the best epoch's weights; a resumed run goes on from the last step's.
            train_state["last_weights"] = {name: t.cpu() for name, t in last_weights.items()}
        path = save_sae(
            sae,
            checkpoint_dir,
            train_cfg=train_cfg,
            embedding_model=embedding_model,
            data_fingerprint=fingerprint,
            metrics=metrics,
            train_state=train_state,
        )
        if callbacks.on_checkpoint is not None:
            callbacks.on_checkpoint(path)
        return path

    def one_step(batch: Tensor, always_mask: bool) -> Tensor:
        """Forward, backward, optimiser step and dead-latent count; returns (loss, nmse, auxk)."""
        before_threshold = state.step < dead_threshold and not always_mask
        dead_mask = None if before_threshold else state.steps_since_fired >= dead_threshold
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast, cache_enabled=False):
            out = sae(batch, dead_mask=dead_mask, fast=train_cfg.fast, workspace=step_workspace)
        out.loss.backward()
        sae.remove_parallel_decoder_grad_()
        if train_cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, train_cfg.grad_clip, foreach=True)
        optimizer.step()
        sae.normalize_decoder_()
        with torch.no_grad():
            fired = torch.zeros(sae_cfg.num_latents, dtype=torch.int32, device=device)
            fired.index_add_(0, out.indices.reshape(-1), (out.values > 0).reshape(-1).to(torch.int32))
            state.steps_since_fired.add_(1).masked_fill_(fired > 0, 0)
            return torch.stack([out.loss.detach(), out.nmse.detach(), out.auxk_loss.detach()])

    graphed = None
    step_workspace = workspace
    if _uses_cuda_graph(train_cfg, device):
        # Graph memory is the graph's own pool: no recycled buffers (see featurelens.sae.cuda_graph).
        step_workspace = None
        graphed = GraphedStep(
            lambda batch: one_step(batch, always_mask=True),
            lambda: optimizer.zero_grad(set_to_none=True),
        )

    sae.train()
    with _numerics(train_cfg, device):
        clock = time.perf_counter()
        while state.step < total_steps:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            epoch, position = divmod(state.step, steps_per_epoch)
            if perm is None or position == 0:
                perm = epoch_permutation(n_train, train_cfg.seed, epoch).to(device)
            batch = train_x.index_select(0, perm[position * batch_size : (position + 1) * batch_size])
            if train_cfg.input_noise > 0:
                batch = batch + train_cfg.input_noise * batch_noise(batch, train_cfg.seed, state.step)
            if graphed is not None:
                pending.append(graphed(batch))
            else:
                pending.append(one_step(batch, always_mask=False))
                if workspace is not None:
                    workspace.recycle_grads(params)
                else:
                    optimizer.zero_grad(set_to_none=True)
            state.step += 1

            end_of_epoch = state.step % steps_per_epoch == 0 or state.step == total_steps
            report = state.step % callbacks.step_every == 0 or state.step == total_steps
            periodic_eval = bool(train_cfg.eval_every) and state.step % train_cfg.eval_every == 0
            periodic_checkpoint = (
                checkpoint_dir is not None
                and bool(train_cfg.checkpoint_every)
                and state.step % train_cfg.checkpoint_every == 0
                and state.step < total_steps
            )
            if report or end_of_epoch or periodic_eval or periodic_checkpoint:
                flush()
                train_seconds += time.perf_counter() - clock
                if report:
                    loss, nmse, auxk = (total / max(1, report_count) for total in report_sums)
                    report_sums[:], report_count = [0.0, 0.0, 0.0], 0
                if report and callbacks.on_step is not None:
                    rate = (state.step - start_step) * batch_size / train_seconds if train_seconds else 0.0
                    callbacks.on_step(
                        StepMetrics(
                            step=state.step,
                            total_steps=total_steps,
                            epoch=epoch,
                            loss=loss,
                            nmse=nmse,
                            auxk_loss=auxk,
                            dead_fraction=dead_fraction(),
                            samples_per_s=rate,
                            eta_s=(total_steps - state.step) * batch_size / rate if rate else math.inf,
                        )
                    )
                if end_of_epoch:
                    val = validate(epoch)
                    if val is not None:
                        stopped_early = track_best(epoch, val)
                    if callbacks.on_epoch_end is not None:
                        callbacks.on_epoch_end(
                            EpochMetrics(
                                epoch,
                                state.step,
                                epoch_nmse_sum / max(1, epoch_count),
                                val,
                                dead_fraction(),
                                best_val_nmse=state.best.val_nmse if state.best is not None else None,
                                best_epoch=state.best.epoch if state.best is not None else None,
                            )
                        )
                    epoch_nmse_sum, epoch_count = 0.0, 0
                elif periodic_eval:
                    validate(epoch)
                if periodic_checkpoint:
                    checkpoint_path = write_checkpoint()
                clock = time.perf_counter()
            if stopped_early:
                assert state.best is not None
                logger.info(
                    "Stopping %s early after epoch %d: no better validation NMSE than %.4f (epoch %d) "
                    "for %d epochs",
                    sae_id, epoch, state.best.val_nmse, state.best.epoch, train_cfg.patience,
                )  # fmt: skip
                break
        flush()
        train_seconds += time.perf_counter() - clock

    sae.eval()
    final_train = final_val = None
    # A cancelled run keeps its last weights: it is a partial run to resume, not a result.
    last_weights = None
    if not cancelled and state.best is not None and state.best.step != state.step:
        last_weights = _weights(sae)
        _load_weights(sae, state.best.weights)
        logger.info(
            "Keeping the weights of epoch %d (step %d): validation NMSE %.4f",
            state.best.epoch, state.best.step, state.best.val_nmse,
        )  # fmt: skip
    if not cancelled:
        final_train = evaluate(sae, train_x, train_cfg.batch_size)
        final_val = evaluate(sae, val_x, train_cfg.batch_size) if val_x is not None else None
        logger.info(
            "Trained %s in %d steps: train NMSE %.4f, val NMSE %s, dead %.3f",
            sae_id, state.step, final_train.nmse, f"{final_val.nmse:.4f}" if final_val else "n/a",
            final_train.dead_fraction,
        )  # fmt: skip
    if checkpoint_dir is not None:
        checkpoint_path = write_checkpoint(final_train, final_val, last_weights)
    return TrainResult(
        sae=sae,
        sae_id=sae_id,
        data_fingerprint=fingerprint,
        steps=state.step,
        total_steps=total_steps,
        cancelled=cancelled,
        train_curve=state.train_curve,
        val_curve=state.val_curve,
        final_train=final_train,
        final_val=final_val,
        dead_fraction=dead_fraction(),
        steps_since_fired=state.steps_since_fired,
        train_seconds=train_seconds,
        steps_this_run=state.step - start_step,
        batch_size=batch_size,
        checkpoint_path=checkpoint_path,
        best_epoch=state.best.epoch if state.best is not None else None,
        best_step=state.best.step if state.best is not None else None,
        stopped_early=stopped_early,
    )


def _resume(
    path: Path,
    sae_cfg: SaeConfig,
    train_cfg: TrainConfig,
    fingerprint: str,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[SparseAutoencoder, torch.optim.Adam, _State]:
    """Model, optimiser and loop state from a checkpoint written by train_sae, after checking that
    it belongs to the same run."""
    info = read_checkpoint(path)
    if info.sae_config != sae_cfg:
        raise SaeCheckpointError(f"Cannot resume from {path}: it was trained with a different SAE config.")
    if info.data_fingerprint != fingerprint:
        raise SaeCheckpointError(f"Cannot resume from {path}: it was trained on different embeddings.")
    if info.train_config is None:
        raise SaeCheckpointError(f"Cannot resume from {path}: it records no training config.")
    mutable = (
        "epochs",
        "max_steps",
        "device",
        "eval_every",
        "checkpoint_every",
        "fast",
        "patience",
        "cuda_graph",
    )
    before = {k: v for k, v in info.train_config.to_dict().items() if k not in mutable}
    now = {k: v for k, v in train_cfg.to_dict().items() if k not in mutable}
    if before != now:
        changed = sorted(k for k in now if before.get(k) != now[k])
        raise SaeCheckpointError(f"Cannot resume from {path}: the training config differs in {changed}.")
    raw = load_train_state(path)
    sae = load_sae(path, device=device, dtype=dtype)
    if "last_weights" in raw:
        _load_weights(sae, raw["last_weights"])
    optimizer = _optimizer(sae, train_cfg)
    optimizer.load_state_dict(raw["optimizer"])
    state = _State(
        step=int(raw["step"]),
        steps_since_fired=raw["steps_since_fired"].to(device),
        train_curve=[(int(s), float(a), float(b)) for s, a, b in raw["train_curve"]],
        val_curve=[(int(e), int(s), float(v)) for e, s, v in raw["val_curve"]],
        epochs_since_best=int(raw.get("epochs_since_best", 0)),
    )
    best = raw.get("best")
    if best is not None:
        state.best = _Best(
            val_nmse=float(best["val_nmse"]),
            epoch=int(best["epoch"]),
            step=int(best["step"]),
            weights={name: t.to(device=device, dtype=dtype) for name, t in best["weights"].items()},
        )
    return sae, optimizer, state
