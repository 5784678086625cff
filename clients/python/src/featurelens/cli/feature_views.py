"""How the commands show features, their labels and their scores."""

from __future__ import annotations

import math
from collections.abc import Iterable

from rich.table import Table

from featurelens.client import FeatureLabel

SCORE_COLUMNS = ("r", "F1", "AUROC", "emb AUROC")
"""The score columns of a label table, in the order ``score_cells`` fills them."""


def quoted(label: str) -> str:
    """A label as the output names it: in single quotes, or "(unlabelled)"."""
    return f"'{label}'" if label else "(unlabelled)"


def number(value: float | None, digits: int = 2) -> str:
    """A score with ``digits`` decimals, "-" when it is undefined."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def score_cells(label: FeatureLabel) -> tuple[str, str, str, str]:
    """Pearson r, F1, AUROC and the embedding scorer's AUROC, as table cells."""
    return number(label.pearson_r), number(label.f1), number(label.auroc), number(label.embedding_auroc)


def best_first(labels: Iterable[FeatureLabel]) -> list[FeatureLabel]:
    """Labels by Pearson r, best first (undefined r last), then by the embedding scorer's AUROC."""

    def key(label: FeatureLabel) -> tuple[bool, float, float]:
        return (label.pearson_r is not None, label.pearson_r or 0.0, label.embedding_auroc)

    return sorted(labels, key=key, reverse=True)


def labels_table(labels: Iterable[FeatureLabel], title: str | None = None) -> Table:
    """A table of labels: feature, label and the scores."""
    table = Table(title=title, title_justify="left")
    table.add_column("feature", justify="right")
    table.add_column("label", overflow="fold")
    for column in SCORE_COLUMNS:
        table.add_column(column, justify="right", no_wrap=True)
    for label in labels:
        table.add_row(str(label.feature), label.label, *score_cells(label))
    return table
