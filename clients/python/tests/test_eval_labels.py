"""The labels part: score distributions and the clean share on constructed label lists, and the
whole part against conftest's faked labelling service (five canned labels of sae-32-k2: Pearson r
0.83, 0.72, 0.61, -0.05 and one undefined; every embedding AUROC 0.88)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from featurelens.client import FeatureLabel, FeaturelensClient
from featurelens.evaluation.labels import (
    BINS,
    distribution,
    histogram,
    is_clean,
    label_statistics,
    run_labels,
)
from featurelens.evaluation.report import write_report

SAE = "sae-32-k2"
BASE = FeatureLabel(
    sae_id=SAE,
    feature=0,
    label="dark matter",
    pearson_r=0.5,
    f1=0.6,
    interpreter_model="offline",
    predictor_model="embedding",
    density=0.01,
    created_unix=0,
    auroc=0.0,
    auroc_hard=0.0,
    balanced_accuracy=0.0,
    embedding_auroc=0.7,
    embedding_auroc_hard=0.6,
    prompt_version="offline",
    cost_usd=0.0,
    tokens=0,
    parse_failures=0,
    scored_documents=20,
    example_ids=(),
    score_note="",
)


def _label(feature: int, **fields: Any) -> FeatureLabel:
    return dataclasses.replace(BASE, feature=feature, **fields)


def test_the_distribution_of_a_score_has_its_mean_and_quartiles() -> None:
    dist = distribution([0.1, 0.2, 0.3, 0.4, 0.5])

    assert dist["n"] == 5
    assert dist["mean"] == pytest.approx(0.3)
    assert (dist["q1"], dist["median"], dist["q3"]) == pytest.approx((0.2, 0.3, 0.4))


def test_no_values_give_nan_rather_than_a_made_up_number() -> None:
    dist = distribution([])

    assert dist["n"] == 0
    assert math.isnan(dist["mean"])


def test_a_clean_feature_has_a_high_embedding_auroc_or_a_high_llm_pearson() -> None:
    assert is_clean(_label(1, embedding_auroc=0.85))
    assert not is_clean(_label(2, embedding_auroc=0.75, pearson_r=0.9))  # embedding scorer's r
    assert is_clean(
        _label(3, embedding_auroc=0.5, pearson_r=0.75, predictor_model="gpt-4o-mini", prompt_version="v1")
    )
    assert not is_clean(
        _label(4, embedding_auroc=0.5, pearson_r=0.65, predictor_model="gpt-4o-mini", prompt_version="v1")
    )


def test_statistics_leave_out_scores_no_label_carries_and_undefined_pearson() -> None:
    labels = [
        _label(1, pearson_r=0.2, embedding_auroc=0.9),
        _label(2, pearson_r=0.6, embedding_auroc=0.6),
        _label(3, pearson_r=None, embedding_auroc=0.8),
    ]

    stats = label_statistics(labels)

    assert stats["labels"] == 3
    assert "auroc" not in stats["metrics"]  # every label has 0: the offline labeller did not measure it
    assert stats["metrics"]["pearson_r"]["n"] == 2
    assert stats["metrics"]["pearson_r"]["mean"] == pytest.approx(0.4)
    assert stats["pearson_undefined"] == 1
    assert stats["clean"] == 2
    assert stats["clean_share"] == pytest.approx(2 / 3)
    assert stats["llm_scored"] == 0


def test_without_an_llm_predictor_the_auroc_that_repeats_the_embedding_one_is_left_out() -> None:
    offline = [_label(1, auroc=0.7, auroc_hard=0.6), _label(2, auroc=0.9, auroc_hard=0.5)]
    llm = [_label(3, auroc=0.8, predictor_model="gpt-4o-mini", prompt_version="v1")]

    assert set(label_statistics(offline)["metrics"]) == {
        "pearson_r",
        "f1",
        "embedding_auroc",
        "embedding_auroc_hard",
    }
    assert {"auroc", "auroc_hard"} <= set(label_statistics(offline + llm)["metrics"])


def test_histograms_count_every_value_once_with_the_ends_inside() -> None:
    pearson = histogram([-1.0, -0.99, 0.0, 0.5, 1.0], "pearson_r")
    auroc = histogram([0.0, 1.0, 0.5], "embedding_auroc")

    assert sum(pearson["counts"]) == 5
    assert pearson["counts"][0] == 2
    assert pearson["counts"][-1] == 1
    assert len(pearson["edges"]) == BINS + 1
    assert pearson["edges"][0] == -1.0
    assert auroc["counts"][0] == 1
    assert auroc["counts"][-1] == 1
    assert auroc["edges"][0] == 0.0


def test_the_part_reads_every_label_through_the_sdk_and_draws_the_histograms(
    services_address: str, fake_labelling: Any, tmp_path: Path
) -> None:
    with FeaturelensClient(services_address) as client:
        section = run_labels(client, None)
    write_report(tmp_path, [section], {})

    stats = json.loads((tmp_path / "report.json").read_text())["sections"]["labels"]["saes"][SAE]
    assert stats["labels"] == 5
    assert stats["metrics"]["pearson_r"]["n"] == 4
    assert stats["metrics"]["pearson_r"]["mean"] == pytest.approx((0.83 + 0.72 + 0.61 - 0.05) / 4, abs=1e-6)
    assert stats["clean_share"] == 1.0  # every canned embedding AUROC is 0.88
    assert stats["llm_scored"] == 5
    assert (tmp_path / "label_scores.png").stat().st_size > 0
    assert f"Labels of `{SAE}`" in section.markdown
    assert "0.74" in section.markdown


def test_an_sae_the_labelling_service_does_not_know_has_no_labels_and_no_figure(
    services_address: str, fake_labelling: Any
) -> None:
    with FeaturelensClient(services_address) as client:
        section = run_labels(client, ["sae-unknown"])

    assert section.data["saes"]["sae-unknown"]["labels"] == 0
    assert section.figures == {}
    assert "none stored" in section.markdown
