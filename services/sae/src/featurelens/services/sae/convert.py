"""Protobuf messages of the sae API ⇄ numpy arrays, with the format checks of each field.

Format problems (byte counts, NaN, values beyond the wire's ±MAX_ABS_VALUE, repeated indices)
become InvalidArgumentError with a sentence naming the field and the row; checks against a
particular SAE (its d_in, num_latents) are the servicer's.

The responses are checked too, as a last line: an input inside the bound can still give a result
outside it (a vector of values near a million encodes to larger activations), and a response must
never carry what a request may not (a NaN, an infinity, a value a reader of the response refuses).
Such a result is refused with a sentence naming the row, instead of being returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from featurelens.kit import FailedPreconditionError, InvalidArgumentError
from featurelens.sae import EpochMetrics, StepMetrics
from featurelens.services.sae.registry import SaeEntry
from featurelens.v1 import common_pb2, sae_pb2
from featurelens.wire.arrays import (
    MAX_ABS_VALUE,
    ArrayFormatError,
    from_dense_matrix,
    from_dense_vector,
    from_sparse_vector,
    to_dense_matrix,
    to_dense_vector,
)

FLOAT32 = np.dtype(np.float32)


# -- requests -----------------------------------------------------------------------------------


def dense_rows(message: common_pb2.DenseMatrix, field: str = "vectors") -> np.ndarray:
    """A DenseMatrix as a writable (count, dim) float32 array; a NaN, an infinity or a value beyond
    the wire's bound (``MAX_ABS_VALUE``) is named by row and column."""
    if message.count == 0:
        raise InvalidArgumentError(f"{field} is empty; send at least one vector")
    try:
        matrix = from_dense_matrix(message)
    except ArrayFormatError as error:
        raise InvalidArgumentError(f"{field}: {error}") from None
    # The bytes buffer is read-only and torch wants writable memory; one copy, made here.
    return matrix.copy()


def dense_vector(message: common_pb2.DenseVector, field: str = "vector") -> np.ndarray:
    """A DenseVector as a writable (dim,) float32 array."""
    if message.dim == 0 and not message.data:
        raise InvalidArgumentError(f"{field} is empty; send the vector as little-endian float32 bytes")
    try:
        return from_dense_vector(message).copy()
    except ArrayFormatError as error:
        raise InvalidArgumentError(f"{field}: {error}") from None


