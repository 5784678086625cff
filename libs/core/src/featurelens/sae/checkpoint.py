"""SAE checkpoints: a directory with config.json, model.safetensors and metrics.json.

    <dir>/config.json         format_version, sae_id, sae config, train config, embedding model,
                              data fingerprint, created (UTC, ISO 8601)
    <dir>/model.safetensors   W_enc, b_lat, W_dec, b_pre (exact bits)
    <dir>/metrics.json        training curves and final statistics (optional)
    <dir>/train_state.pt      optimiser state, step, dead-latent counters (only to resume training)

A directory is written beside its destination under a temporary name and renamed into place,
so a reader never sees a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from featurelens.sae.config import SaeConfig, SaeConfigError, TrainConfig
from featurelens.sae.model import SparseAutoencoder

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "METRICS_FILE",
    "MODEL_FILE",
    "MOVED_ASIDE",
    "TRAIN_STATE_FILE",
    "CheckpointInfo",
    "SaeCheckpointError",
    "load_sae",
    "load_train_state",
    "make_sae_id",
    "read_checkpoint",
    "replace_dir",
    "save_sae",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
TRAIN_STATE_FILE = "train_state.pt"
#: The name ``replace_dir`` gives a checkpoint moved aside while replaced: ``.<name>.old-<hex>``.
MOVED_ASIDE = re.compile(r"^\.(?P<name>.+)\.old-[0-9a-f]+$")
_TENSORS = ("W_enc", "b_lat", "W_dec", "b_pre")
# Train-config fields that do not change what is learned: they stay out of the sae_id.
_NOT_IDENTITY = ("device", "eval_every", "checkpoint_every", "fast", "cuda_graph")
#: Recipe fields added after ids were first given out, at the value that changes nothing: left out
#: of the id at that value, so an SAE trained the old way keeps its id.
_NEUTRAL_DEFAULTS: dict[str, object] = {"input_noise": 0.0}


class SaeCheckpointError(Exception):
    """A checkpoint directory is missing, incomplete, malformed or of an unknown format version."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What config.json (and metrics.json, when present) say about a checkpoint."""

    path: Path
    """The checkpoint directory."""

    sae_id: str
    """Deterministic id of the SAE (see make_sae_id)."""

    sae_config: SaeConfig
    """Shape and loss of the SAE."""

    train_config: TrainConfig | None
    """How it was trained (None for an SAE saved outside training)."""

    embedding_model: str | None
    """Name of the embedding model whose vectors it was trained on."""

    data_fingerprint: str | None
    """sha256 of the training embeddings (see featurelens.sae.data.data_fingerprint)."""

    created: str
    """When the checkpoint was written (UTC, ISO 8601)."""

    format_version: int
    """Checkpoint format version."""

    metrics: dict[str, Any] | None
    """Contents of metrics.json, or None when there is none."""


