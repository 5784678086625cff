"""Scoring a label without an LLM: the label's embedding against each held-out document's.

A label that names what a feature fires on should sit nearer (by cosine) to the documents it
fires on than to the ones it does not. ``score_label_embedding`` turns that into an AUROC (firing
against random negatives, and against hard ones) and a Pearson r with the true activations, in
well under a millisecond per feature once the label is embedded. ``EmbeddingPredictor`` offers
the same cosines through the ``Predictor`` protocol, so the labelling job scores them with
``score_predictions`` like any predictor's (use ``threshold=None``: cosines have no calibrated
cut).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from featurelens.interp.scores import score_predictions
from featurelens.interp.types import Embedder, ExampleDocument, FeatureExamples, Predictions, Vector

_LABEL_CACHE_SIZE = 1024


@dataclass(frozen=True)
class EmbeddingScores:
    """A label's embedding scores on one feature's held-out documents."""

    #: AUROC of the cosines, held-out firing documents against random negatives.
    auroc: float
    #: AUROC of the cosines, held-out firing documents against hard negatives.
    auroc_hard: float
    #: Pearson r of the cosines against the true activations; None when undefined.
    pearson_r: float | None
    #: Why a score is a stand-in; "" when none is.
    note: str = ""


def _unit(vector: npt.ArrayLike, what: str) -> Vector:
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(array))
    if array.size == 0 or not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"{what} is empty, zero or not finite; it has no direction")
    return array / norm


def document_matrix(documents: Sequence[ExampleDocument], dim: int) -> npt.NDArray[np.float32]:
    """The documents' stored embeddings as unit rows; ValueError naming a document without one."""
    matrix = np.empty((len(documents), dim), dtype=np.float32)
    for i, doc in enumerate(documents):
        if doc.embedding is None:
            raise ValueError(f"document {doc.doc_id!r} has no embedding; the embedding scorer needs one")
        if doc.embedding.shape != (dim,):
            raise ValueError(
                f"document {doc.doc_id!r} has an embedding of shape {doc.embedding.shape}; "
                f"the label's has {dim} dimensions"
            )
        matrix[i] = doc.embedding
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def cosines(label_vector: npt.ArrayLike, documents: Sequence[ExampleDocument]) -> npt.NDArray[np.float32]:
    """Cosine of a label's embedding with each document's stored embedding."""
    label = _unit(label_vector, "the label vector")
    return document_matrix(documents, label.shape[0]) @ label


def score_label_embedding(label_vector: npt.ArrayLike, examples: FeatureExamples) -> EmbeddingScores:
    """Score a label's embedding against ``examples.test_documents`` (their stored embeddings)."""
    similarity = cosines(label_vector, examples.test_documents)
    scores = score_predictions(examples, [float(s) for s in similarity], threshold=None)
    return EmbeddingScores(scores.auroc, scores.auroc_hard, scores.pearson_r, scores.note)


class EmbeddingPredictor:
    """A ``Predictor`` without an LLM: a document's prediction is its cosine with the label's embedding.

    The label is embedded once (and remembered for the next call with the same label); the
    documents' stored embeddings are used as they are. Score with ``threshold=None``.
    """

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._labels: OrderedDict[str, Vector] = OrderedDict()

    @property
    def model(self) -> str:
        return "embedding"

    async def embed_label(self, label: str) -> Vector:
        """The label's unit embedding (embedded once per label, the last 1,024 remembered)."""
        if not label.strip():
            raise ValueError("the label is empty; there is nothing to embed")
        vector = self._labels.get(label)
        if vector is None:
            rows = await self._embedder.embed([label])
            vector = _unit(np.asarray(rows)[0], f"the embedding of {label!r}")
            self._labels[label] = vector
            if len(self._labels) > _LABEL_CACHE_SIZE:
                self._labels.popitem(last=False)
        else:
            self._labels.move_to_end(label)
        return vector

    async def predict(self, label: str, documents: Sequence[ExampleDocument], domain: str) -> Predictions:
        """Cosines of the label with each document (the domain plays no part here)."""
        vector = await self.embed_label(label)
        return Predictions(tuple(float(s) for s in cosines(vector, documents)))
