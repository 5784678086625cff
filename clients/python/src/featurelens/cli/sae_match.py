"""``featurelens sae match A B``: match the features of one served SAE to those of another.

Each feature of SAE A gets its most similar features of SAE B by the cosine of their decoder
directions (through the family service). Between a small SAE and a larger one this shows how
features split: most match closely, some become several features of the larger SAE. The command
prints the best matches and writes, on request, every match with the histogram of the best
(maximum) cosines as JSON and that histogram as a PNG (matplotlib, imported only then).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from featurelens.cli.console import (
    DEFAULT_ADDRESS,
    AddressOption,
    ApiKeyOption,
    TlsCaOption,
    connect,
    console,
    fail,
    reporting_errors,
)
from featurelens.cli.feature_views import number
from featurelens.cli.label import parse_features
from featurelens.client import CrossSaeMatch

#: Matches shown in the terminal; --json writes every one.
SHOWN_MATCHES = 20
#: The max-cosine histogram: HISTOGRAM_BINS equal bins over [-1, 1] (0.05 wide).
HISTOGRAM_BINS = 40


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def max_cosine_histogram(matches: list[CrossSaeMatch]) -> tuple[list[int], list[float]]:
    """Counts of the best match's cosine in HISTOGRAM_BINS bins over [-1, 1], and the bin edges."""
    best = [m.max_cosine for m in matches if m.max_cosine is not None]
    # A cosine comes back a rounding error past ±1 (float32 unit vectors); np.histogram would drop it.
    clipped = np.clip(np.asarray(best, dtype=np.float64), -1.0, 1.0)
    counts, edges = np.histogram(clipped, bins=HISTOGRAM_BINS, range=(-1.0, 1.0))
    return [int(c) for c in counts], [round(float(e), 6) for e in edges]


def match(
    source: Annotated[str, typer.Argument(help="SAE A, whose features are matched.")],
    target: Annotated[str, typer.Argument(help="SAE B, searched for matches.")],
    features: Annotated[
        str | None,
        typer.Option("--features", help="Comma-separated latent ids of A; default: every feature."),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="Matches per feature.")] = 1,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write every match and the max-cosine histogram to this JSON file."),
    ] = None,
    png_path: Annotated[
        Path | None, typer.Option("--png", help="Draw the histogram of max cosines to this PNG file.")
    ] = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Match each feature of SAE A to its most similar features of SAE B (decoder cosine)."""
    chosen = parse_features(features) if features is not None else None
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        matches = client.families.match_features(source, target, features=chosen, top_k=top_k)
    counts, edges = max_cosine_histogram(matches)
    _print_matches(matches, source, target)
    if json_path is not None:
        report = _report(matches, source, target, top_k, counts, edges)
        try:
            json_path.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as error:
            raise fail(f"cannot write --json {json_path}: {error.strerror}") from error
        _say(f"wrote {len(matches):,} matches and the histogram to {json_path}")
    if png_path is not None:
        try:
            _draw_histogram(counts, edges, source, target, png_path)
        except OSError as error:
            raise fail(f"cannot write --png {png_path}: {error.strerror}") from error
        _say(f"drew the histogram of max cosines to {png_path}")


def _print_matches(matches: list[CrossSaeMatch], source: str, target: str) -> None:
    if not matches:
        _say(f"no features of {source} to match")
        return
    table = Table(title=f"features of {source} matched to {target}", title_justify="left")
    table.add_column(source, justify="right")
    table.add_column(f"best in {target}", justify="right")
    table.add_column("cosine", justify="right", no_wrap=True)
    table.add_column("label", overflow="fold")
    for m in matches[:SHOWN_MATCHES]:
        if m.targets:
            top = m.targets[0]
            table.add_row(str(m.source_feature), str(top.feature), number(top.score, 3), top.label or "-")
        else:
            table.add_row(str(m.source_feature), "-", "-", "-")
    console.print(table)
    max_cosines = np.asarray([m.max_cosine for m in matches if m.max_cosine is not None], dtype=np.float64)
    summary = f"{len(matches):,} features of {source} matched"
    if max_cosines.size:
        summary += (
            f"; max cosine median {np.median(max_cosines):.3f}, mean {max_cosines.mean():.3f}, "
            f"{np.mean(max_cosines >= 0.7):.0%} at 0.7 or more"
        )
    if len(matches) > SHOWN_MATCHES:
        summary += f" (showing the first {SHOWN_MATCHES}; --json writes every one)"
    _say(summary)


def _report(
    matches: list[CrossSaeMatch], source: str, target: str, top_k: int, counts: list[int], edges: list[float]
) -> dict[str, Any]:
    return {
        "source_sae_id": source,
        "target_sae_id": target,
        "top_k": top_k,
        "matches": [
            {
                "source_feature": m.source_feature,
                "targets": [{"feature": t.feature, "cosine": t.score, "label": t.label} for t in m.targets],
            }
            for m in matches
        ],
        "max_cosine_histogram": {"bin_edges": edges, "counts": counts},
    }


def _draw_histogram(counts: list[int], edges: list[float], source: str, target: str, path: Path) -> None:
    # Imported here: matplotlib is slow to import and only this option needs it. A bare Figure
    # renders with the Agg backend, without pyplot's global state or a display.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.subplots()
    axes.stairs(counts, edges, fill=True, color="tab:blue")
    # Cosines are rarely negative: show [0, 1] unless some are.
    low = -1.0 if any(count for count, edge in zip(counts, edges, strict=False) if edge < 0) else 0.0
    axes.set_xlim(low, 1.0)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(f"max decoder cosine to a feature of {target}")
    axes.set_ylabel(f"features of {source}")
    axes.set_title(f"best-match decoder cosines, {sum(counts):,} features\n{source} → {target}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png")
