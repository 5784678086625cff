"""The embedding scorer: a label's embedding against the held-out documents', no LLM."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import roc_auc_score

from featurelens.interp.embedding_scorer import (
    EmbeddingPredictor,
    EmbeddingScores,
    score_label_embedding,
)
from featurelens.interp.scores import score_predictions
from featurelens.interp.types import ExampleDocument, FeatureExamples

DIM = 16


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def feature_examples(seed: int = 0, spread: float = 1.0) -> FeatureExamples:
    """Firing documents lean towards axis 0 (more the stronger they fire); negatives do not."""
    rng = np.random.default_rng(seed)

    def document(name: str, activation: float) -> ExampleDocument:
        vector = spread * rng.standard_normal(DIM)
        vector[0] += 3.0 * activation
        return ExampleDocument(name, f"text {name}", activation, unit(vector))

    return FeatureExamples(
        feature=4,
        train_firing=(document("shown", 2.0),),
        train_negatives=(),
        test_firing=tuple(document(f"f{i}", 0.5 + i / 10) for i in range(20)),
        test_random=tuple(document(f"r{i}", 0.0) for i in range(10)),
        test_hard=tuple(document(f"h{i}", 0.0) for i in range(10)),
    )


def cosines(label: np.ndarray, documents: Sequence[ExampleDocument]) -> list[float]:
    return [float(unit(label) @ d.embedding) for d in documents if d.embedding is not None]


def test_a_label_along_the_firing_direction_separates_firing_from_negatives() -> None:
    examples = feature_examples(spread=0.1)
    scores = score_label_embedding(np.eye(DIM)[0] * 5.0, examples)
    assert scores.auroc == 1.0
    assert scores.auroc_hard == 1.0
    assert scores.pearson_r is not None
    assert scores.pearson_r > 0.8
    assert scores.note == ""


def test_the_opposite_label_scores_zero() -> None:
    scores = score_label_embedding(-np.eye(DIM)[0], feature_examples(spread=0.1))
    assert scores.auroc == 0.0
    assert scores.auroc_hard == 0.0


def test_the_auroc_is_scikit_learns_over_the_cosines() -> None:
    examples = feature_examples(seed=3, spread=3.0)
    label = np.random.default_rng(1).standard_normal(DIM)
    scores = score_label_embedding(label, examples)
    firing = cosines(label, examples.test_firing)
    random = cosines(label, examples.test_random)
    hard = cosines(label, examples.test_hard)
    assert scores.auroc == pytest.approx(roc_auc_score([1] * 20 + [0] * 10, firing + random))
    assert scores.auroc_hard == pytest.approx(roc_auc_score([1] * 20 + [0] * 10, firing + hard))
    assert 0.0 < scores.auroc < 1.0


def test_a_held_out_document_without_an_embedding_is_named() -> None:
    examples = feature_examples()
    broken = FeatureExamples(
        feature=4,
        train_firing=examples.train_firing,
        train_negatives=(),
        test_firing=(*examples.test_firing, ExampleDocument("no-vector", "t", 1.0)),
        test_random=examples.test_random,
        test_hard=(),
    )
    with pytest.raises(ValueError, match="document 'no-vector' has no embedding"):
        score_label_embedding(np.ones(DIM), broken)


def test_a_label_of_another_dimension_is_refused_naming_a_document() -> None:
    with pytest.raises(ValueError, match="document 'f0' has an embedding of shape"):
        score_label_embedding(np.ones(DIM + 1), feature_examples())


def test_a_zero_label_vector_is_refused() -> None:
    with pytest.raises(ValueError, match="label vector is empty, zero or not finite"):
        score_label_embedding(np.zeros(DIM), feature_examples())


def test_no_negatives_give_an_auroc_of_one_half_with_a_note() -> None:
    examples = feature_examples()
    firing_only = FeatureExamples(
        feature=4,
        train_firing=examples.train_firing,
        train_negatives=(),
        test_firing=examples.test_firing,
        test_random=(),
        test_hard=(),
    )
    scores = score_label_embedding(np.eye(DIM)[0], firing_only)
    assert scores == EmbeddingScores(0.5, 0.5, scores.pearson_r, scores.note)
    assert "random negative" in scores.note
    assert "hard negative" in scores.note


class AxisEmbedder:
    """Embeds a text as the unit vector along axis len(text) % DIM; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        return np.stack([np.eye(DIM, dtype=np.float32)[len(text) % DIM] for text in texts])


async def test_the_embedding_predictor_predicts_cosines_and_embeds_each_label_once() -> None:
    embedder = AxisEmbedder()
    predictor = EmbeddingPredictor(embedder)
    examples = feature_examples(spread=0.1)
    label = "x" * DIM  # embeds along axis 0: the firing direction
    first = await predictor.predict(label, examples.test_documents, "astrophysics")
    again = await predictor.predict(label, examples.test_documents[:3], "astrophysics")
    assert predictor.model == "embedding"
    assert embedder.calls == [[label]]
    assert first.values == pytest.approx(cosines(np.eye(DIM)[0], examples.test_documents))
    assert again.values == first.values[:3]
    assert first.parse_failures == 0
    assert first.usage.calls == 0


async def test_the_embedding_predictors_cosines_score_like_the_embedding_scorer() -> None:
    embedder = AxisEmbedder()
    examples = feature_examples(seed=5, spread=3.0)
    label = "y" * (DIM + 2)
    predictions = await EmbeddingPredictor(embedder).predict(label, examples.test_documents, "astro")
    through_predictor = score_predictions(examples, predictions.values, threshold=None)
    direct = score_label_embedding(np.eye(DIM)[2], examples)
    assert through_predictor.auroc == pytest.approx(direct.auroc)
    assert through_predictor.auroc_hard == pytest.approx(direct.auroc_hard)
    assert through_predictor.pearson_r == pytest.approx(direct.pearson_r)


async def test_the_embedding_predictor_refuses_an_empty_label() -> None:
    with pytest.raises(ValueError, match="the label is empty"):
        await EmbeddingPredictor(AxisEmbedder()).predict("  ", feature_examples().test_documents, "astro")
