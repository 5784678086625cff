"""``featurelens sae``: train, evaluate and sweep top-k SAEs in this process, on local embeddings.

EMBEDDINGS is an embedding store directory (written by ``featurelens embed``) or a ``.npy``
file holding an (n, d_in) float matrix. Training runs here with featurelens-core (torch is
imported inside the commands, so the rest of the CLI starts fast and works without it).

``featurelens sae train ... --out MODELS_DIR`` writes the checkpoint to ``MODELS_DIR/<sae_id>/``,
the layout the sae service serves from its models directory, so pointing ``--out`` at that
directory makes the new SAE available to the service. Both write through featurelens-core's
``ModelsFolder``: the run trains into a hidden staging folder (``MODELS_DIR/.train-*``, which the
service never lists) and is renamed into place only when it finished; an existing checkpoint of
the same sae_id (same config, recipe and data) is replaced. The first SAE of a models directory
becomes its default (the ``default`` file: what the service serves to a request naming no SAE); a
later one only with ``--make-default``, so training never changes the default silently.

``featurelens sae train --from-qdrant COLLECTION`` / ``--from-file PATH`` trains on the user's own
vectors instead, on the sae service (through the SDK's ``QdrantTrainSource`` / ``FileTrainSource``):
the service reads a collection of its own Qdrant store, or a .npy / .parquet file inside the folders
it may read, samples at most ``--max-rows`` rows, trains, and registers the SAE in its models
directory. The CLI shows the run's progress and the service's errors as one line each, as every
command that calls a server does. The service reads collections only from a store configured for
it (``FEATURELENS_SAE_TRAIN_FROM_STORE``); ``featurelens up`` gives it none by default, and the
search service's edge folder is not one it can open (that service holds it locked), so the
"no Qdrant store" error says what to change.

``featurelens sae match A B`` (in ``sae_match.py``) calls a server too: the family service matches
the features of two served SAEs.

Training settings left out take featurelens-core's defaults (``SaeConfig`` / ``TrainConfig``),
the same ones a Train call gets for a field it does not set; ``--help`` shows them. ``sae train``
without ``--latents`` sizes the run from the row count with core's ``default_train_size``
(num_latents, and the epochs unless ``--epochs`` is given), as the sae service does for a Train
request with num_latents 0, and as the demo does.

NMSE is shown held-out first: the validation NMSE (rows the SAE never trained on) is the figure
to judge an SAE by; the training NMSE beside it says how far the SAE fits its own rows better.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from featurelens.cli.console import (
    DEFAULT_ADDRESS,
    connect,
    console,
    err_console,
    fail,
    reporting_errors,
)
from featurelens.client import (
    FeaturelensError,
    FileTrainSource,
    QdrantTrainSource,
    SaeInfo,
    TrainProgress,
)
from featurelens.client import SaeConfig as SaeConfigMessage

if TYPE_CHECKING:
    from featurelens.sae import (
        CheckpointInfo,
        EpochMetrics,
        EvalReport,
        SaeConfig,
        StepMetrics,
        TrainConfig,
        TrainResult,
    )
    from featurelens.sae.sweep import SweepResult, SweepRun

sae_app = typer.Typer(
    name="sae",
    help="Train, evaluate and sweep top-k sparse autoencoders locally on stored embeddings, or have "
    "the sae service train one on your own vectors (a Qdrant collection, a .npy or .parquet file); "
    "match the features of two served SAEs.",
    no_args_is_help=True,
)

#: Width of the longest bar of the text density histogram.
HISTOGRAM_WIDTH = 40
#: Steps between progress reports from the library.
STEP_EVERY = 5


def _with_default(text: str, config: str, field: str) -> str:
    """Option help ending in the featurelens-core config field's default (none shown without core).

    The options themselves default to None, "not given", so the dataclass applies its own default:
    one source for the CLI, the SDK, the service and a notebook.
    """
    try:
        from featurelens.sae import config as core  # torch-free: --help stays fast
    except ModuleNotFoundError:
        return text
    value = {f.name: f.default for f in dataclasses.fields(getattr(core, config))}[field]
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text.rstrip('.')}; default {shown}."


def _given(**values: Any) -> dict[str, Any]:
    """The options that were given (not None), as keyword arguments of a core config."""
    return {name: value for name, value in values.items() if value is not None}


EmbeddingsArgument = Annotated[
    Path,
    typer.Argument(help="Embedding store directory (from `featurelens embed`) or a .npy file of (n, d_in)."),
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=2,
        help=_with_default("Rows per training step.", "TrainConfig", "batch_size"),
    ),
]
EpochsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help=_with_default("Passes over the training rows.", "TrainConfig", "epochs"),
    ),
]
MaxStepsOption = Annotated[
    int | None,
    typer.Option(
        "--max-steps", min=1, help="Stop after this many steps (even mid-epoch); default: no limit."
    ),
]
LrOption = Annotated[
    float | None,
    typer.Option(
        "--lr",
        help=_with_default("Adam learning rate (> 0).", "TrainConfig", "lr"),
    ),
]
SeedOption = Annotated[
    int | None,
    typer.Option(
        min=0,
        help=_with_default("Seeds the initialisation, the split and the order.", "TrainConfig", "seed"),
    ),
]
ValFractionOption = Annotated[
    float | None,
    typer.Option(
        "--val-fraction",
        help=_with_default(
            "Fraction of rows held out for validation, in [0, 1); 0 trains on every row without validation.",
            "TrainConfig",
            "val_fraction",
        ),
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        help=_with_default("Torch device: cpu, cuda or cuda:N.", "TrainConfig", "device"),
    ),
]
EvalDeviceOption = Annotated[str, typer.Option(help="Torch device: cpu, cuda or cuda:N.")]
InputNoiseOption = Annotated[
    float | None,
    typer.Option(
        "--input-noise",
        min=0.0,
        max=1.0,
        help=_with_default(
            "Gaussian noise added to each training batch (seeded), a regulariser for small corpora; "
            "0 adds none.",
            "TrainConfig",
            "input_noise",
        ),
    ),
]
PatienceOption = Annotated[
    int | None,
    typer.Option(
        min=0,
        help=_with_default(
            "Stop after this many epochs without a better validation NMSE (the best epoch's SAE is "
            "kept either way); 0 runs every epoch.",
            "TrainConfig",
            "patience",
        ),
    ),
]


#: The --help panel of the options that train on the sae server instead of here.
SERVER_PANEL = "Train on the sae server, from your own vectors"
FromQdrantOption = Annotated[
    str | None,
    typer.Option(
        "--from-qdrant",
        metavar="COLLECTION",
        show_default=False,
        rich_help_panel=SERVER_PANEL,
        help="Have the sae service train on a collection of its own Qdrant store (one featurelens did "
        "not create). The service needs FEATURELENS_SAE_TRAIN_FROM_STORE=true and a store: "
        "`featurelens up` gives it none by default, and it cannot share the search service's edge "
        "folder (that service holds it locked), so point it at a Qdrant server "
        "(FEATURELENS_SAE_STORAGE=server, FEATURELENS_SAE_QDRANT_URL) or export the vectors and use "
        "--from-file.",
    ),
]
VectorOption = Annotated[
    str | None,
    typer.Option(
        "--vector",
        metavar="NAME",
        show_default=False,
        rich_help_panel=SERVER_PANEL,
        help="The collection's named dense vector (--from-qdrant); default: its unnamed default vector.",
    ),
]
FromFileOption = Annotated[
    str | None,
    typer.Option(
        "--from-file",
        metavar="PATH",
        show_default=False,
        rich_help_panel=SERVER_PANEL,
        help="Have the sae service train on a .npy (2-D float array) or .parquet file on the server, "
        "inside the folders it may read (FEATURELENS_SAE_TRAIN_DATA_ROOTS; with `featurelens up`: its "
        "data folder and working directory). A relative PATH is looked up under those folders.",
    ),
]
ColumnOption = Annotated[
    str | None,
    typer.Option(
        "--column",
        metavar="NAME",
        show_default=False,
        rich_help_panel=SERVER_PANEL,
        help="The Parquet column of float lists (--from-file with a .parquet file).",
    ),
]
MaxRowsOption = Annotated[
    int | None,
    typer.Option(
        "--max-rows",
        min=1,
        show_default=False,
        rich_help_panel=SERVER_PANEL,
        help="Train on a seeded sample of at most this many rows; default: the server's limit "
        "(FEATURELENS_SAE_MAX_TRAIN_ROWS).",
    ),
]
ServerAddressOption = Annotated[
    str,
    typer.Option(
        "--address",
        envvar="FEATURELENS_ADDRESS",
        rich_help_panel=SERVER_PANEL,
        help="host:port of the featurelens server (or of the sae service's own port).",
    ),
]
ServerApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="FEATURELENS_API_KEY",
        show_default=False,
        rich_help_panel=SERVER_PANEL,
        help="API key of a server that requires one (prefer the environment variable).",
    ),
]
ServerTlsCaOption = Annotated[
    Path | None,
    typer.Option(
        "--tls-ca",
        envvar="FEATURELENS_TLS_CA_FILE",
        rich_help_panel=SERVER_PANEL,
        help="PEM CA bundle: connect over TLS, verifying the server with it.",
    ),
]


# -- inputs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Embeddings:
    """Embeddings to train or evaluate on, memory-mapped where possible."""

    vectors: np.ndarray
    model_id: str | None


def _open_embeddings(path: Path) -> _Embeddings:
    """The vectors of an embedding store directory or a .npy file; exit 2 with a sentence otherwise."""
    if path.is_dir():
        try:
            from featurelens.embedding.store import EmbeddingStore, EmbeddingStoreError
        except ModuleNotFoundError as error:
            raise fail(
                "`featurelens sae` needs featurelens-core: pip install 'featurelens-client[server]'"
            ) from error
        try:
            # A read-only store takes no lock; its memmap stays valid after close.
            with EmbeddingStore.open(path, read_only=True) as store:
                vectors, model_id = store.vectors(), store.model_id
        except EmbeddingStoreError as error:
            raise fail(str(error), code=2) from error
    elif path.is_file() and path.suffix == ".npy":
        try:
            vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise fail(f"{path} is not a readable .npy file: {error}", code=2) from error
        model_id = None
        if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
            raise fail(
                f"{path} must hold a 2-D float matrix (n, d_in), "
                f"found shape {vectors.shape} of {vectors.dtype}.",
                code=2,
            )
    elif not path.exists():
        raise fail(
            f"{path} does not exist; pass an embedding store directory (from `featurelens embed`) "
            "or a .npy file.",
            code=2,
        )
    else:
        raise fail(f"{path} is neither an embedding store directory nor a .npy file.", code=2)
    if len(vectors) == 0:
        raise fail(f"{path} holds no embeddings yet.", code=2)
    return _Embeddings(vectors, model_id)


def _check_device(device: str) -> None:
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise fail(f"--device must be cpu, cuda or cuda:N, got {device!r}.", code=2) from error
    if kind not in ("cpu", "cuda"):
        raise fail(f"--device must be cpu, cuda or cuda:N, got {device!r}.", code=2)
    if kind == "cuda" and not torch.cuda.is_available():
        raise fail(f"--device {device} was asked for, but CUDA is not available here; use --device cpu.", 2)


def _train_config(
    batch_size: int | None,
    lr: float | None,
    epochs: int | None,
    max_steps: int | None,
    seed: int | None,
    val_fraction: float | None,
    device: str | None,
    out: Path,
    patience: int | None = None,
    input_noise: float | None = None,
) -> TrainConfig:
    """The TrainConfig of `sae train` and `sae sweep` (None: core's default), --device and --out
    checked; exit 2 otherwise."""
    from featurelens.sae import SaeConfigError, TrainConfig

    given = _given(
        batch_size=batch_size,
        lr=lr,
        epochs=epochs,
        max_steps=max_steps,
        seed=seed,
        val_fraction=val_fraction,
        device=device,
        patience=patience,
        input_noise=input_noise,
    )
    try:
        train_cfg = TrainConfig(**given).validate()
    except SaeConfigError as error:
        raise fail(str(error), code=2) from error
    _check_device(train_cfg.device)
    if out.exists() and not out.is_dir():
        raise fail(f"--out {out} is a file; it must be a directory.", code=2)
    return train_cfg


def _parse_list(value: str, option: str) -> list[int]:
    """Parse "3072,4608,6144"; exit 2 with a sentence naming the option otherwise."""
    try:
        numbers = [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        numbers = []
    if not numbers or any(n <= 0 for n in numbers):
        raise fail(f"{option} takes comma-separated positive whole numbers like 768,1536; got {value!r}.", 2)
    return numbers


# -- progress -------------------------------------------------------------------------------------------


def _progress(*, transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TextColumn("val NMSE {task.fields[val]} train NMSE {task.fields[nmse]} dead {task.fields[dead]}"),
        TextColumn("{task.fields[rate]} ETA {task.fields[eta]}"),
        console=err_console,
        transient=transient,
    )


_EMPTY_FIELDS: dict[str, Any] = {"val": "-", "nmse": "-", "dead": "-", "rate": "- rows/s", "eta": "-:--"}


def _step_fields(metrics: StepMetrics) -> dict[str, Any]:
    return {
        "completed": metrics.step,
        "total": metrics.total_steps,
        "nmse": f"{metrics.nmse:.4f}",
        "dead": f"{100 * metrics.dead_fraction:.1f}%",
        "rate": f"{metrics.samples_per_s:,.0f} rows/s",
        "eta": _clock(metrics.eta_s),
    }


def _epoch_fields(metrics: EpochMetrics) -> dict[str, Any]:
    """The validation NMSE of the epoch that ended (best so far in brackets, when it is another)."""
    if metrics.val_nmse is None:
        return {}
    text = f"{metrics.val_nmse:.4f}"
    if metrics.best_val_nmse is not None and metrics.best_val_nmse < metrics.val_nmse:
        text += f" (best {metrics.best_val_nmse:.4f})"
    return {"val": text}


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-:--"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return _clock(seconds)


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# -- train ----------------------------------------------------------------------------------------------


@sae_app.command("train")
def train(
    k: Annotated[int, typer.Option("--k", min=1, help="Latents kept per input by the top-k activation.")],
    embeddings: Annotated[
        Path | None,
        typer.Argument(
            help="Embedding store directory (from `featurelens embed`) or a .npy file of (n, d_in), "
            "trained on here; or leave it out and name a source on the sae server with --from-qdrant "
            "or --from-file.",
            metavar="EMBEDDINGS",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Models directory: the checkpoint goes to OUT/<sae_id>/ (needed when training here; "
            "a run on the server writes to the sae service's own models directory).",
            show_default=False,
        ),
    ] = None,
    latents: Annotated[
        int | None,
        typer.Option(
            "--latents",
            min=1,
            help="Number of latents (dictionary size); default: from the row count, at least 50 "
            "training rows per latent (featurelens.sae.default_train_size).",
        ),
    ] = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Passes over the training rows (at most: early stopping may end sooner); default "
            "without --latents: enough to see about 1,000,000 rows, 1 to 200 "
            "(featurelens.sae.default_train_size); with --latents: TrainConfig's default, 1.",
        ),
    ] = None,
    patience: PatienceOption = None,
    input_noise: InputNoiseOption = None,
    max_steps: MaxStepsOption = None,
    seed: SeedOption = None,
    val_fraction: ValFractionOption = None,
    device: DeviceOption = None,
    k_aux: Annotated[
        int | None,
        typer.Option(
            "--k-aux",
            min=0,
            help=_with_default("Dead latents used by AuxK; 0: 2*k.", "SaeConfig", "k_aux"),
        ),
    ] = None,
    auxk_coef: Annotated[
        float | None,
        typer.Option(
            "--auxk-coef",
            min=0.0,
            help=_with_default("Weight of the AuxK loss; 0 switches it off.", "SaeConfig", "auxk_coef"),
        ),
    ] = None,
    dead_steps: Annotated[
        int | None,
        typer.Option(
            "--dead-steps",
            min=0,
            help=_with_default(
                "Steps unfired before a latent is dead; 0: one epoch.", "SaeConfig", "dead_steps_threshold"
            ),
        ),
    ] = None,
    multik_coef: Annotated[
        float | None,
        typer.Option(
            "--multik-coef",
            min=0.0,
            help=_with_default(
                "Weight of the multi-k loss (the top --multik-k latents); 0 skips it.",
                "SaeConfig",
                "multik_coef",
            ),
        ),
    ] = None,
    multik_k: Annotated[
        int | None,
        typer.Option(
            "--multik-k",
            min=0,
            help=_with_default("Latents of the multi-k loss; 0: 4*k.", "SaeConfig", "multik_k"),
        ),
    ] = None,
    embedding_model: Annotated[
        str | None,
        typer.Option(
            "--embedding-model",
            help="Name of the embedding model (default: the store's); training here only.",
        ),
    ] = None,
    make_default: Annotated[
        bool,
        typer.Option(
            "--make-default",
            help="Make the new SAE the default of OUT, or of the sae service for a run there (the one "
            "the service uses when a request names none). The first SAE of OUT becomes its default "
            "anyway; later ones only with this.",
        ),
    ] = False,
    from_qdrant: FromQdrantOption = None,
    vector: VectorOption = None,
    from_file: FromFileOption = None,
    column: ColumnOption = None,
    max_rows: MaxRowsOption = None,
    address: ServerAddressOption = DEFAULT_ADDRESS,
    api_key: ServerApiKeyOption = None,
    tls_ca: ServerTlsCaOption = None,
) -> None:
    """Train a top-k SAE on stored embeddings and write its checkpoint to OUT/<sae_id>/, or have
    the sae service train one on your own vectors (--from-qdrant, --from-file).

    Name one source: EMBEDDINGS (trained here; --out, --device and --embedding-model go with it) or
    a source on the server (the SAE goes to the service's models directory). The shape and training
    options apply to both. The SAE kept is the one of the epoch with the best validation NMSE.
    """
    server_source = _server_source(embeddings, from_qdrant, vector, from_file, column, max_rows)
    if server_source is not None:
        _refuse_local_options(out=out, device=device, embedding_model=embedding_model)
        config = SaeConfigMessage(
            num_latents=latents or 0,
            k=k,
            k_aux=k_aux,
            auxk_coef=auxk_coef,
            dead_steps_threshold=dead_steps,
            multik_coef=multik_coef,
            multik_k=multik_k,
        )
        settings = _given(
            batch_size=batch_size,
            learning_rate=lr,
            epochs=epochs,
            max_steps=max_steps,
            seed=seed,
            val_fraction=val_fraction,
            patience=patience,
            input_noise=input_noise,
        )
        server = _Server(address, api_key, tls_ca)
        _train_on_server(server, server_source, config, settings, make_default=make_default)
        return
    if embeddings is None or out is None:
        raise typer.BadParameter(
            "training here needs EMBEDDINGS and --out OUT", param_hint="'EMBEDDINGS', '--out'"
        )
    data = _open_embeddings(embeddings)
    try:
        from featurelens.sae import SaeConfig, SaeConfigError, TrainConfig, default_train_size
    except ModuleNotFoundError as error:
        raise fail("`featurelens sae` needs torch and featurelens-core[sae] installed.") from error
    if latents is None:
        try:
            size = default_train_size(
                len(data.vectors),
                k=k,
                val_fraction=TrainConfig.val_fraction if val_fraction is None else val_fraction,
            )
        except ValueError as error:
            raise fail(str(error), code=2) from error
        latents = size.num_latents
        epochs = epochs or size.epochs
    try:
        loss = _given(
            k_aux=k_aux,
            auxk_coef=auxk_coef,
            dead_steps_threshold=dead_steps,
            multik_coef=multik_coef,
            multik_k=multik_k,
        )
        sae_cfg = SaeConfig(d_in=int(data.vectors.shape[1]), num_latents=latents, k=k, **loss).validate()
    except SaeConfigError as error:
        raise fail(str(error), code=2) from error
    train_cfg = _train_config(
        batch_size, lr, epochs, max_steps, seed, val_fraction, device, out, patience, input_noise
    )

    model_name = embedding_model or data.model_id
    result, final_dir, seconds = _train_into(
        out, data.vectors, sae_cfg, train_cfg, model_name, make_default=make_default
    )
    _print_train_summary(result, final_dir, model_name, seconds)


def _train_into(
    out: Path,
    vectors: np.ndarray,
    sae_cfg: SaeConfig,
    train_cfg: TrainConfig,
    model_name: str | None,
    *,
    make_default: bool,
) -> tuple[TrainResult, Path, float]:
    """Train with a progress bar into a staging folder of `out`, then register it as out/<sae_id>
    (the default of `out` when asked, or when it is the first SAE there)."""
    from featurelens.sae import ModelsFolder, SaeCheckpointError, SaeConfigError, TrainCallbacks, train_sae

    folder = ModelsFolder(out)
    started = time.perf_counter()
    description = f"L={sae_cfg.num_latents} k={sae_cfg.k}"
    try:
        with folder.staging() as staging, _progress() as bar:
            task = bar.add_task(description, total=None, **_EMPTY_FIELDS)
            result = train_sae(
                vectors,
                sae_cfg,
                train_cfg,
                callbacks=TrainCallbacks(
                    on_step=lambda m: bar.update(task, **_step_fields(m)),
                    on_epoch_end=lambda m: bar.update(task, **_epoch_fields(m)),
                    step_every=STEP_EVERY,
                ),
                checkpoint_dir=staging,
                embedding_model=model_name,
            )
            final_dir = folder.register(staging, make_default=make_default).path
    except (SaeConfigError, SaeCheckpointError) as error:
        raise fail(str(error), code=2) from error
    except KeyboardInterrupt:
        raise fail("interrupted; no checkpoint was written", code=130) from None
    return result, final_dir, time.perf_counter() - started


def _print_train_summary(result: TrainResult, path: Path, model_name: str | None, seconds: float) -> None:
    from featurelens.sae import ModelsFolder

    is_default = ModelsFolder(path.parent).read_default() == result.sae_id
    cfg = result.sae.cfg
    final = result.final_train
    table = Table(title="trained SAE", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("sae_id", result.sae_id),
        ("checkpoint", str(path)),
        ("default", f"yes ({path.parent / 'default'})" if is_default else "no (--make-default makes it so)"),
        ("embedding model", model_name or "-"),
        ("d_in", str(cfg.d_in)),
        ("num_latents", str(cfg.num_latents)),
        ("k", str(cfg.k)),
        ("steps", f"{result.steps:,} of {result.batch_size:,} rows"),
        ("kept", _kept_text(result)),
        ("val NMSE", _num(result.final_val.nmse if result.final_val else None)),
        ("train NMSE", _num(final.nmse if final else None)),
        ("dead %", _pct(final.dead_fraction if final else None)),
        ("dense %", _pct(final.dense_fraction if final else None)),
        ("samples/s", f"{result.samples_per_s:,.0f}"),
        ("time", _duration(seconds)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def _kept_text(result: TrainResult) -> str:
    """Which epoch's weights the checkpoint holds, and why the run ended."""
    if result.best_epoch is None:
        return "the last step (no validation split)"
    epochs_run = result.val_curve[-1][0] + 1 if result.val_curve else 0
    ending = "; stopped early" if result.stopped_early else ""
    return f"epoch {result.best_epoch + 1} of {epochs_run} (the best validation NMSE{ending})"


# -- train on the server --------------------------------------------------------------------------------

#: The hint added to the sae service's "no Qdrant store" sentence (FAILED_PRECONDITION).
NO_STORE_HINT = (
    "`featurelens up` (the embedded mode) gives the sae service no Qdrant store by default, and it "
    "cannot share the search service's edge folder, which that service holds locked: point it at a "
    "Qdrant server (FEATURELENS_SAE_STORAGE=server, FEATURELENS_SAE_QDRANT_URL), or export the "
    "vectors to a .npy or .parquet file and train with --from-file."
)

ServerSource = QdrantTrainSource | FileTrainSource


@dataclass(frozen=True)
class _Server:
    """Where a run on the server goes, and how to reach it."""

    address: str
    api_key: str | None
    tls_ca: Path | None


def _server_source(
    embeddings: Path | None,
    from_qdrant: str | None,
    vector: str | None,
    from_file: str | None,
    column: str | None,
    max_rows: int | None,
) -> ServerSource | None:
    """The source on the sae server the options name, None to train here on EMBEDDINGS; a usage
    error (exit 2) unless exactly one source is named and each option goes with its source."""
    named = [
        name
        for name, value in (
            ("EMBEDDINGS", embeddings),
            ("--from-qdrant", from_qdrant),
            ("--from-file", from_file),
        )
        if value is not None
    ]
    hint = "'EMBEDDINGS', '--from-qdrant', '--from-file'"
    if not named:
        raise typer.BadParameter(
            "name a training source: EMBEDDINGS (train here), or --from-qdrant COLLECTION or "
            "--from-file PATH (the sae service trains on your vectors)",
            param_hint=hint,
        )
    if len(named) > 1:
        raise typer.BadParameter(
            f"name one training source, not {len(named)} ({' and '.join(named)})", param_hint=hint
        )
    if vector is not None and from_qdrant is None:
        raise typer.BadParameter("names a vector of --from-qdrant's collection", param_hint="'--vector'")
    if column is not None and from_file is None:
        raise typer.BadParameter("names a column of --from-file's Parquet file", param_hint="'--column'")
    if max_rows is not None and embeddings is not None:
        raise typer.BadParameter(
            "samples a source on the server (--from-qdrant, --from-file); EMBEDDINGS trains on every row",
            param_hint="'--max-rows'",
        )
    if from_qdrant is not None:
        return QdrantTrainSource(from_qdrant, vector_name=vector or "", max_rows=max_rows or 0)
    if from_file is not None:
        return FileTrainSource(from_file, column=column or "", max_rows=max_rows or 0)
    return None


def _refuse_local_options(**given: Any) -> None:
    """A usage error (exit 2) for an option of training here, given with a source on the server."""
    for name, value in given.items():
        if value is not None:
            option = "--" + name.replace("_", "-")
            raise typer.BadParameter(
                "is for training here, on EMBEDDINGS; the sae service trains on its own device and "
                "writes the SAE to its own models directory",
                param_hint=f"'{option}'",
            )


def _source_text(source: ServerSource) -> str:
    if isinstance(source, QdrantTrainSource):
        vector = f"vector {source.vector_name!r}" if source.vector_name else "the unnamed default vector"
        return f"collection {source.collection!r}, {vector}"
    return f"{source.path}, column {source.column!r}" if source.column else source.path


def _train_on_server(
    server: _Server,
    source: ServerSource,
    config: SaeConfigMessage,
    settings: dict[str, Any],
    *,
    make_default: bool,
) -> None:
    """Have the sae service train on `source`, with a progress bar; print the new SAE.

    The service's errors are one line each (as every command that calls a server shows them), the
    "no Qdrant store" one with what to change.
    """
    started = time.perf_counter()
    result: SaeInfo | None = None
    with reporting_errors(server.address), connect(server.address, server.api_key, server.tls_ca) as client:
        try:
            # Transient: a run that fails leaves one error line, and the summary repeats the figures.
            with _progress(transient=True) as bar:
                fields = _EMPTY_FIELDS | {"rate": "- steps/s"}
                task = bar.add_task("reading rows on the server", total=None, **fields)
                for update in client.sae.train(source, config, make_default=make_default, **settings):
                    if update.progress.stage == "prepare" and update.progress.message:
                        bar.console.print(update.progress.message, highlight=False, soft_wrap=True)
                    bar.update(task, **_server_fields(update))
                    result = update.result or result
        except FeaturelensError as error:
            if isinstance(source, QdrantTrainSource) and "no Qdrant store" in error.details:
                raise fail(f"{error.code.name}: {error.details}. {NO_STORE_HINT}") from error
            raise
        except KeyboardInterrupt:
            raise fail(
                "interrupted; the sae service stops the run and keeps no checkpoint", code=130
            ) from None
    if result is None:
        raise fail("the sae service ended the run without a trained SAE")
    _print_server_summary(result, server.address, _source_text(source), time.perf_counter() - started)


def _server_fields(update: TrainProgress) -> dict[str, Any]:
    """The progress bar's fields from one Train message (-1 on the wire: not known yet)."""
    progress = update.progress
    if progress.stage == "prepare":
        return {"description": "training"}
    fields: dict[str, Any] = {
        "description": "training" if progress.stage != "done" else "done",
        "completed": progress.done,
        "total": progress.total or None,
        "nmse": f"{update.nmse:.4f}",
        "dead": f"{100 * update.dead_fraction:.1f}%",
        "rate": f"{progress.rate_per_s:,.1f} steps/s",
        "eta": _clock(progress.eta_s if progress.eta_s >= 0 else math.inf),
    }
    if update.val_nmse >= 0:
        fields["val"] = f"{update.val_nmse:.4f}"
    return fields


def _print_server_summary(info: SaeInfo, address: str, source: str, seconds: float) -> None:
    cfg, metrics = info.config, info.metrics
    if metrics.best_epoch is None:
        kept = "the last step (no validation split)"
    else:
        ending = "; stopped early" if metrics.stopped_early else ""
        kept = f"epoch {metrics.best_epoch + 1} (the best validation NMSE{ending})"
    table = Table(title="trained SAE (on the sae service)", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("sae_id", info.sae_id),
        ("server", address),
        ("trained on", source),
        ("default", "yes" if info.is_default else "no (--make-default makes it so)"),
        ("embedding model", info.embedding_model or "-"),
        ("d_in", str(cfg.d_in)),
        ("num_latents", str(cfg.num_latents)),
        ("k", str(cfg.k)),
        ("steps", f"{metrics.steps:,} ({metrics.samples:,} rows seen)"),
        ("kept", kept),
        ("val NMSE", _num(metrics.val_nmse if metrics.best_epoch is not None else None)),
        ("train NMSE", _num(metrics.train_nmse)),
        ("dead %", _pct(metrics.dead_fraction)),
        ("dense %", _pct(metrics.dense_fraction)),
        ("time", _duration(seconds)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


# -- eval -----------------------------------------------------------------------------------------------


@sae_app.command("eval")
def evaluate_command(
    checkpoint: Annotated[Path, typer.Argument(help="SAE checkpoint directory (MODELS_DIR/<sae_id>).")],
    embeddings: EmbeddingsArgument,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate on the first N rows only.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per batch.")] = 1024,
    device: EvalDeviceOption = "cpu",
    bins: Annotated[int, typer.Option(min=2, max=200, help="Bins of the log10 density histogram.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
) -> None:
    """Reconstruction NMSE, dead and dense fractions and the feature-density histogram of an SAE.

    On the embeddings the SAE was trained on (same fingerprint, no --limit), the NMSE of its
    held-out validation rows comes first and that of its training rows next.
    """
    data = _open_embeddings(embeddings)
    try:
        from featurelens.sae import SaeCheckpointError, evaluate, load_sae, read_checkpoint
    except ModuleNotFoundError as error:
        raise fail("`featurelens sae` needs torch and featurelens-core[sae] installed.") from error
    _check_device(device)
    try:
        info = read_checkpoint(checkpoint)
        sae = load_sae(checkpoint, device=device)
    except SaeCheckpointError as error:
        raise fail(str(error), code=2) from error
    d_in = int(data.vectors.shape[1])
    if d_in != sae.d_in:
        raise fail(
            f"The SAE {info.sae_id} takes {sae.d_in}-dimensional embeddings, "
            f"but {embeddings} holds {d_in}-dimensional ones.",
            code=2,
        )
    if info.embedding_model and data.model_id and info.embedding_model != data.model_id:
        err_console.print(
            f"[yellow]warning:[/] the SAE was trained on {info.embedding_model} embeddings, "
            f"these are {data.model_id}",
            highlight=False,
            soft_wrap=True,
        )
    rows = data.vectors if limit is None else data.vectors[:limit]
    report = evaluate(sae, rows, batch_size, num_bins=bins)
    split = _training_split(info, rows) if limit is None else None
    held_out = None
    if split is not None:
        train_rows, val_rows = split
        held_out = _HeldOut(
            val=evaluate(sae, rows[val_rows.numpy()], batch_size),
            train=evaluate(sae, rows[train_rows.numpy()], batch_size),
        )
    if as_json:
        typer.echo(json.dumps(_report_json(info.sae_id, report, sae.num_latents, held_out)))
        return
    _print_report(info.sae_id, report, sae.num_latents, held_out)


@dataclass(frozen=True)
class _HeldOut:
    """An SAE's figures on its own validation and training rows."""

    val: EvalReport
    train: EvalReport


def _training_split(info: CheckpointInfo, rows: np.ndarray) -> tuple[Any, Any] | None:
    """(train rows, validation rows) of the SAE's own training run, when `rows` are the embeddings
    it was trained on (same fingerprint) and that run held rows out; None otherwise."""
    from featurelens.sae import data_fingerprint, split_rows

    cfg = info.train_config
    if cfg is None or not cfg.val_fraction or info.data_fingerprint is None:
        return None
    if data_fingerprint(rows) != info.data_fingerprint:
        return None
    return split_rows(len(rows), cfg.val_fraction, cfg.seed)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _report_json(
    sae_id: str, report: EvalReport, num_latents: int, held_out: _HeldOut | None = None
) -> dict[str, Any]:
    return {
        "sae_id": sae_id,
        "num_rows": report.num_rows,
        "num_latents": num_latents,
        "val_nmse": _finite_or_none(held_out.val.nmse) if held_out else None,
        "val_rows": held_out.val.num_rows if held_out else None,
        "train_nmse": _finite_or_none(held_out.train.nmse) if held_out else None,
        "nmse": _finite_or_none(report.nmse),
        "dead_fraction": report.dead_fraction,
        "dense_fraction": report.dense_fraction,
        "density_histogram": {
            "bins": [round(edge, 6) for edge in report.histogram_bins],
            "counts": report.histogram_counts,
        },
    }


def _print_report(sae_id: str, report: EvalReport, num_latents: int, held_out: _HeldOut | None) -> None:
    table = Table(title=f"{sae_id} on {report.num_rows:,} rows", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    if held_out is not None:
        table.add_row("val NMSE", f"{_num(held_out.val.nmse)} (its {held_out.val.num_rows:,} held-out rows)")
        table.add_row(
            "train NMSE", f"{_num(held_out.train.nmse)} (its {held_out.train.num_rows:,} training rows)"
        )
        table.add_row("NMSE", f"{_num(report.nmse)} (all rows)")
    else:
        table.add_row("NMSE", _num(report.nmse))
    table.add_row("dead %", f"{_pct(report.dead_fraction)} (never fire on these rows)")
    table.add_row("dense %", f"{_pct(report.dense_fraction)} (fire on more than 10% of the rows)")
    console.print(table)
    console.print(_histogram_text(report, num_latents), highlight=False)


def _histogram_text(report: EvalReport, num_latents: int) -> str:
    """The log10 feature-density histogram as text bars, empty bins at either end left out."""
    counts = report.histogram_counts
    nonzero = [i for i, c in enumerate(counts) if c]
    lines = ["feature density (fraction of rows a latent fires on), log10:"]
    if nonzero:
        peak = max(counts)
        for i in range(nonzero[0], nonzero[-1] + 1):
            low, high = report.histogram_bins[i], report.histogram_bins[i + 1]
            bar = "█" * (max(1, round(HISTOGRAM_WIDTH * counts[i] / peak)) if counts[i] else 0)
            lines.append(f"  {low:6.2f} … {high:6.2f} │{bar:<{HISTOGRAM_WIDTH}} {counts[i]:,}")
    dead = round(report.dead_fraction * num_latents)
    lines.append(f"  {'dead':>15} │ {dead:,} latents never fire")
    return "\n".join(lines)


# -- sweep ----------------------------------------------------------------------------------------------


@sae_app.command("sweep")
def sweep(
    embeddings: EmbeddingsArgument,
    latents: Annotated[
        str, typer.Option("--latents", help="Comma-separated num_latents, e.g. 3072,4608,6144.")
    ],
    ks: Annotated[str, typer.Option("--k", help="Comma-separated k, e.g. 16,32.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for sweep.json, the plots and runs/.")],
    epochs: EpochsOption = None,
    max_steps: MaxStepsOption = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    seed: SeedOption = None,
    val_fraction: ValFractionOption = None,
    device: DeviceOption = None,
    patience: PatienceOption = None,
    input_noise: InputNoiseOption = None,
    save_checkpoints: Annotated[
        bool, typer.Option("--save-checkpoints", help="Keep every run's checkpoint in OUT/runs/<sae_id>/.")
    ] = False,
    plots: Annotated[bool, typer.Option(help="Write the PNG plots.")] = True,
) -> None:
    """Train one SAE per (num_latents, k), fit NMSE power laws in num_latents and in FLOPs, plot them."""
    latent_list = _parse_list(latents, "--latents")
    k_list = _parse_list(ks, "--k")
    data = _open_embeddings(embeddings)
    try:
        from featurelens.sae import SaeConfigError
        from featurelens.sae.sweep import SweepCallbacks, run_sweep, sweep_configs
    except ModuleNotFoundError as error:
        raise fail("`featurelens sae` needs torch and featurelens-core[sae] installed.") from error
    try:
        grid = sweep_configs(int(data.vectors.shape[1]), latent_list, k_list)
    except SaeConfigError as error:
        raise fail(str(error), code=2) from error
    train_cfg = _train_config(
        batch_size, lr, epochs, max_steps, seed, val_fraction, device, out, patience, input_noise
    )

    with _progress() as bar:
        overall = bar.add_task("sweep", total=len(grid), **_EMPTY_FIELDS)
        run_task: list[TaskID] = []

        def on_run_start(index: int, total: int, cfg: SaeConfig) -> None:
            if run_task:
                bar.remove_task(run_task.pop())
            description = f"run {index + 1}/{total}: L={cfg.num_latents} k={cfg.k}"
            run_task.append(bar.add_task(description, total=None, **_EMPTY_FIELDS))

        def on_step(index: int, metrics: StepMetrics) -> None:
            bar.update(run_task[-1], **_step_fields(metrics))

        def on_run_end(index: int, run: SweepRun) -> None:
            bar.update(
                overall,
                completed=index + 1,
                val=_num(run.val_nmse),
                nmse=_num(run.train_nmse),
                dead=_pct(run.dead_fraction),
            )

        try:
            result = run_sweep(
                data.vectors,
                latent_list,
                k_list,
                train_cfg,
                out_dir=out,
                callbacks=SweepCallbacks(
                    on_run_start=on_run_start, on_step=on_step, on_run_end=on_run_end, step_every=STEP_EVERY
                ),
                save_checkpoints=save_checkpoints,
                plots=plots,
                embedding_model=data.model_id,
            )
        except SaeConfigError as error:
            raise fail(str(error), code=2) from error
        except KeyboardInterrupt:
            bar.stop()
            raise fail(f"interrupted; the runs that finished are in {out / 'sweep.json'}", code=130) from None
    _print_sweep(result)


def _print_sweep(result: SweepResult) -> None:
    runs = Table(title=f"{len(result.runs)} SAEs on {result.num_rows:,} rows (d_in {result.d_in})")
    for column in ("latents", "k", "steps", "val NMSE", "train NMSE", "dead %", "dense %", "FLOPs", "time"):
        runs.add_column(column, justify="right", no_wrap=column in ("FLOPs", "time"))
    for run in result.runs:
        runs.add_row(
            str(run.num_latents),
            str(run.k),
            f"{run.steps:,}",
            _num(run.val_nmse),
            _num(run.train_nmse),
            _pct(run.dead_fraction),
            _pct(run.dense_fraction),
            f"{run.flops.dense_equivalent:.2e}",
            _duration(run.train_seconds),
        )
    console.print(runs)

    fits = result.fits
    metric = "held-out" if fits.nmse_metric == "val_nmse" else "training"
    table = Table(
        title=f"power laws of the {metric} NMSE per k (least squares in log-log)",
        caption="NMSE = a·L^-b (L = num_latents); NMSE = c·FLOPs^-e; b train: the training NMSE's b",
    )
    for column in ("k", "a", "b", "R²", "c", "e", "R² ", "b train", "points"):
        table.add_column(column, justify="right")
    for k in sorted(fits.latents):
        by_latents, by_flops, train = fits.latents[k], fits.flops[k], fits.train_latents[k]
        table.add_row(
            str(k),
            f"{by_latents.a:.4g}",
            f"{by_latents.b:.4f}",
            f"{by_latents.r2:.3f}",
            f"{by_flops.a:.4g}",
            f"{by_flops.b:.4f}",
            f"{by_flops.r2:.3f}",
            f"{train.b:.4f}",
            str(by_latents.n_points),
        )
    if fits.latents:
        console.print(table)
    else:
        console.print("no fits: each k needs at least two num_latents", highlight=False)
    console.print(f"wrote {result.json_path}", highlight=False, soft_wrap=True)
    for path in result.plot_paths:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
