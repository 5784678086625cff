"""`featurelens eval scaling`: how NMSE falls with the number of latents, on held-out rows too.

The paper (O'Neill et al. 2024, Figure 2) fitted NMSE ≈ a · n^(−b) per k on training batches only
(exponents 0.12 to 0.18): it had no held-out split, so a fit that keeps falling there could be
memorisation. This part trains the same grid with featurelens-core's sweep
(``featurelens.sae.sweep``) and reports the held-out NMSE beside the training NMSE, a power law
per k for each (with R²), and the share of dead latents.

It is the one part of the evaluation that does not go through the services: a sweep trains many
SAEs that nobody will serve, so it trains them here, in this process, like ``featurelens sae
sweep``. featurelens-core and torch are imported inside ``run_scaling`` (the SDK runs without).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featurelens.evaluation.report import Section

if TYPE_CHECKING:
    from featurelens.sae.sweep import SweepCallbacks, SweepResult

logger = logging.getLogger(__name__)

#: The paper's scaling figures (training NMSE; no held-out split), set beside ours.
PAPER = {
    "exponents": "0.12 to 0.18 (NMSE ∝ n^(−b), training NMSE, per k)",
    "example": "astro, k = 64, n = 9,216 latents: training NMSE 0.120",
    "embedding_model": "text-embedding-3-small (d_in 1,536), ~270k astro-ph abstracts",
}


@dataclass(frozen=True)
class ScalingOptions:
    """The grid and recipe of the scaling sweep; every SAE shares the recipe, split and seed."""

    embeddings: Path
    """An embedding store directory (``featurelens embed``) or a ``.npy`` file of (n, d_in)."""
    latents: tuple[int, ...] = (768, 1536, 3072, 6144)
    ks: tuple[int, ...] = (16, 32, 64)
    epochs: int = 10
    batch_size: int = 256
    lr: float = 5e-4
    val_fraction: float = 0.1
    """Rows held out for the held-out NMSE (the same rows for every SAE of the grid)."""
    seed: int = 0
    device: str = "cpu"
    max_rows: int | None = None
    """Use only the first rows (None: all)."""
    work_dir: Path | None = None
    """Where the sweep writes sweep.json (None: a temporary folder, removed afterwards)."""

    def __post_init__(self) -> None:
        if not self.latents or not self.ks:
            raise ValueError("the scaling sweep needs at least one number of latents and one k")
        if any(n < 1 for n in (*self.latents, *self.ks)):
            raise ValueError(f"latents and k must be positive, got {self.latents} and {self.ks}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"epochs must be ≥ 1 and batch_size ≥ 2, got {self.epochs}, {self.batch_size}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(
                f"val_fraction must be in (0, 1): the point is the held-out NMSE; got {self.val_fraction}"
            )

    @classmethod
    def quick(cls, embeddings: Path) -> ScalingOptions:
        """A first look: 3 sizes × 2 k, 5 epochs (a few minutes on 2 CPU cores for 11.6k MiniLM rows)."""
        return cls(embeddings, latents=(768, 1536, 3072), ks=(16, 32), epochs=5)


def load_embeddings(path: Path, max_rows: int | None = None) -> tuple[np.ndarray, str | None]:
    """The vectors (float32, in memory) and model id of an embedding store or a ``.npy`` file."""
    if path.is_dir():
        from featurelens.embedding.store import EmbeddingStore

        # A read-only store takes no lock; its memmap stays valid after close.
        with EmbeddingStore.open(path, read_only=True) as store:
            vectors, model_id = store.vectors(), store.model_id
    elif path.suffix == ".npy" and path.is_file():
        vectors, model_id = np.load(path, mmap_mode="r", allow_pickle=False), None
    else:
        raise ValueError(f"{path} is neither an embedding store directory nor a .npy file")
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"{path} holds no (n, d_in) embeddings (shape {vectors.shape})")
    if max_rows is not None:
        vectors = vectors[:max_rows]
    return np.ascontiguousarray(vectors, dtype=np.float32), model_id


def run_scaling(options: ScalingOptions, callbacks: SweepCallbacks | None = None) -> Section:
    """Train the grid of ``options`` and return the scaling section (``callbacks``: progress)."""
    from featurelens.sae import TrainConfig
    from featurelens.sae.sweep import run_sweep

    vectors, model_id = load_embeddings(options.embeddings, options.max_rows)
    train_cfg = TrainConfig(
        batch_size=options.batch_size,
        lr=options.lr,
        epochs=options.epochs,
        seed=options.seed,
        val_fraction=options.val_fraction,
        device=options.device,
    )
    logger.info(
        "Scaling sweep: latents %s x k %s on %d rows of %s",
        options.latents,
        options.ks,
        len(vectors),
        model_id,
    )
    with tempfile.TemporaryDirectory(prefix="featurelens-scaling-") as scratch:
        result = run_sweep(
            vectors,
            options.latents,
            options.ks,
            train_cfg,
            out_dir=options.work_dir or Path(scratch),
            callbacks=callbacks,
            plots=False,
            embedding_model=model_id,
        )
    data = scaling_data(result, options)
    return Section(
        name="scaling",
        data=data,
        markdown=scaling_markdown(data),
        figures={"scaling_nmse_vs_latents": lambda path: draw_nmse(data, path)},
    )


def scaling_data(result: SweepResult, options: ScalingOptions) -> dict[str, Any]:
    """The section's JSON: every run, the fits per k (held-out and training), the paper's figures."""
    runs = []
    for run in result.runs:
        gap = None if run.val_nmse is None else run.val_nmse / run.train_nmse - 1
        runs.append(
            {
                "num_latents": run.num_latents,
                "k": run.k,
                "train_nmse": run.train_nmse,
                "val_nmse": run.val_nmse,
                "generalisation_gap": gap,
                "dead_fraction": run.dead_fraction,
                "dense_fraction": run.dense_fraction,
                "steps": run.steps,
                "train_seconds": run.train_seconds,
            }
        )
    fits = []
    for k in sorted({run.k for run in result.runs}):
        held_out = result.fits.latents.get(k) if result.fits.nmse_metric == "val_nmse" else None
        training = result.fits.train_latents.get(k)
        fits.append(
            {
                "k": k,
                "val_a": held_out.a if held_out else None,
                "val_exponent": held_out.b if held_out else None,
                "val_r2": held_out.r2 if held_out else None,
                "train_a": training.a if training else None,
                "train_exponent": training.b if training else None,
                "train_r2": training.r2 if training else None,
            }
        )
    return {
        "embeddings": str(options.embeddings),
        "embedding_model": result.embedding_model,
        "rows": result.num_rows,
        "d_in": result.d_in,
        "val_fraction": options.val_fraction,
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "seed": options.seed,
        # Core's training may keep the epoch with the best held-out NMSE (early stopping); None
        # where this core has no such setting.
        "patience": getattr(result.train_config, "patience", None),
        "seconds": result.seconds,
        "cancelled": result.cancelled,
        "runs": runs,
        "fits": fits,
        "paper": PAPER,
    }


def _n(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def scaling_markdown(data: Mapping[str, Any]) -> str:
    """The section's Markdown: a headline, the runs, the fits beside the paper's, what it means."""
    runs, fits = data["runs"], data["fits"]
    lines = ["## Scaling: NMSE against the number of latents", ""]
    if runs:
        largest = max(runs, key=lambda r: (r["num_latents"], r["k"]))
        exponents = [f["val_exponent"] for f in fits if f["val_exponent"] is not None]
        train_exponents = [f["train_exponent"] for f in fits if f["train_exponent"] is not None]
        lines += [
            f"**Scaling: held-out NMSE {_n(largest['val_nmse'])} against training NMSE "
            f"{_n(largest['train_nmse'])} at {largest['num_latents']:,} latents, k = {largest['k']}; "
            f"power-law exponents {_span(exponents)} held-out, {_span(train_exponents)} training "
            "(paper: 0.12 to 0.18, training only).**",
            "",
        ]
    lines += [
        f"{len(runs)} SAEs trained on {data['rows']:,} embeddings of "
        f"`{data['embedding_model'] or 'unknown'}` "
        f"(d_in {data['d_in']}), at most {data['epochs']} epochs, batch {data['batch_size']}, "
        f"lr {data['lr']:g}, "
        f"seed {data['seed']}; the same {data['val_fraction']:.0%} of rows held out for every SAE "
        f"({data['seconds']:.0f} s).",
        "",
        "| latents | k | training NMSE | held-out NMSE | held-out / training − 1 | dead latents |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        gap = run["generalisation_gap"]
        lines.append(
            f"| {run['num_latents']:,} | {run['k']} | {_n(run['train_nmse'])} | {_n(run['val_nmse'])} | "
            f"{'–' if gap is None else f'{gap:+.0%}'} | {run['dead_fraction']:.1%} |"
        )
    if data.get("patience"):
        lines += [
            "",
            f"Training stops early after {data['patience']} epochs without a better held-out NMSE and "
            "keeps the best epoch, so the held-out rows also chose the epoch: their NMSE is a little "
            "optimistic.",
        ]
    lines += [
        "",
        "Power laws NMSE ≈ a · n^(−b) per k (least squares in log-log space):",
        "",
        "| k | held-out b | held-out R² | training b | training R² |",
        "|---:|---:|---:|---:|---:|",
    ]
    for fit in fits:
        lines.append(
            f"| {fit['k']} | {_n(fit['val_exponent'])} | {_n(fit['val_r2'])} | "
            f"{_n(fit['train_exponent'])} | {_n(fit['train_r2'])} |"
        )
    lines += [
        "",
        f"Paper: exponents {data['paper']['exponents']}; {data['paper']['example']} "
        f"({data['paper']['embedding_model']}). Our embeddings, corpus and training budget differ, so "
        "compare the exponents and the held-out gap, not the NMSE levels.",
    ]
    return "\n".join(lines) + "\n"


def _span(values: Sequence[float]) -> str:
    if not values:
        return "–"
    low, high = min(values), max(values)
    return f"{low:.2f}" if abs(high - low) < 0.005 else f"{low:.2f} to {high:.2f}"


def draw_nmse(data: Mapping[str, Any], path: Path) -> None:
    """NMSE against latents, log-log, one colour per k: held-out solid, training dotted, fits dashed
    (the paper's Figure 2 showed the training line only)."""
    # Imported here: matplotlib is slow to import and only the figure needs it. A bare Figure
    # renders with the Agg backend, without pyplot's global state or a display.
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    figure = Figure(figsize=(6.4, 4.6), dpi=110)
    axes = figure.add_subplot()
    ks = sorted({run["k"] for run in data["runs"]})
    fits = {fit["k"]: fit for fit in data["fits"]}
    for index, k in enumerate(ks):
        color = colormaps["viridis"](0.85 * index / max(1, len(ks) - 1))
        group = sorted((r for r in data["runs"] if r["k"] == k), key=lambda r: r["num_latents"])
        xs = np.array([r["num_latents"] for r in group], dtype=float)
        for key, style, name in (("val", "-", "held-out"), ("train", ":", "training")):
            ys = [r[f"{key}_nmse"] for r in group]
            if any(y is None for y in ys):
                continue
            face = color if key == "val" else "none"
            axes.plot(
                xs,
                ys,
                linestyle=style,
                marker="o",
                color=color,
                markerfacecolor=face,
                label=f"k = {k}, {name}",
            )
            a, b = fits.get(k, {}).get(f"{key}_a"), fits.get(k, {}).get(f"{key}_exponent")
            if a is not None and b is not None and len(xs) > 1:
                grid = np.geomspace(xs[0], xs[-1], 50)
                axes.plot(grid, a * grid ** (-b), linestyle="--", color=color, alpha=0.5, linewidth=1)
    axes.set_xscale("log")
    axes.set_yscale("log")
    # NMSE usually spans less than a decade: plain numbers, not powers of ten.
    axes.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    axes.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
    axes.set_xlabel("latents (n)")
    axes.set_ylabel("NMSE")
    axes.set_title("NMSE against latents: held-out (solid) and training (dotted); fits dashed", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="x-small")
    figure.tight_layout()
    figure.savefig(path, format="png")