def sparse_rows(
    rows: Sequence[common_pb2.SparseVector], num_latents: int, sae_id: str
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse rows as (n, m) int64 indices and float32 values, padded with (latent 0, value 0).

    Padding adds exactly 0 to a decode, so rows of different lengths share one call.
    """
    width = max(1, max(len(row.indices) for row in rows))
    indices = np.zeros((len(rows), width), dtype=np.int64)
    values = np.zeros((len(rows), width), dtype=FLOAT32)
    for number, row in enumerate(rows):
        try:
            # Format checks (lengths, repeated indices, NaN) are the shared ones of the SDK.
            row_indices, row_values = from_sparse_vector(row)
        except ArrayFormatError as error:
            raise InvalidArgumentError(f"rows[{number}]: {error}") from None
        if not row_indices.size:
            continue
        top = int(row_indices.max())
        if top >= num_latents:
            raise InvalidArgumentError(
                f"rows[{number}]: latent {top} is out of range; SAE {sae_id} has {num_latents} latents"
            )
        indices[number, : row_indices.size] = row_indices
        values[number, : row_values.size] = row_values
    return indices, values


# -- responses ----------------------------------------------------------------------------------


def encode_response(sae_id: str, values: np.ndarray, indices: np.ndarray) -> sae_pb2.EncodeResponse:
    """One SparseVector per row: the non-zero latents, largest first (as the encoder sorts them)."""
    _refuse_unbounded(
        values, "vectors row {row} encodes to an activation of {value} (latent {latent})", indices
    )
    response = sae_pb2.EncodeResponse(sae_id=sae_id)
    # One tolist per array is much cheaper than a numpy slice per row.
    all_values = values.tolist()
    all_indices = indices.tolist()
    nonzero = (values != 0).sum(axis=1).tolist()
    for row_values, row_indices, count in zip(all_values, all_indices, nonzero, strict=True):
        if count == len(row_values):
            response.rows.add(indices=row_indices, values=row_values)
        else:
            # Values are sorted descending and non-negative, so the zeros are the tail.
            response.rows.add(indices=row_indices[:count], values=row_values[:count])
    return response


def sparse_vector(values: np.ndarray, indices: np.ndarray) -> common_pb2.SparseVector:
    """One encoded row (sorted, non-negative) as a SparseVector without its zero tail."""
    count = int((values != 0).sum())
    return common_pb2.SparseVector(indices=indices[:count].tolist(), values=values[:count].tolist())


def decode_response(sae_id: str, vectors: np.ndarray) -> sae_pb2.DecodeResponse:
    _refuse_unbounded(vectors, "rows[{row}] decodes to a value of {value} (dimension {column})")
    return sae_pb2.DecodeResponse(sae_id=sae_id, vectors=to_dense_matrix(vectors))


def directions_response(sae_id: str, directions: np.ndarray) -> sae_pb2.DecoderDirectionsResponse:
    # Unit-norm rows: only a damaged checkpoint (NaN weights) can fail this.
    problem = _unbounded(directions, "the decoder direction of features[{row}] holds {value}")
    if problem is not None:
        raise FailedPreconditionError(f"SAE {sae_id}: {problem}; its checkpoint is damaged")
    return sae_pb2.DecoderDirectionsResponse(sae_id=sae_id, directions=to_dense_matrix(directions))


def steer_response(
    sae_id: str,
    steered: np.ndarray,
    cosine: float,
    before: tuple[np.ndarray, np.ndarray],
    after: tuple[np.ndarray, np.ndarray],
) -> sae_pb2.SteerResponse:
    (before_values, before_latents), (after_values, after_latents) = before, after
    _refuse_unbounded(
        before_values[np.newaxis], "the vector encodes to an activation of {value} (latent {latent})",
        before_latents[np.newaxis],
    )  # fmt: skip
    _refuse_unbounded(steered[np.newaxis], "the steered vector holds {value} (dimension {column})")
    _refuse_unbounded(
        after_values[np.newaxis], "the steered vector encodes to an activation of {value} (latent {latent})",
        after_latents[np.newaxis],
    )  # fmt: skip
    return sae_pb2.SteerResponse(
        sae_id=sae_id,
        vector=to_dense_vector(steered),
        cosine_to_original=cosine,
        latents_before=sparse_vector(*before),
        latents_after=sparse_vector(*after),
    )


def _refuse_unbounded(values: np.ndarray, sentence: str, latents: np.ndarray | None = None) -> None:
    """InvalidArgumentError when a result computed from a bounded input leaves the bound."""
    problem = _unbounded(values, sentence, latents)
    if problem is not None:
        raise InvalidArgumentError(f"{problem}; the input is too large for this SAE: scale it down")


def _unbounded(values: np.ndarray, sentence: str, latents: np.ndarray | None = None) -> str | None:
    """None when every value of a (rows, columns) result is finite and within the wire's
    ±MAX_ABS_VALUE; else ``sentence`` about the first that is not ({row}, {column}, {value} and,
    with ``latents``, {latent} filled in), with the bound."""
    bad = ~(np.abs(values) <= MAX_ABS_VALUE)  # NaN compares False, so it is caught too
    if not bad.any():
        return None
    row, column = (int(i) for i in np.argwhere(bad)[0])
    latent = int(latents[row, column]) if latents is not None else -1
    problem = sentence.format(
        row=row, column=column, latent=latent, value=f"{float(values[row, column]):.4g}"
    )
    return f"{problem}, beyond the ±{MAX_ABS_VALUE:,.0f} a vector may carry"


def sae_info(entry: SaeEntry, *, is_default: bool) -> sae_pb2.SaeInfo:
    """The registry's view of one SAE as a SaeInfo message."""
    info = entry.info
    cfg = info.sae_config
    metrics: dict[str, Any] = info.metrics or {}
    steps = int(metrics.get("steps") or 0)
    batch_size = info.train_config.batch_size if info.train_config is not None else 0
    return sae_pb2.SaeInfo(
        sae_id=entry.sae_id,
        config=sae_pb2.SaeConfig(
            d_in=cfg.d_in,
            num_latents=cfg.num_latents,
            k=cfg.k,
            k_aux=cfg.k_aux,
            auxk_coef=cfg.auxk_coef,
            dead_steps_threshold=cfg.dead_steps_threshold,
            multik_coef=cfg.multik_coef,
            multik_k=cfg.multik_k,
        ),
        metrics=sae_pb2.SaeMetrics(
            train_nmse=_number(metrics.get("final_train_nmse")),
            val_nmse=_number(metrics.get("final_val_nmse")),
            dead_fraction=_number(metrics.get("dead_fraction")),
            dense_fraction=_number(metrics.get("dense_fraction")),
            steps=steps,
            # Checkpoints written before metrics.json recorded samples fall back to steps × batch
            # size (an overcount only when there were fewer training rows than one batch).
            samples=int(metrics.get("samples") or steps * batch_size),
            best_epoch=_best_epoch(metrics),
            stopped_early=metrics.get("stopped_early") is True,
        ),
        embedding_model=info.embedding_model or "",
        created_unix=entry.created_unix,
        is_default=is_default,
    )


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _best_epoch(metrics: dict[str, Any]) -> int | None:
    """The epoch whose weights the SAE holds; None when no validation split chose one.

    metrics.json written before early stopping has no best_epoch: those runs kept their last
    epoch, the last one validated in val_curve ([epoch, step, val_nmse] rows; empty without a split).
    """
    if "best_epoch" in metrics:
        best = metrics["best_epoch"]
        return best if isinstance(best, int) else None
    curve = metrics.get("val_curve") or []
    return int(curve[-1][0]) if curve else None


def step_response(metrics: StepMetrics, *, batch_size: int, val_nmse: float) -> sae_pb2.TrainResponse:
    """A progress message from the library's step report.

    The message leads with the validation NMSE of the last finished epoch (what the SAE does on
    rows it never trained on), then the training batches' NMSE, which a small corpus drives lower.
    """
    eta = metrics.eta_s if math.isfinite(metrics.eta_s) else -1.0
    val_text = f"{val_nmse:.4f}" if val_nmse >= 0 else "-"
    message = (
        f"step {metrics.step:,}/{metrics.total_steps:,} · epoch {metrics.epoch + 1} · "
        f"val nmse {val_text} · train nmse {metrics.nmse:.4f} · loss {metrics.loss:.4f} · "
        f"dead {metrics.dead_fraction:.1%} · {metrics.samples_per_s:,.0f} samples/s"
    )
    return sae_pb2.TrainResponse(
        progress=common_pb2.Progress(
            stage="train",
            done=metrics.step,
            total=metrics.total_steps,
            rate_per_s=metrics.samples_per_s / batch_size if batch_size else 0.0,
            eta_s=eta,
            message=message,
        ),
        epoch=metrics.epoch,
        loss=metrics.loss,
        nmse=metrics.nmse,
        auxk_loss=metrics.auxk_loss,
        val_nmse=val_nmse,
        dead_fraction=metrics.dead_fraction,
    )


def epoch_response(
    metrics: EpochMetrics, *, total_steps: int, batch_size: int, last: StepMetrics | None
) -> sae_pb2.TrainResponse:
    """A progress message at the end of an epoch, led by its validation NMSE and the best so far
    (the epoch whose weights the run will keep)."""
    val = metrics.val_nmse if metrics.val_nmse is not None else -1.0
    val_text = f"{metrics.val_nmse:.4f}" if metrics.val_nmse is not None else "n/a"
    if metrics.best_val_nmse is not None and metrics.best_epoch is not None:
        val_text += f" (best {metrics.best_val_nmse:.4f}, epoch {metrics.best_epoch + 1})"
    return sae_pb2.TrainResponse(
        progress=common_pb2.Progress(
            stage="train",
            done=metrics.step,
            total=total_steps,
            rate_per_s=last.samples_per_s / batch_size if last is not None and batch_size else 0.0,
            eta_s=last.eta_s if last is not None and math.isfinite(last.eta_s) else -1.0,
            message=f"epoch {metrics.epoch + 1} done · val nmse {val_text} · "
            f"train nmse {metrics.train_nmse:.4f}",
        ),
        epoch=metrics.epoch,
        loss=last.loss if last is not None else 0.0,
        nmse=metrics.train_nmse,
        auxk_loss=last.auxk_loss if last is not None else 0.0,
        val_nmse=val,
        dead_fraction=metrics.dead_fraction,
    )