def make_sae_id(sae_cfg: SaeConfig, train_cfg: TrainConfig | None, data_fingerprint: str | None) -> str:
    """ "sae-" + 12 hex digits of sha256 over the SAE config, the training recipe and the data."""
    recipe = None
    if train_cfg is not None:
        recipe = {
            k: v
            for k, v in train_cfg.to_dict().items()
            if k not in _NOT_IDENTITY and not (k in _NEUTRAL_DEFAULTS and v == _NEUTRAL_DEFAULTS[k])
        }
    payload = json.dumps(
        {"sae": sae_cfg.to_dict(), "train": recipe, "data": data_fingerprint},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sae-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


def save_sae(
    sae: SparseAutoencoder,
    path: str | Path,
    *,
    train_cfg: TrainConfig | None = None,
    embedding_model: str | None = None,
    data_fingerprint: str | None = None,
    metrics: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write `sae` as a checkpoint directory at `path` (replacing one that is there) and return it.

    metrics is written as metrics.json; train_state (a dict of tensors and plain values, see
    train_sae) as train_state.pt for resuming.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "sae_id": make_sae_id(sae.cfg, train_cfg, data_fingerprint),
        "sae": sae.cfg.to_dict(),
        "train": train_cfg.to_dict() if train_cfg is not None else None,
        "embedding_model": embedding_model,
        "data_fingerprint": data_fingerprint,
        "dtype": str(sae.dtype).removeprefix("torch."),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        tensors = {name: getattr(sae, name).detach().contiguous().cpu() for name in _TENSORS}
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format_version": str(FORMAT_VERSION)})
        _write_json(tmp / CONFIG_FILE, config)
        if metrics is not None:
            _write_json(tmp / METRICS_FILE, metrics)
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE_FILE)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished directory src to dst (both in one folder, so on one filesystem).

    rename(2) is atomic onto a missing path, so a reader sees the old checkpoint or the whole new
    one, never a part. An existing dst is first renamed aside (to ``.<name>.old-*``, hidden) and
    removed once the new one is in place; if the move fails the old one is put back.
    """
    if not dst.exists():
        os.rename(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")  # matches MOVED_ASIDE
    os.rename(dst, old)
    try:
        os.rename(src, dst)
    except BaseException:
        os.rename(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read and check config.json (and metrics.json) of a checkpoint directory."""
    path = Path(path)
    if not path.is_dir():
        raise SaeCheckpointError(f"No SAE checkpoint directory at {path}.")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise SaeCheckpointError(f"The SAE checkpoint at {path} has no {CONFIG_FILE}.")
    config = _read_json(config_path)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise SaeCheckpointError(
            f"The SAE checkpoint at {path} has format_version {version!r}; this version of featurelens "
            f"reads format_version {FORMAT_VERSION}."
        )
    try:
        sae_cfg = SaeConfig.from_dict(config["sae"])
        train_cfg = TrainConfig.from_dict(config["train"]) if config.get("train") is not None else None
        sae_id = str(config["sae_id"])
    except (KeyError, TypeError, SaeConfigError) as err:
        raise SaeCheckpointError(
            f"The {CONFIG_FILE} of the SAE checkpoint at {path} is malformed: {err}"
        ) from err
    metrics_path = path / METRICS_FILE
    return CheckpointInfo(
        path=path,
        sae_id=sae_id,
        sae_config=sae_cfg,
        train_config=train_cfg,
        embedding_model=config.get("embedding_model"),
        data_fingerprint=config.get("data_fingerprint"),
        created=str(config.get("created", "")),
        format_version=FORMAT_VERSION,
        metrics=_read_json(metrics_path) if metrics_path.is_file() else None,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SaeCheckpointError(f"{path} is not readable JSON: {err}") from err
    if not isinstance(data, dict):
        raise SaeCheckpointError(f"{path} must hold a JSON object, found {type(data).__name__}.")
    return data


def load_sae(
    path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> SparseAutoencoder:
    """Load a checkpoint directory's SAE onto device (bit-exact in its stored dtype when dtype is None)."""
    info = read_checkpoint(path)
    model_path = info.path / MODEL_FILE
    if not model_path.is_file():
        raise SaeCheckpointError(f"The SAE checkpoint at {info.path} has no {MODEL_FILE}.")
    try:
        tensors = load_file(str(model_path))
    except (SafetensorError, OSError) as err:
        raise SaeCheckpointError(f"{model_path} is not a readable safetensors file: {err}") from err
    cfg = info.sae_config
    shapes = {
        "W_enc": (cfg.num_latents, cfg.d_in),
        "b_lat": (cfg.num_latents,),
        "W_dec": (cfg.num_latents, cfg.d_in),
        "b_pre": (cfg.d_in,),
    }
    for name, shape in shapes.items():
        if name not in tensors:
            raise SaeCheckpointError(f"{model_path} has no tensor {name!r}.")
        if tuple(tensors[name].shape) != shape:
            raise SaeCheckpointError(
                f"{model_path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                f"the config says {shape}."
            )
    stored = tensors["W_dec"].dtype
    sae = SparseAutoencoder(cfg, device="meta", dtype=dtype or stored)
    sae.to_empty(device=device)
    with torch.no_grad():
        for name in _TENSORS:
            getattr(sae, name).copy_(tensors[name])
    return sae


def load_train_state(path: str | Path) -> dict[str, Any]:
    """The train_state.pt of a checkpoint directory (for resuming)."""
    state_path = Path(path) / TRAIN_STATE_FILE
    if not state_path.is_file():
        raise SaeCheckpointError(
            f"The SAE checkpoint at {path} has no {TRAIN_STATE_FILE}, so it cannot be resumed."
        )
    try:
        state: dict[str, Any] = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises a variety of unpickling errors for a damaged file
        raise SaeCheckpointError(f"{state_path} is not a readable training state: {err}") from err
    return state
