"""Scores of predicted activations: parse failures left out and counted, no NaN, AUROC ties half."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from featurelens.interp.scores import Scores, auroc, pearson, score_predictions
from featurelens.interp.types import ExampleDocument, FeatureExamples


def examples(firing: list[float], n_random: int, n_hard: int) -> FeatureExamples:
    """Held-out firing documents with the given activations, then random and hard negatives."""
    return FeatureExamples(
        feature=3,
        train_firing=(ExampleDocument("shown", "shown text", 9.0),),
        train_negatives=(),
        test_firing=tuple(ExampleDocument(f"f{i}", "t", a) for i, a in enumerate(firing)),
        test_random=tuple(ExampleDocument(f"r{i}", "t", 0.0) for i in range(n_random)),
        test_hard=tuple(ExampleDocument(f"h{i}", "t", 0.0) for i in range(n_hard)),
    )


def test_perfect_predictions_score_one_everywhere() -> None:
    ex = examples([3.0, 2.0, 1.5, 2.5], 2, 2)
    truth = [d.activation / 3.0 for d in ex.test_documents]
    scores = score_predictions(ex, truth)
    assert scores == Scores(
        pearson_r=pytest.approx(1.0),  # type: ignore[arg-type]
        f1=1.0,
        auroc=1.0,
        auroc_hard=1.0,
        balanced_accuracy=1.0,
        parse_failures=0,
        scored=8,
        note="",
    )


def test_scores_agree_with_scipy_and_scikit_learn_on_random_predictions() -> None:
    rng = np.random.default_rng(0)
    ex = examples(list(rng.random(20) + 0.1), 10, 10)
    values = list(rng.random(40))
    scores = score_predictions(ex, values, threshold=0.5)
    truth = np.array([d.activation for d in ex.test_documents])
    said = np.array(values) >= 0.5
    assert scores.pearson_r == pytest.approx(pearsonr(values, truth).statistic)
    assert scores.f1 == pytest.approx(f1_score(truth > 0, said))
    assert scores.balanced_accuracy == pytest.approx(balanced_accuracy_score(truth > 0, said))
    labels = [1] * 20 + [0] * 10
    assert scores.auroc == pytest.approx(roc_auc_score(labels, values[:30]))
    assert scores.auroc_hard == pytest.approx(roc_auc_score(labels, values[:20] + values[30:]))


def test_ties_count_half_in_the_auroc() -> None:
    assert auroc([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert auroc([2.0, 1.0], [1.0, 0.0]) == pytest.approx(0.875)
    assert auroc([], [1.0]) is None


def test_parse_failures_are_left_out_and_counted_never_read_as_zero() -> None:
    ex = examples([1.0, 1.0], 2, 0)
    # Read as 0, the failed firing prediction would rank below both negatives (AUROC 0.5).
    scores = score_predictions(ex, [0.9, None, 0.2, 0.1])
    assert scores.parse_failures == 1
    assert scores.scored == 3
    assert scores.auroc == 1.0
    assert scores.f1 == 1.0
    assert "1 prediction(s) could not be parsed" in scores.note


def test_constant_predictions_give_no_pearson_r_and_say_why() -> None:
    scores = score_predictions(examples([1.0, 2.0], 2, 2), [0.5] * 6)
    assert scores.pearson_r is None
    assert "predictions are constant" in scores.note
    assert scores.auroc == 0.5
    assert scores.balanced_accuracy == 0.5
    assert not any(
        math.isnan(v) for v in (scores.f1, scores.auroc, scores.auroc_hard, scores.balanced_accuracy)
    )


def test_constant_truth_gives_no_pearson_r_and_says_why() -> None:
    scores = score_predictions(examples([], 3, 0), [0.1, 0.2, 0.3])
    assert scores.pearson_r is None
    assert "true activations are constant" in scores.note


def test_every_prediction_failing_scores_nothing_and_says_so() -> None:
    scores = score_predictions(examples([1.0], 1, 1), [None, None, None])
    assert scores.scored == 0
    assert scores.parse_failures == 3
    assert scores.pearson_r is None
    assert (scores.auroc, scores.auroc_hard, scores.f1, scores.balanced_accuracy) == (0.5, 0.5, 0.0, 0.0)
    assert "3 prediction(s) could not be parsed" in scores.note


def test_an_empty_side_gives_an_auroc_of_one_half_with_a_note() -> None:
    scores = score_predictions(examples([1.0, 2.0], 2, 0), [0.9, 0.8, 0.1, 0.2])
    assert scores.auroc == 1.0
    assert scores.auroc_hard == 0.5
    assert "auroc (hard negatives) is 0.5" in scores.note


def test_rank_based_decisions_call_the_top_n_firing_predictions_firing() -> None:
    ex = examples([1.0, 1.0, 1.0], 3, 0)
    # Cosine-like values: all below 0.5, yet ranked perfectly.
    values = [0.31, 0.30, 0.12, 0.20, 0.10, 0.05]
    assert score_predictions(ex, values, threshold=0.5).f1 == 0.0
    by_rank = score_predictions(ex, values, threshold=None)
    # The top three are 0.31, 0.30 and 0.20: two firing, one random negative.
    assert by_rank.f1 == pytest.approx(2 / 3)
    assert by_rank.balanced_accuracy == pytest.approx(2 / 3)


def test_rank_based_decisions_count_every_tie_at_the_cut_as_firing() -> None:
    scores = score_predictions(examples([1.0, 1.0], 2, 0), [0.5, 0.3, 0.3, 0.1], threshold=None)
    # The cut is the 2nd highest value, 0.3: three documents are called firing.
    assert scores.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))


def test_values_must_align_with_the_held_out_documents_and_be_finite() -> None:
    ex = examples([1.0], 1, 1)
    with pytest.raises(ValueError, match="values has 2 entries for 3 held-out documents"):
        score_predictions(ex, [0.1, 0.2])
    with pytest.raises(ValueError, match=r"values\[1\] is nan; use None"):
        score_predictions(ex, [0.1, float("nan"), 0.3])


def test_pearson_of_fewer_than_two_values_is_undefined() -> None:
    assert pearson([1.0], [2.0]) == (None, "pearson_r undefined: 1 scored document(s)")
