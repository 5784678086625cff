"""The types every part of automated interpretability shares.

A feature's examples (``FeatureExamples``) are chosen once, by ``featurelens.interp.examples``,
from pools of documents a ``DocumentSource`` reads (the search service over gRPC, or arrays in
memory). An ``Interpreter`` writes a label from the examples shown; a ``Predictor`` guesses how
strongly the feature fires on each held-out document from the label alone; the scores compare
the guesses with the truth. The offline labeller and the LLM labeller implement the same two
protocols, so the labelling job never knows which one it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class ExampleDocument:
    """One document as the interpreter or predictor sees it, with the truth about the feature.

    ``text`` is what a prompt shows (title and body); ``activation`` is the feature's activation
    on it (0 when it does not fire); ``embedding`` is its unit-norm dense embedding, when known.
    """

    doc_id: str
    text: str
    activation: float
    embedding: Vector | None = None

    @property
    def fires(self) -> bool:
        return self.activation > 0.0


@dataclass(frozen=True, eq=False)
class FeatureExamples:
    """The documents chosen for one feature: what the interpreter sees and what scores the label.

    The train documents (shown to the interpreter) and the test documents (scored) never share a
    document id: ``__post_init__`` refuses examples that would.
    """

    feature: int
    #: Firing documents shown to the interpreter, strongest first, spread over activation quantiles.
    train_firing: tuple[ExampleDocument, ...]
    #: Non-firing documents shown to the interpreter (random ones, then hard ones).
    train_negatives: tuple[ExampleDocument, ...]
    #: Held-out firing documents (a seeded random sample of the firing documents).
    test_firing: tuple[ExampleDocument, ...]
    #: Held-out non-firing documents drawn at random (seeded).
    test_random: tuple[ExampleDocument, ...]
    #: Held-out non-firing documents nearest the firing ones by embedding.
    test_hard: tuple[ExampleDocument, ...]
    #: Fraction of the corpus's documents on which the feature fires.
    density: float = 0.0

    def __post_init__(self) -> None:
        train = {d.doc_id for d in (*self.train_firing, *self.train_negatives)}
        test = [d.doc_id for d in self.test_documents]
        leaked = sorted(train.intersection(test))
        if leaked:
            raise ValueError(
                f"feature {self.feature}: test documents {leaked[:5]} are also shown to the interpreter"
            )
        if len(set(test)) != len(test):
            raise ValueError(f"feature {self.feature}: a test document appears twice")

    @property
    def test_documents(self) -> tuple[ExampleDocument, ...]:
        """Every held-out document: firing, then random negatives, then hard negatives."""
        return (*self.test_firing, *self.test_random, *self.test_hard)

    @property
    def example_ids(self) -> tuple[str, ...]:
        """Ids of the documents shown to the interpreter."""
        return tuple(d.doc_id for d in (*self.train_firing, *self.train_negatives))


@dataclass(frozen=True)
class Usage:
    """What LLM calls cost: tokens, dollars, calls made and calls answered by the cache."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    cache_hits: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_usd + other.cost_usd,
            self.calls + other.calls,
            self.cache_hits + other.cache_hits,
        )


@dataclass(frozen=True)
class Interpretation:
    """A label written for a feature, and what writing it cost."""

    label: str
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class Predictions:
    """Predicted activations of held-out documents, in [0, 1] scale or any monotone scale.

    ``values[i]`` belongs to the i-th document asked about; None where the answer could not be
    parsed (counted as a parse failure and left out of the scores, never read as 0).
    """

    values: tuple[float | None, ...]
    usage: Usage = field(default_factory=Usage)

    @property
    def parse_failures(self) -> int:
        return sum(1 for v in self.values if v is None)


class Interpreter(Protocol):
    """Writes a short label for a feature from its examples."""

    @property
    def model(self) -> str:
        """The model name recorded with the label ("offline" for the keyword labeller)."""
        ...

    @property
    def prompt_version(self) -> str: ...

    async def interpret(self, examples: FeatureExamples, domain: str) -> Interpretation: ...


class Predictor(Protocol):
    """Predicts, from a label alone, how strongly the feature fires on each document."""

    @property
    def model(self) -> str: ...

    async def predict(self, label: str, documents: Sequence[ExampleDocument], domain: str) -> Predictions: ...


class Embedder(Protocol):
    """Unit-norm embeddings of texts, in the same space as the corpus's document embeddings."""

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One row per text, shape (len(texts), dim), float32, unit norm."""
        ...


class DocumentSource(Protocol):
    """Where a feature's example documents come from (texts and embeddings included)."""

    async def top(self, feature: int, n: int) -> list[ExampleDocument]:
        """The ``n`` documents on which the feature fires most strongly, strongest first."""
        ...

    async def sample(self, feature: int, n: int, firing: bool, seed: int) -> list[ExampleDocument]:
        """A seeded random sample of ``n`` documents on which the feature fires (or does not)."""
        ...

    async def nearest_non_firing(self, feature: int, vector: Vector, n: int) -> list[ExampleDocument]:
        """The ``n`` documents nearest ``vector`` by cosine on which the feature does not fire."""
        ...
