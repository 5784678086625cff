"""How well predicted activations match the truth on a feature's held-out documents.

The paper scored a label with Pearson r and F1 over 6 documents, got NaN when the predictions
were constant and read an unparsable answer as 0. Here every score is defined on every input:
a parse failure (None) is left out and counted, r is None (with a note saying why) when it is
undefined, and an AUROC with an empty side is 0.5 with a note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from featurelens.interp.types import FeatureExamples

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Scores:
    """A label's scores on one feature's held-out documents."""

    #: Pearson r of predictions against true activations (negatives 0); None when undefined.
    pearson_r: float | None
    #: F1 of "predicted to fire" against "fires".
    f1: float
    #: AUROC of the predictions, held-out firing documents against random negatives.
    auroc: float
    #: AUROC of the predictions, held-out firing documents against hard negatives.
    auroc_hard: float
    #: Mean of the true positive and true negative rates of "predicted to fire".
    balanced_accuracy: float
    #: Predictions that could not be parsed (left out of every score).
    parse_failures: int
    #: Predictions that were scored.
    scored: int
    #: Why a score is a stand-in (undefined r, an empty side); "" when none is.
    note: str = ""


def auroc(positives: npt.ArrayLike, negatives: npt.ArrayLike) -> float | None:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney U / (n+ n-)).

    None when either side is empty.
    """
    pos = np.asarray(positives, dtype=np.float64).reshape(-1)
    neg = np.asarray(negatives, dtype=np.float64).reshape(-1)
    if pos.size == 0 or neg.size == 0:
        return None
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks: a tie counts half
    u = float(ranks[: pos.size].sum()) - pos.size * (pos.size + 1) / 2.0
    return u / (pos.size * neg.size)


def pearson(predicted: npt.ArrayLike, truth: npt.ArrayLike) -> tuple[float | None, str]:
    """Pearson r and "" — or None and the reason when r is undefined (fewer than 2, or constant)."""
    x = np.asarray(predicted, dtype=np.float64).reshape(-1)
    y = np.asarray(truth, dtype=np.float64).reshape(-1)
    if x.size < 2:
        return None, f"pearson_r undefined: {x.size} scored document(s)"
    if np.ptp(x) == 0:
        return None, "pearson_r undefined: the predictions are constant"
    if np.ptp(y) == 0:
        return None, "pearson_r undefined: the true activations are constant"
    r = float(np.corrcoef(x, y)[0, 1])
    return (max(-1.0, min(1.0, r)), "") if math.isfinite(r) else (None, "pearson_r undefined: not finite")


def _check_values(values: Sequence[float | None], expected: int) -> None:
    if len(values) != expected:
        raise ValueError(f"values has {len(values)} entries for {expected} held-out documents")
    for i, value in enumerate(values):
        if value is not None and not math.isfinite(value):
            raise ValueError(f"values[{i}] is {value}; use None for an answer that could not be parsed")


def score_predictions(
    examples: FeatureExamples,
    values: Sequence[float | None],
    threshold: float | None = 0.5,
) -> Scores:
    """Score predictions aligned with ``examples.test_documents`` (firing, random, hard).

    ``threshold`` decides "predicted to fire" for F1 and balanced accuracy: ``value >= threshold``.
    With ``threshold=None`` the decision is by rank, for predictors without a calibrated scale
    (cosines, for one): the scored firing documents number n, and every prediction at least as
    high as the n-th highest counts as firing (ties at the cut all count).
    """
    documents = examples.test_documents
    _check_values(values, len(documents))
    notes: list[str] = []
    parse_failures = sum(1 for v in values if v is None)
    if parse_failures:
        notes.append(f"{parse_failures} prediction(s) could not be parsed and were left out")
    kept = [i for i, v in enumerate(values) if v is not None]
    predicted: FloatArray = np.array([values[i] for i in kept], dtype=np.float64)
    truth: FloatArray = np.array([documents[i].activation for i in kept], dtype=np.float64)
    fires = truth > 0

    n_firing = len(examples.test_firing)
    n_random = len(examples.test_random)
    group = np.array([0] * n_firing + [1] * n_random + [2] * len(examples.test_hard))[kept]

    r, why = pearson(predicted, truth)
    if why:
        notes.append(why)
    aurocs: list[float] = []
    for name, negatives in (("random", 1), ("hard", 2)):
        value = auroc(predicted[group == 0], predicted[group == negatives])
        if value is None:
            notes.append(f"auroc ({name} negatives) is 0.5: no scored firing or {name} negative document")
            value = 0.5
        aurocs.append(value)

    if threshold is None:
        n = int(fires.sum())
        cut = np.sort(predicted)[::-1][n - 1] if n else math.inf
        said_fires = predicted >= cut
    else:
        said_fires = predicted >= threshold
    f1, balanced = _classification(fires, said_fires)
    return Scores(
        pearson_r=r,
        f1=f1,
        auroc=aurocs[0],
        auroc_hard=aurocs[1],
        balanced_accuracy=balanced,
        parse_failures=parse_failures,
        scored=len(kept),
        note="; ".join(notes),
    )


def _classification(fires: npt.NDArray[np.bool_], said_fires: npt.NDArray[np.bool_]) -> tuple[float, float]:
    """F1 and balanced accuracy (over the classes present; 0 when nothing was scored)."""
    tp = int((fires & said_fires).sum())
    fp = int((~fires & said_fires).sum())
    fn = int((fires & ~said_fires).sum())
    tn = int((~fires & ~said_fires).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    rates = []
    if tp + fn:
        rates.append(tp / (tp + fn))
    if tn + fp:
        rates.append(tn / (tn + fp))
    return f1, (sum(rates) / len(rates) if rates else 0.0)
