"""Scaling sweeps: one top-k SAE per (num_latents, k) on the same data, recipe and seed, and
power-law fits of NMSE against the number of latents and against training compute.

    from featurelens.sae import TrainConfig
    from featurelens.sae.sweep import run_sweep

    result = run_sweep(vectors, [768, 1536, 3072], [16, 32], TrainConfig(epochs=2), out_dir=Path("sweep"))
    fit = result.latent_fits[16]            # NMSE ≈ fit.a · num_latents^(−fit.b), R² = fit.r2

Every run records its training and held-out (validation) NMSE, dead and dense fractions, the
log10 feature-density histogram, and its training compute in FLOPs (see featurelens.sae.flops
for the conventions). The compute axis here is the dense-equivalent forward + backward over
every row of every batch; the paper's FLOPs axis (O'Neill et al. 2024) left out the backward
pass and the batch, so its numbers are 3·batch_size times smaller than ours for the same run
(each run also records that `paper_axis` count for comparison).

Files written under out_dir:

    sweep.json                every run and every fit; rewritten after each run, so an
                              interrupted sweep keeps what finished
    nmse_vs_latents.png       NMSE against num_latents, log-log, one line per k, fits dashed
    nmse_vs_flops.png         NMSE against training FLOPs, one line per k, fits dashed
    feature_density.png       log10 feature-density histogram of every run
    runs/<sae_id>/            each run's checkpoint (with save_checkpoints=True)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from featurelens.sae.checkpoint import make_sae_id
from featurelens.sae.config import SaeConfig, SaeConfigError, TrainConfig
from featurelens.sae.data import EmbeddingsLike, data_fingerprint, num_rows, split_rows
from featurelens.sae.flops import TrainingFlops, auxk_steps, training_flops
from featurelens.sae.powerlaw import PowerLawFit, fit_power_law
from featurelens.sae.train import StepMetrics, TrainCallbacks, TrainResult, train_sae

__all__ = [
    "FORMAT_VERSION",
    "RUNS_DIR",
    "SWEEP_FILE",
    "ScalingFits",
    "SweepCallbacks",
    "SweepResult",
    "SweepRun",
    "fit_scaling",
    "run_sweep",
    "sweep_configs",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"


@dataclass(frozen=True)
class SweepRun:
    """One trained SAE of a sweep and what was measured on it."""

    num_latents: int
    """Number of latents."""
    k: int
    """Active latents per input."""
    d_in: int
    """Input dimension."""
    sae_id: str
    """Deterministic id of the SAE (config, recipe and data)."""
    steps: int
    """Training steps run."""
    batch_size: int
    """Rows per step."""
    train_nmse: float
    """NMSE on the training rows at the end."""
    val_nmse: float | None
    """NMSE on the held-out rows at the end (None without a validation split)."""
    dead_fraction: float
    """Fraction of latents that never fire on the training rows at the end."""
    dense_fraction: float
    """Fraction of latents that fire on more than DENSE_THRESHOLD of the training rows."""
    dead_fraction_training: float
    """Fraction dead by the training criterion (not fired for dead_steps_threshold steps)."""
    flops: TrainingFlops
    """Training compute of the run (featurelens.sae.flops)."""
    train_seconds: float
    """Wall time of the training steps (validation and evaluation excluded)."""
    samples_per_s: float
    """Training throughput."""
    histogram_bins: list[float]
    """Edges of the log10 feature-density histogram (training rows; dead latents left out)."""
    histogram_counts: list[int]
    """Latents per log10-density bin."""
    checkpoint: Path | None = None
    """The run's checkpoint directory, when the sweep saved checkpoints."""

    @property
    def nmse(self) -> float:
        """The NMSE the fits use: held-out when there is a validation split, training otherwise."""
        return self.val_nmse if self.val_nmse is not None else self.train_nmse

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become None)."""
        return {
            "num_latents": self.num_latents,
            "k": self.k,
            "d_in": self.d_in,
            "sae_id": self.sae_id,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "samples": self.steps * self.batch_size,
            "train_nmse": _finite(self.train_nmse),
            "val_nmse": _finite(self.val_nmse),
            "dead_fraction": self.dead_fraction,
            "dense_fraction": self.dense_fraction,
            "dead_fraction_training": self.dead_fraction_training,
            "flops": self.flops.dense_equivalent,
            "flops_sparse": self.flops.sparse,
            "flops_paper_axis": self.flops.paper_axis,
            "auxk_steps": self.flops.auxk_steps,
            "train_seconds": round(self.train_seconds, 3),
            "samples_per_s": round(self.samples_per_s, 1),
            "density_histogram": {
                "bins": [round(edge, 6) for edge in self.histogram_bins],
                "counts": self.histogram_counts,
            },
            "checkpoint": str(self.checkpoint) if self.checkpoint is not None else None,
        }


@dataclass
class SweepCallbacks:
    """Progress of a sweep; every callback is optional. Runs are numbered from 0."""

    on_run_start: Callable[[int, int, SaeConfig], None] | None = None
    """Called with (run index, number of runs, the run's SAE config) before each run."""
    on_step: Callable[[int, StepMetrics], None] | None = None
    """Called with (run index, metrics) every step_every steps of each run."""
    on_run_end: Callable[[int, SweepRun], None] | None = None
    """Called with (run index, the finished run) after each run."""
    step_every: int = 10
    """How often on_step is called, in steps."""


@dataclass
class SweepResult:
    """The runs of a sweep, the power-law fits and the files written."""

    runs: list[SweepRun]
    """Finished runs, in the order trained (k ascending, then num_latents ascending)."""
    fits: ScalingFits
    """Power-law fits of the finished runs."""
    grid: list[tuple[int, int]]
    """The (num_latents, k) pairs planned, in training order."""
    train_config: TrainConfig
    """The recipe every run shared."""
    num_rows: int
    """Rows of embeddings (before the validation split)."""
    d_in: int
    """Embedding dimension."""
    data_fingerprint: str
    """sha256 of the embeddings."""
    embedding_model: str | None
    """Name of the model that produced the embeddings, if given."""
    cancelled: bool
    """True when should_stop ended the sweep early (runs holds the runs that finished)."""
    seconds: float
    """Wall time of the whole sweep."""
    json_path: Path
    """The sweep.json written."""
    plot_paths: list[Path] = field(default_factory=list)
    """The PNG plots written."""

    @property
    def latent_fits(self) -> dict[int, PowerLawFit]:
        """Per k: NMSE = a · num_latents^(−b) (fits.latents)."""
        return self.fits.latents

    @property
    def flops_fits(self) -> dict[int, PowerLawFit]:
        """Per k: NMSE = c · FLOPs^(−e) (fits.flops)."""
        return self.fits.flops

    @property
    def nmse_metric(self) -> str:
        """Which NMSE the fits use (fits.nmse_metric)."""
        return self.fits.nmse_metric

    def to_dict(self) -> dict[str, Any]:
        """The sweep as written to sweep.json."""
        return _sweep_json(
            runs=self.runs,
            grid=self.grid,
            fits=self.fits,
            train_cfg=self.train_config,
            n=self.num_rows,
            d_in=self.d_in,
            fingerprint=self.data_fingerprint,
            embedding_model=self.embedding_model,
            cancelled=self.cancelled,
            seconds=self.seconds,
            plot_paths=self.plot_paths,
        )


def sweep_configs(
    d_in: int, latents: Sequence[int], ks: Sequence[int], base: SaeConfig | None = None
) -> list[SaeConfig]:
    """The validated SAE configs of a grid: k ascending, then num_latents ascending (duplicates dropped).

    base supplies the other fields (AuxK, multi-k, dead threshold); its d_in, num_latents and k
    are replaced. Raises SaeConfigError naming the first bad pair (e.g. k > num_latents).
    """
    if not latents or not ks:
        raise SaeConfigError("A sweep needs at least one num_latents and at least one k.")
    configs = []
    for k in sorted(set(ks)):
        for n_latents in sorted(set(latents)):
            if base is None:
                cfg = SaeConfig(d_in=d_in, num_latents=n_latents, k=k)
            else:
                cfg = dataclasses.replace(base, d_in=d_in, num_latents=n_latents, k=k)
            configs.append(cfg.validate())
    return configs


@dataclass(frozen=True)
class ScalingFits:
    """Per-k power laws of a sweep's NMSE (a k with fewer than two num_latents has none)."""

    nmse_metric: str
    """The NMSE of `latents` and `flops`: "val_nmse" (held-out) or, without a validation split,
    "train_nmse"."""
    latents: dict[int, PowerLawFit]
    """Per k: NMSE = a · num_latents^(−b)."""
    flops: dict[int, PowerLawFit]
    """Per k: NMSE = c · FLOPs^(−e) (PowerLawFit.a = c, .b = e), FLOPs = dense-equivalent training
    compute of the run (TrainingFlops.dense_equivalent)."""
    train_latents: dict[int, PowerLawFit]
    """Per k: training-row NMSE = a · num_latents^(−b). Beside the held-out fit it separates
    capacity from generalisation: on a small corpus larger SAEs overfit and the held-out fit
    flattens while this one keeps falling."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: one list of {k, a, b, r2, n_points, x_min, x_max} per fit."""
        return {
            "nmse_metric": self.nmse_metric,
            "nmse_vs_latents": _fits_json(self.latents),
            "nmse_vs_flops": _fits_json(self.flops),
            "train_nmse_vs_latents": _fits_json(self.train_latents),
        }


def fit_scaling(runs: Sequence[SweepRun]) -> ScalingFits:
    """Per-k power-law fits of NMSE against num_latents and against training FLOPs.

    The held-out NMSE is fitted when every run has one, the training NMSE otherwise; the
    training NMSE against num_latents is always fitted too. A k with fewer than two distinct
    num_latents (or with a non-positive NMSE) gets no fit.
    """
    metric = "val_nmse" if runs and all(r.val_nmse is not None for r in runs) else "train_nmse"
    fits = ScalingFits(metric, {}, {}, {})
    for k in sorted({r.k for r in runs}):
        group = [r for r in runs if r.k == k]
        nmse = [r.nmse if metric == "val_nmse" else r.train_nmse for r in group]
        try:
            fits.latents[k] = fit_power_law([r.num_latents for r in group], nmse)
            fits.flops[k] = fit_power_law([r.flops.dense_equivalent for r in group], nmse)
            fits.train_latents[k] = fit_power_law(
                [r.num_latents for r in group], [r.train_nmse for r in group]
            )
        except ValueError as err:
            logger.info("No power-law fit for k=%d: %s", k, err)
    return fits


def run_sweep(
    embeddings: EmbeddingsLike,
    latents: Sequence[int],
    ks: Sequence[int],
    train_cfg: TrainConfig,
    *,
    out_dir: Path,
    base: SaeConfig | None = None,
    callbacks: SweepCallbacks | None = None,
    save_checkpoints: bool = False,
    plots: bool = True,
    embedding_model: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SweepResult:
    """Train one SAE per (num_latents, k) on `embeddings` (n, d_in) with the same recipe and seed.

    Every run uses train_cfg unchanged (same validation split, initialisation seed and batch
    order), so runs differ only in num_latents and k. base supplies the other SaeConfig fields
    (see sweep_configs). Writes out_dir/sweep.json after every run and the PNG plots at the end
    (plots=False skips them); with save_checkpoints, each run's checkpoint goes to
    out_dir/runs/<sae_id>/. should_stop is polled before every training step: when it returns
    True the sweep stops, the unfinished run is dropped and the result has cancelled=True.
    The grid is validated before anything is trained (SaeConfigError names a bad pair).
    """
    train_cfg.validate()
    callbacks = callbacks or SweepCallbacks()
    n = num_rows(embeddings)
    d_in = int(embeddings.shape[1])
    configs = sweep_configs(d_in, latents, ks, base)
    grid = [(cfg.num_latents, cfg.k) for cfg in configs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / SWEEP_FILE

    fingerprint = data_fingerprint(embeddings)
    n_train = int(split_rows(n, train_cfg.val_fraction, train_cfg.seed)[0].numel())
    steps_per_epoch = n_train // max(1, min(train_cfg.batch_size, n_train))
    logger.info("Sweep of %d SAEs on %d rows (d_in %d) into %s", len(configs), n, d_in, out_dir)

    started = time.perf_counter()
    runs: list[SweepRun] = []
    cancelled = False

    def write_json(plot_paths: Sequence[Path] = ()) -> None:
        data = _sweep_json(
            runs=runs,
            grid=grid,
            fits=fit_scaling(runs),
            train_cfg=train_cfg,
            n=n,
            d_in=d_in,
            fingerprint=fingerprint,
            embedding_model=embedding_model,
            cancelled=cancelled,
            seconds=time.perf_counter() - started,
            plot_paths=plot_paths,
        )
        _write_json_atomically(json_path, data)

    for index, sae_cfg in enumerate(configs):
        if callbacks.on_run_start is not None:
            callbacks.on_run_start(index, len(configs), sae_cfg)
        checkpoint_dir = None
        if save_checkpoints:
            checkpoint_dir = out_dir / RUNS_DIR / make_sae_id(sae_cfg, train_cfg, fingerprint)
        on_step = functools.partial(callbacks.on_step, index) if callbacks.on_step is not None else None
        result = train_sae(
            embeddings,
            sae_cfg,
            train_cfg,
            callbacks=TrainCallbacks(on_step=on_step, step_every=callbacks.step_every),
            checkpoint_dir=checkpoint_dir,
            should_stop=should_stop,
            embedding_model=embedding_model,
        )
        if result.cancelled:
            cancelled = True
            if checkpoint_dir is not None:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
            logger.info("Sweep cancelled during run %d of %d", index + 1, len(configs))
            break
        dead_threshold = sae_cfg.dead_steps_threshold or steps_per_epoch
        run = _sweep_run(sae_cfg, result, dead_threshold)
        runs.append(run)
        logger.info(
            "Sweep run %d/%d: num_latents %d, k %d, NMSE %.4f, %.3g FLOPs",
            index + 1, len(configs), run.num_latents, run.k, run.nmse, run.flops.dense_equivalent,
        )  # fmt: skip
        write_json()
        if callbacks.on_run_end is not None:
            callbacks.on_run_end(index, run)

    fits = fit_scaling(runs)
    plot_paths: list[Path] = []
    if plots and runs:
        from featurelens.sae.sweep_plots import write_sweep_plots

        plot_paths = write_sweep_plots(runs, fits, out_dir)
    write_json(plot_paths)
    return SweepResult(
        runs=runs,
        fits=fits,
        grid=grid,
        train_config=train_cfg,
        num_rows=n,
        d_in=d_in,
        data_fingerprint=fingerprint,
        embedding_model=embedding_model,
        cancelled=cancelled,
        seconds=time.perf_counter() - started,
        json_path=json_path,
        plot_paths=plot_paths,
    )


def _sweep_run(sae_cfg: SaeConfig, result: TrainResult, dead_threshold: int) -> SweepRun:
    final_train = result.final_train
    assert final_train is not None, "a finished run has a final evaluation"
    flops = training_flops(
        sae_cfg,
        batch_size=result.batch_size,
        steps=result.steps,
        auxk_steps=auxk_steps(sae_cfg, steps=result.steps, dead_threshold=dead_threshold),
    )
    return SweepRun(
        num_latents=sae_cfg.num_latents,
        k=sae_cfg.k,
        d_in=sae_cfg.d_in,
        sae_id=result.sae_id,
        steps=result.steps,
        batch_size=result.batch_size,
        train_nmse=final_train.nmse,
        val_nmse=result.final_val.nmse if result.final_val is not None else None,
        dead_fraction=final_train.dead_fraction,
        dense_fraction=final_train.dense_fraction,
        dead_fraction_training=result.dead_fraction,
        flops=flops,
        train_seconds=result.train_seconds,
        samples_per_s=result.samples_per_s,
        histogram_bins=list(final_train.histogram_bins),
        histogram_counts=list(final_train.histogram_counts),
        checkpoint=result.checkpoint_path,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _fits_json(fits: dict[int, PowerLawFit]) -> list[dict[str, Any]]:
    return [{"k": k, **fit.to_dict()} for k, fit in sorted(fits.items())]


def _sweep_json(
    *,
    runs: Sequence[SweepRun],
    grid: Sequence[tuple[int, int]],
    fits: ScalingFits,
    train_cfg: TrainConfig,
    n: int,
    d_in: int,
    fingerprint: str,
    embedding_model: str | None,
    cancelled: bool,
    seconds: float,
    plot_paths: Sequence[Path],
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedding_model": embedding_model,
        "data_fingerprint": fingerprint,
        "num_rows": n,
        "d_in": d_in,
        "train_config": train_cfg.to_dict(),
        "grid": {
            "latents": sorted({n_latents for n_latents, _ in grid}),
            "ks": sorted({k for _, k in grid}),
            "planned_runs": len(grid),
            "finished_runs": len(runs),
        },
        "nmse_metric": fits.nmse_metric,
        "flops_convention": (
            "flops: dense-equivalent training FLOPs of the recipe, forward x 3 (forward + backward), "
            "every row of every batch, multiply-add = 2; forward per row = 2*d_in*num_latents (encoder) "
            "+ 2*d_in*(k + k_aux on AuxK steps + multik_k when multi-k is on) (decoders). "
            "flops_sparse: what the sparse training path computes. flops_paper_axis: forward of one row "
            "per step (the paper's axis, which leaves out the backward pass and the batch). "
            "See featurelens.sae.flops."
        ),
        "cancelled": cancelled,
        "seconds": round(seconds, 3),
        "runs": [r.to_dict() for r in runs],
        "fits": fits.to_dict(),
        "plots": [p.name for p in plot_paths],
    }


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file is a shareable report
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
