"""Checks of sae requests: each failure is a sentence saying what to fix.

Training settings belong to featurelens.sae: its ``SaeConfig`` and ``TrainConfig`` own every
default and every rule, so a Train call, ``featurelens sae train`` and a notebook agree on what a
setting means (``auxk_coef=0`` switches AuxK off everywhere, ``val_fraction=0`` trains without a
validation split). Here the request's *set* fields are handed to them (``HasField``: unset means the
core default, a set 0 means 0), their sentences are reworded with the request's field names, and
this server's own size caps (``TrainLimits``, from the settings) are added. A request with
``config.num_latents`` 0 asks the server to size the run: num_latents, and epochs when unset, come
from the store's row count through ``featurelens.sae.default_train_size`` (the rule ``featurelens
sae train`` without ``--latents`` and the demo use). With num_latents set, an unset epochs stays the
core default, as the proto says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featurelens.embedding.store import MANIFEST_FILE, EmbeddingStore, EmbeddingStoreError
from featurelens.kit import InvalidArgumentError, ResourceExhaustedError
from featurelens.kit.echo import shown
from featurelens.kit.interventions import interventions_from_proto
from featurelens.sae import SaeConfig, SaeConfigError, TrainConfig, default_train_size
from featurelens.services.sae.registry import LoadedSae
from featurelens.services.sae.settings import MAX_NUM_LATENTS, MAX_TRAIN_PARAMETERS
from featurelens.steering import (
    MAX_STEERED_FEATURES,
    FamilyIntervention,
    PhraseIntervention,
    SteerPlan,
    check_interventions,
    echo,
)
from featurelens.v1 import common_pb2, sae_pb2

#: Optional SaeConfig fields of the proto, by the core SaeConfig field they set (same names).
_SAE_FIELDS = ("k_aux", "auxk_coef", "dead_steps_threshold", "multik_coef", "multik_k")
#: Optional TrainRequest fields of the proto, by the core TrainConfig field they set.
_TRAIN_FIELDS = {
    "batch_size": "batch_size",
    "learning_rate": "lr",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "seed": "seed",
    "val_fraction": "val_fraction",
    "patience": "patience",
    "input_noise": "input_noise",
}
#: Fields sent as float32 on the wire.
_FLOAT_FIELDS = frozenset({"auxk_coef", "multik_coef", "learning_rate", "val_fraction", "input_noise"})
#: Core's sentences say "SaeConfig.k" / "TrainConfig.lr" where the caller sent "config.k" / "learning_rate".
_CORE_FIELD = re.compile(r"\b(SaeConfig|TrainConfig)\.(\w+)")
_REQUEST_NAMES = {
    "SaeConfig": {name: f"config.{name}" for name in (*_SAE_FIELDS, "d_in", "num_latents", "k")},
    "TrainConfig": {core: wire for wire, core in _TRAIN_FIELDS.items()},
}


@dataclass(frozen=True)
class TrainLimits:
    """How big a training run this server accepts (the operator's caps, not rules of an SAE)."""

    max_num_latents: int = MAX_NUM_LATENTS
    max_train_parameters: int = MAX_TRAIN_PARAMETERS
    """num_latents × d_in: the size of each of the encoder and decoder matrices."""
    max_train_epochs: int = 1000
    max_train_batch_size: int = 65_536


# -- inference requests -------------------------------------------------------------------------


def check_count(count: int, field: str, max_batch: int) -> None:
    """More than ``max_batch`` rows (or features) in one call is RESOURCE_EXHAUSTED."""
    if count > max_batch:
        raise ResourceExhaustedError(
            f"{count:,} {field} in one call; the limit is {max_batch:,} (split the batch)"
        )


def check_dim(dim: int, loaded: LoadedSae, what: str) -> None:
    """A vector's dimension must be the SAE's d_in (``what`` is e.g. "vectors have")."""
    if dim != loaded.sae.d_in:
        raise InvalidArgumentError(f"{what} dim {dim} but SAE {loaded.sae_id} expects {loaded.sae.d_in}")


def check_feature(feature: int, loaded: LoadedSae) -> None:
    """A latent id must be below the SAE's num_latents."""
    if feature >= loaded.sae.num_latents:
        raise InvalidArgumentError(
            f"feature {feature} is out of range; SAE {loaded.sae_id} has {loaded.sae.num_latents} latents"
        )


def steer_plan(messages: Sequence[common_pb2.Intervention], loaded: LoadedSae) -> SteerPlan:
    """A Steer request's interventions, checked by the rule search applies too (``featurelens.steering``)."""
    items = []
    for item in interventions_from_proto(messages, limit=MAX_STEERED_FEATURES):
        if isinstance(item, FamilyIntervention):
            raise InvalidArgumentError(
                f"interventions[{item.position}] targets family {echo(item.family_id)}; the sae service "
                "steers features only: resolve families through the search service"
            )
        if isinstance(item, PhraseIntervention):
            raise InvalidArgumentError(
                f"interventions[{item.position}] targets phrase {echo(item.phrase)}; the sae service "
                "steers features only: resolve phrases through the search service"
            )
        items.append(item)
    return check_interventions(items, num_latents=loaded.sae.num_latents, sae_id=loaded.sae_id)


# -- training requests --------------------------------------------------------------------------


def open_train_store(path: Path, requested: str) -> EmbeddingStore:
    """The embedding store at an allowed ``path`` (``requested`` is what the caller sent), read-only."""
    if not path.is_dir() or not (path / MANIFEST_FILE).is_file():
        raise InvalidArgumentError(
            f"{shown(requested)} is not an embedding store (a folder with {MANIFEST_FILE}); "
            "write one with `featurelens embed`"
        )
    try:
        store = EmbeddingStore.open(path, read_only=True)
    except EmbeddingStoreError as error:
        raise InvalidArgumentError(
            f"the embedding store {shown(requested)} cannot be read: {error}"
        ) from None
    if len(store) == 0:
        store.close()
        raise InvalidArgumentError(f"the embedding store {shown(requested)} holds no rows yet")
    return store


def train_configs(
    request: sae_pb2.TrainRequest, *, rows: int, dim: int, source: str, limits: TrainLimits, device: str
) -> tuple[SaeConfig, TrainConfig]:
    """The core configs of a Train request on ``rows`` vectors of ``dim`` (``source`` names them, e.g.
    "the store 'x'"), checked by the core and this server's caps."""
    config = request.config
    d_in = config.d_in or dim
    if d_in != dim:
        raise InvalidArgumentError(f"config.d_in is {d_in} but {source} holds vectors of dim {dim}")
    sae_fields = _set_fields(config, {name: name for name in _SAE_FIELDS})
    train_fields = _set_fields(request, _TRAIN_FIELDS)
    num_latents = config.num_latents
    try:
        if num_latents == 0:
            val_fraction = train_fields.get("val_fraction", TrainConfig.val_fraction)
            size = default_train_size(rows, k=config.k, val_fraction=val_fraction)
            num_latents = size.num_latents
            train_fields.setdefault("epochs", size.epochs)
        sae_cfg = SaeConfig(d_in=d_in, num_latents=num_latents, k=config.k, **sae_fields).validate()
        train_cfg = TrainConfig(device=device, **train_fields).validate()
    except SaeConfigError as error:
        raise InvalidArgumentError(request_sentence(str(error))) from None
    except ValueError as error:
        # default_train_size's sentences name k and val_fraction as the request does.
        raise InvalidArgumentError(str(error).replace("k must", "config.k must")) from None
    _check_limits(sae_cfg, train_cfg, limits)
    return sae_cfg, train_cfg


def request_sentence(core_sentence: str) -> str:
    """A core SaeConfigError sentence with its fields named as a TrainRequest names them."""

    def rename(match: re.Match[str]) -> str:
        return _REQUEST_NAMES[match[1]].get(match[2], match[2])

    return _CORE_FIELD.sub(rename, core_sentence)


def _set_fields(message: Any, names: dict[str, str]) -> dict[str, Any]:
    """The core keyword arguments of the optional fields ``message`` sets (``names``: wire → core)."""
    fields: dict[str, Any] = {}
    for wire, core in names.items():
        if message.HasField(wire):
            value = getattr(message, wire)
            fields[core] = _float32_as_sent(value) if wire in _FLOAT_FIELDS else int(value)
    return fields


def _float32_as_sent(value: float) -> float:
    """The decimal a float32 field was most likely typed as (0.1, not 0.10000000149).

    The shortest decimal that rounds to the same float32 is what the client wrote, so 1e-4 sent over
    the wire trains (and is named in the sae_id) exactly as ``TrainConfig(lr=1e-4)`` does.
    """
    return float(str(np.float32(value)))


def _check_limits(sae_cfg: SaeConfig, train_cfg: TrainConfig, limits: TrainLimits) -> None:
    """This server's caps on the run's size, checked on the resolved values (defaults included)."""
    if sae_cfg.num_latents > limits.max_num_latents:
        raise InvalidArgumentError(
            f"config.num_latents {sae_cfg.num_latents:,} is above this server's limit of "
            f"{limits.max_num_latents:,} (FEATURELENS_SAE_MAX_NUM_LATENTS)"
        )
    weights = sae_cfg.num_latents * sae_cfg.d_in
    if weights > limits.max_train_parameters:
        raise InvalidArgumentError(
            f"config.num_latents {sae_cfg.num_latents:,} × d_in {sae_cfg.d_in:,} is {weights:,} weights per "
            f"matrix, above this server's limit of {limits.max_train_parameters:,} "
            "(FEATURELENS_SAE_MAX_TRAIN_PARAMETERS): train fewer latents"
        )
    if train_cfg.epochs > limits.max_train_epochs:
        raise InvalidArgumentError(
            f"epochs {train_cfg.epochs:,} is above this server's limit of {limits.max_train_epochs:,} "
            "(FEATURELENS_SAE_MAX_TRAIN_EPOCHS)"
        )
    # A patience of at least epochs never stops a run early, so the epoch cap bounds it too.
    if train_cfg.patience > limits.max_train_epochs:
        raise InvalidArgumentError(
            f"patience {train_cfg.patience:,} is above this server's limit of {limits.max_train_epochs:,} "
            "(FEATURELENS_SAE_MAX_TRAIN_EPOCHS); 0 runs every epoch"
        )
    if train_cfg.batch_size > limits.max_train_batch_size:
        raise InvalidArgumentError(
            f"batch_size {train_cfg.batch_size:,} is above this server's limit of "
            f"{limits.max_train_batch_size:,} (FEATURELENS_SAE_MAX_TRAIN_BATCH_SIZE)"
        )
