"""PNG plots of a scaling sweep (matplotlib, drawn off-screen with the Agg renderer).

Figures are built with matplotlib's object API (no pyplot), so nothing global changes: no
backend is selected and no figure is left open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from featurelens.sae.powerlaw import PowerLawFit

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from featurelens.sae.sweep import ScalingFits, SweepRun

__all__ = ["DENSITY_PLOT", "FLOPS_PLOT", "LATENTS_PLOT", "write_sweep_plots"]

LATENTS_PLOT = "nmse_vs_latents.png"
FLOPS_PLOT = "nmse_vs_flops.png"
DENSITY_PLOT = "feature_density.png"
_DPI = 120


def write_sweep_plots(runs: Sequence[SweepRun], fits: ScalingFits, out_dir: Path) -> list[Path]:
    """Write the three sweep plots into out_dir and return their paths (nothing when runs is empty).

    The NMSE plotted is fits.nmse_metric; when that is the held-out NMSE, the NMSE-vs-latents
    plot also shows the training NMSE (dotted, open markers) with its fit.
    """
    if not runs:
        return []
    held_out = fits.nmse_metric == "val_nmse"
    label = "held-out NMSE" if held_out else "training NMSE"
    latents = _scaling_figure(
        runs,
        [_Series(lambda r: r.nmse, fits.latents, "-", "o", "")]
        + ([_Series(lambda r: r.train_nmse, fits.train_latents, ":", "o", "train, ")] if held_out else []),
        lambda r: float(r.num_latents),
        "num_latents",
        label + (" (solid; training NMSE dotted)" if held_out else ""),
        "L",
    )
    flops = _scaling_figure(
        runs,
        [_Series(lambda r: r.nmse, fits.flops, "-", "o", "")],
        lambda r: float(r.flops.dense_equivalent),
        "training FLOPs (dense-equivalent, forward + backward, batch included)",
        label,
        "C",
    )
    return [
        _save(latents, out_dir / LATENTS_PLOT),
        _save(flops, out_dir / FLOPS_PLOT),
        _save(_density_figure(runs), out_dir / DENSITY_PLOT),
    ]


@dataclass(frozen=True)
class _Series:
    """One NMSE per run, drawn per k with its fit."""

    y_of: Callable[[SweepRun], float]
    fits: dict[int, PowerLawFit]
    linestyle: str
    marker: str
    prefix: str


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).print_png(str(path))
    return path


def _scaling_figure(
    runs: Sequence[SweepRun],
    series: Sequence[_Series],
    x_of: Callable[[SweepRun], float],
    x_label: str,
    y_label: str,
    symbol: str,
) -> Figure:
    from matplotlib.ticker import FormatStrFormatter

    fig = _new_figure(6.4, 4.6)
    ax = fig.add_subplot()
    ks = sorted({r.k for r in runs})
    for color, k in zip(_colors(len(ks)), ks, strict=True):
        group = sorted((r for r in runs if r.k == k), key=x_of)
        xs = np.array([x_of(r) for r in group])
        for line in series:
            solid = line.linestyle == "-"
            ax.plot(
                xs,
                np.array([line.y_of(r) for r in group]),
                linestyle=line.linestyle,
                marker=line.marker,
                markerfacecolor=color if solid else "none",
                color=color,
                label=f"{line.prefix}k = {k}",
            )
            fit = line.fits.get(k)
            if fit is not None:
                grid = np.geomspace(fit.x_min, fit.x_max, 50)
                ax.plot(
                    grid,
                    fit.predict(grid),
                    linestyle="--",
                    color=color,
                    alpha=0.8 if solid else 0.4,
                    label=f"{line.prefix}fit: {fit.a:.3g}·{symbol}^{-fit.b:.3f}  (R² {fit.r2:.3f})",
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    # NMSE usually spans less than a decade: label it in plain numbers, not powers of ten.
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small")
    return fig


def _density_figure(runs: Sequence[SweepRun]) -> Figure:
    ks = sorted({r.k for r in runs})
    latents = sorted({r.num_latents for r in runs})
    rows, cols = len(ks), len(latents)
    fig = _new_figure(max(4.0, 3.0 * cols), max(3.0, 2.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    by_cell = {(r.k, r.num_latents): r for r in runs}
    for i, k in enumerate(ks):
        for j, n_latents in enumerate(latents):
            ax: Axes = axes[i][j]
            run = by_cell.get((k, n_latents))
            if run is None:
                ax.set_axis_off()
                continue
            ax.stairs(run.histogram_counts, run.histogram_bins, fill=True, alpha=0.7)
            ax.set_title(
                f"L={n_latents}, k={k}: dead {100 * run.dead_fraction:.1f}%, "
                f"dense {100 * run.dense_fraction:.1f}%",
                fontsize="small",
            )
            if i == rows - 1:
                ax.set_xlabel("log10 feature density")
            if j == 0:
                ax.set_ylabel("latents")
    fig.suptitle("Feature density on the training rows (dead latents left out)", fontsize="medium")
    return fig


def _colors(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.85 * i / max(1, n - 1)) for i in range(n)] if n > 1 else [cmap(0.3)]
