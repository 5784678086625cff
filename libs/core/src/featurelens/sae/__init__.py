"""Top-k sparse autoencoders on text embeddings (Gao et al. 2024; O'Neill et al. 2024).

A plain library: no services, no environment; device and dtype are arguments and side effects
are callbacks. The API follows EleutherAI's sparsify: config dataclasses, named-tuple outputs,
checkpoints as config.json + model.safetensors.

    from featurelens.sae import SaeConfig, TrainConfig, train_sae, save_sae, load_sae

    result = train_sae(embeddings, SaeConfig(d_in=1536, num_latents=9216, k=64), TrainConfig(epochs=10))
    code = result.sae.encode(x)                      # EncoderOutput(values, indices)
    x_hat = result.sae.decode(code.values, code.indices)
"""

import importlib
from typing import TYPE_CHECKING, Any

# The configs need no torch: a CLI reads their defaults, and a torch-less install (search,
# family) can check them, without paying ~1.5 s for importing torch. Everything else loads on
# first use (PEP 562), so `from featurelens.sae import train_sae` works as before.
from featurelens.sae.config import SaeConfig, SaeConfigError, TrainConfig
from featurelens.sae.sizing import TrainSize, default_train_size

if TYPE_CHECKING:
    from featurelens.sae.analysis import DENSE_THRESHOLD, EvalReport, evaluate
    from featurelens.sae.checkpoint import (
        CheckpointInfo,
        SaeCheckpointError,
        load_sae,
        load_train_state,
        make_sae_id,
        read_checkpoint,
        save_sae,
    )
    from featurelens.sae.data import EmbeddingsLike, data_fingerprint, epoch_permutation, split_rows
    from featurelens.sae.model import EncoderOutput, ForwardOutput, SparseAutoencoder
    from featurelens.sae.models_folder import ModelsFolder
    from featurelens.sae.sparse_ops import TrainingWorkspace, selected_pre_activations, sparse_decode
    from featurelens.sae.steering import steer_additive, steer_clamp
    from featurelens.sae.train import EpochMetrics, StepMetrics, TrainCallbacks, TrainResult, train_sae

#: The module of each name that loads on first use.
_LAZY = {
    **dict.fromkeys(("DENSE_THRESHOLD", "EvalReport", "evaluate"), "analysis"),
    **dict.fromkeys(
        (
            "CheckpointInfo",
            "SaeCheckpointError",
            "load_sae",
            "load_train_state",
            "make_sae_id",
            "read_checkpoint",
            "save_sae",
        ),
        "checkpoint",
    ),
    **dict.fromkeys(("EmbeddingsLike", "data_fingerprint", "epoch_permutation", "split_rows"), "data"),
    **dict.fromkeys(("EncoderOutput", "ForwardOutput", "SparseAutoencoder"), "model"),
    "ModelsFolder": "models_folder",
    **dict.fromkeys(("TrainingWorkspace", "selected_pre_activations", "sparse_decode"), "sparse_ops"),
    **dict.fromkeys(("steer_additive", "steer_clamp"), "steering"),
    **dict.fromkeys(("EpochMetrics", "StepMetrics", "TrainCallbacks", "TrainResult", "train_sae"), "train"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DENSE_THRESHOLD",
    "CheckpointInfo",
    "EmbeddingsLike",
    "EncoderOutput",
    "EpochMetrics",
    "EvalReport",
    "ForwardOutput",
    "ModelsFolder",
    "SaeCheckpointError",
    "SaeConfig",
    "SaeConfigError",
    "SparseAutoencoder",
    "StepMetrics",
    "TrainCallbacks",
    "TrainConfig",
    "TrainResult",
    "TrainSize",
    "TrainingWorkspace",
    "data_fingerprint",
    "default_train_size",
    "epoch_permutation",
    "evaluate",
    "load_sae",
    "load_train_state",
    "make_sae_id",
    "read_checkpoint",
    "save_sae",
    "selected_pre_activations",
    "sparse_decode",
    "split_rows",
    "steer_additive",
    "steer_clamp",
    "train_sae",
]
