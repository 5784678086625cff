"""Equal-width histograms of a few thousand numbers (densities, activations) for the explorer."""

from __future__ import annotations

import math
from collections.abc import Sequence

from featurelens.services.gateway import models


def histogram(values: Sequence[float], bins: int, lower: float, upper: float) -> list[models.HistogramBin]:
    """Counts of ``values`` in ``bins`` equal bins over [lower, upper] (the last bin is closed)."""
    if upper <= lower:
        upper = lower + 1.0
    width = (upper - lower) / bins
    counts = [0] * bins
    for value in values:
        index = min(int((value - lower) / width), bins - 1)
        counts[max(index, 0)] += 1
    return [
        models.HistogramBin(lower=lower + i * width, upper=lower + (i + 1) * width, count=count)
        for i, count in enumerate(counts)
    ]


def log10_histogram(values: Sequence[float], bins: int) -> list[models.HistogramBin]:
    """Counts of the positive ``values`` by log10, over the range they span."""
    logs = [math.log10(value) for value in values if value > 0]
    if not logs:
        return []
    return histogram(logs, bins, math.floor(min(logs)), math.ceil(max(logs)))
