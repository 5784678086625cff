"""Settings of the sae service, read from ``FEATURELENS_SAE_<FIELD>`` variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from featurelens.kit import service_config
from featurelens.kit.stores import StoreSettings

DEFAULT_PORT = 50052
#: Torch devices the service accepts; anything else is a configuration mistake caught at start-up.
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")

Dtype = Literal["float32", "float64", "bfloat16", "float16"]

#: Default caps of a training run's size. A million latents at d_in 1536 is 1.5 billion weights per
#: matrix, some 24 GiB with gradients and Adam state, so the size is capped by weights, not latents.
MAX_NUM_LATENTS = 131_072
MAX_TRAIN_PARAMETERS = 2**26
#: Default cap of the rows a Train call reads from a collection or file (a seeded sample past it).
MAX_TRAIN_ROWS = 1_000_000


class SaeSettings(StoreSettings):
    """Everything the sae service can be configured with (see the service README)."""

    model_config = service_config("SAE")

    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    data_dir: Path = Field(
        Path(".featurelens/sae"),
        description="Folder for the service's local state (models_dir defaults to <data_dir>/models).",
    )
    models_dir: Path | None = Field(
        None, description="Folder of SAE checkpoints, one <sae_id>/ folder each; empty = <data_dir>/models."
    )
    default_sae_id: str = Field(
        "",
        description="SAE used when a request names none; empty = the one marked default in models_dir "
        "(the first SAE trained there, or the newest of a folder without a marker, marked once).",
    )
    device: str = Field(
        "cpu", description='Torch device for inference and training: "cpu", "cuda", "cuda:1".'
    )
    dtype: Dtype = Field("float32", description="Dtype the SAEs are loaded in for inference.")
    max_loaded_saes: int = Field(4, ge=1, description="SAEs kept loaded on the device at once (LRU).")

    max_batch: int = Field(
        4096,
        ge=1,
        description="Most rows in one Encode or Decode call (and features in one DecoderDirections).",
    )
    batch_window_ms: float = Field(
        1.0,
        ge=0,
        description="How long the encode batcher waits for more rows once a request is queued, while "
        "callers overlap (a lone caller never waits).",
    )
    batch_max_rows: int = Field(
        1024, ge=1, description="Most rows the encode batcher runs in one forward pass."
    )
    inference_threads: int = Field(
        1, ge=0, description="Torch threads of the inference thread; 0 = torch's default (one per core)."
    )

    train_data_roots: list[Path] = Field(
        default_factory=list,
        description="Folders the Train RPC may read embedding stores from, as a JSON list; "
        "empty = Train is disabled.",
    )
    max_num_latents: int = Field(
        MAX_NUM_LATENTS, ge=1, description="Largest num_latents a Train call may ask for."
    )
    max_train_parameters: int = Field(
        MAX_TRAIN_PARAMETERS,
        ge=1,
        description="Largest num_latents × d_in (the size of each of the SAE's two weight matrices) a "
        "Train call may ask for: the default, 2^26, trains in about 2 GiB (weights, gradients and Adam "
        "state), e.g. 43,690 latents at d_in 1536.",
    )
    max_train_epochs: int = Field(
        1000, ge=1, description="Most epochs (and the largest patience) a Train call may ask for."
    )
    max_train_batch_size: int = Field(
        65_536, ge=2, description="Largest batch_size (rows per step) a Train call may ask for."
    )
    train_from_store: bool = Field(
        False,
        description="Let Train read a collection's vectors (QdrantSource) from the Qdrant store that "
        "storage, edge_path and qdrant_url name; false = this server has no Qdrant store.",
    )
    max_train_rows: int = Field(
        MAX_TRAIN_ROWS,
        ge=1,
        description="Most rows a Train call reads from a collection or a file: more are reduced to a "
        "seeded uniform sample (a float32 file of at most max_train_rows × dim × 4 bytes in "
        "<data_dir>/train-work).",
    )
    train_progress_interval_s: float = Field(
        0.5, gt=0, description="Seconds between Train progress messages (epoch ends are always sent)."
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE.match(value):
            raise ValueError(f'device must be "cpu", "cuda" or "cuda:<n>", got {value!r}')
        return value

    @field_validator("models_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # FEATURELENS_SAE_MODELS_DIR="" means "the default", not the current directory.
        return None if value == "" else value

    @property
    def checkpoints_dir(self) -> Path:
        """Where the SAE checkpoints live: ``models_dir``, or ``<data_dir>/models``."""
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"
