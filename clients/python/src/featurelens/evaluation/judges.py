"""The objective judge of a steering trial: which candidate did steering move? No LLM needed.

The paper asked GPT-4o which of five topics a steered result set had moved towards (or away
from). The same question can be answered from the SAE itself: sum each candidate's activation
over the latents of the top hits, before and after steering; the candidate whose sum rose most
(up-weighting) or fell most (down-weighting) is the judge's pick. It reads no labels, so it
judges what steering did to the results, not how well a feature was named.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np

Direction = Literal["up", "down"]

#: Changes closer than this count as equal (sums of float32 activations).
TIE_TOLERANCE = 1e-6


def candidate_totals(
    hit_latents: Iterable[Mapping[int, float]], candidates: Sequence[Sequence[int]]
) -> list[float]:
    """Each candidate's activation summed over the hits' latents; a candidate is a set of latents
    (one feature, or a family's members)."""
    totals = [0.0] * len(candidates)
    for latents in hit_latents:
        for i, members in enumerate(candidates):
            totals[i] += sum(latents.get(feature, 0.0) for feature in members)
    return totals


def objective_pick(
    before: Sequence[float], after: Sequence[float], direction: Direction, rng: np.random.Generator
) -> tuple[int, bool]:
    """The index of the candidate whose total rose most (``up``) or fell most (``down``), and
    whether it was tied with another.

    Ties are broken at random (``rng``), not in the target's favour: when steering moved nothing,
    the judge is right one time in five, which is what a trial that shows nothing is worth.
    """
    if len(before) != len(after) or not before:
        raise ValueError("before and after need one total per candidate")
    sign = 1.0 if direction == "up" else -1.0
    changes = [sign * (a - b) for a, b in zip(after, before, strict=True)]
    best = max(changes)
    tied = [i for i, change in enumerate(changes) if best - change <= TIE_TOLERANCE]
    if len(tied) == 1:
        return tied[0], False
    return int(tied[int(rng.integers(len(tied)))]), True


def dominant_category(doc_ids: Iterable[str], category_of: Mapping[str, str]) -> str | None:
    """The most common primary category of ``doc_ids`` (ties: alphabetically first); None when
    none of them has one."""
    counts = Counter(category_of[d] for d in doc_ids if d in category_of)
    if not counts:
        return None
    return min(counts, key=lambda category: (-counts[category], category))


def category_share(doc_ids: Sequence[str], category: str, category_of: Mapping[str, str]) -> float:
    """The share of ``doc_ids`` whose primary category is ``category`` (0 for no documents)."""
    if not doc_ids:
        return 0.0
    return sum(category_of.get(d) == category for d in doc_ids) / len(doc_ids)
