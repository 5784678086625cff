"""Label one feature: choose its examples, ask the interpreter, score the label two ways.

1. ``gather_examples`` reads the feature's documents from a ``DocumentSource`` and splits them
   into what the interpreter sees and what scores the label (never the same documents).
2. The ``Interpreter`` writes a label from the shown documents.
3. The ``Predictor`` guesses, from the label alone, how strongly the feature fires on each
   held-out document. They are asked in a seeded shuffled order, so the firing documents are
   not simply the first ones; the answers are put back in order and scored against the truth
   (Pearson r, F1, AUROC against random and against hard negatives, balanced accuracy).
4. The label is embedded and scored without any LLM (``score_label_embedding``); the same
   embedding is what the store keeps, so features are searchable by meaning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from featurelens.interp.embedding_scorer import score_label_embedding
from featurelens.interp.examples import ExampleConfig, feature_rng, gather_examples
from featurelens.interp.records import LabelRecord
from featurelens.interp.scores import score_predictions
from featurelens.interp.types import (
    DocumentSource,
    Embedder,
    FeatureExamples,
    Interpreter,
    Predictor,
    Usage,
    Vector,
)

#: Most characters of a domain description (it is put in every prompt).
MAX_DOMAIN_CHARS = 200
DEFAULT_DOMAIN = "documents"


@dataclass(frozen=True)
class LabelSettings:
    """How every feature of one labelling job is labelled; checks itself.

    ``threshold`` turns a prediction into "fires" for F1 and balanced accuracy: 0.5 for
    predictors that answer on a 0–1 scale (the LLM's 0–10 scores, scaled), None for predictors
    whose values only rank documents (the embedding predictor): then the top predictions, as many
    as there are firing test documents, count as firing.
    """

    examples: ExampleConfig = field(default_factory=ExampleConfig)
    domain: str = DEFAULT_DOMAIN
    seed: int = 0
    threshold: float | None = 0.5

    def __post_init__(self) -> None:
        if not self.domain.strip():
            raise ValueError("domain is empty; describe the corpus, e.g. 'astrophysics arXiv abstracts'")
        if len(self.domain) > MAX_DOMAIN_CHARS:
            raise ValueError(f"domain has {len(self.domain)} characters; the limit is {MAX_DOMAIN_CHARS}")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed is {self.seed}; use 0 to 2**64 - 1")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is {self.threshold}; use 0 to 1, or None to rank")


@dataclass(frozen=True, eq=False)
class LabelOutcome:
    """One labelled feature: the record to store, the label's embedding, and what it cost."""

    record: LabelRecord
    vector: Vector
    usage: Usage


async def label_feature(
    feature: int,
    *,
    sae_id: str,
    corpus: str,
    density: float,
    source: DocumentSource,
    interpreter: Interpreter,
    predictor: Predictor,
    embedder: Embedder,
    settings: LabelSettings,
) -> LabelOutcome:
    """Label and score one feature (see the module docstring for the steps)."""
    examples = await gather_examples(source, feature, settings.examples, settings.seed, density)
    interpretation = await interpreter.interpret(examples, settings.domain)
    return await score_label(
        examples,
        interpretation.label,
        sae_id=sae_id,
        corpus=corpus,
        predictor=predictor,
        embedder=embedder,
        settings=settings,
        interpreter_model=interpreter.model,
        prompt_version=interpreter.prompt_version,
        usage=interpretation.usage,
    )


async def score_label(
    examples: FeatureExamples,
    label: str,
    *,
    sae_id: str,
    corpus: str,
    predictor: Predictor,
    embedder: Embedder,
    settings: LabelSettings,
    interpreter_model: str,
    prompt_version: str,
    usage: Usage = Usage(),
) -> LabelOutcome:
    """Score ``label`` on the held-out documents of ``examples``; the record keeps both."""
    tests = examples.test_documents
    # The documents are asked about in a shuffled order, fixed for (seed, feature).
    order = feature_rng(settings.seed, examples.feature).permutation(len(tests))
    predictions = await predictor.predict(label, [tests[i] for i in order], settings.domain)
    if len(predictions.values) != len(tests):
        raise ValueError(
            f"the predictor {predictor.model!r} answered {len(predictions.values)} values "
            f"for {len(tests)} documents"
        )
    values: list[float | None] = [None] * len(tests)
    for asked, position in enumerate(order):
        values[int(position)] = predictions.values[asked]
    scores = score_predictions(examples, values, settings.threshold)
    vector = (await embedder.embed([label]))[0]
    by_embedding = score_label_embedding(vector, examples)
    total = usage + predictions.usage
    notes = [note for note in (scores.note, by_embedding.note) if note]
    record = LabelRecord(
        sae_id=sae_id,
        feature=examples.feature,
        label=label,
        pearson_r=scores.pearson_r,
        f1=scores.f1,
        auroc=scores.auroc,
        auroc_hard=scores.auroc_hard,
        balanced_accuracy=scores.balanced_accuracy,
        embedding_auroc=by_embedding.auroc,
        embedding_auroc_hard=by_embedding.auroc_hard,
        interpreter_model=interpreter_model,
        predictor_model=predictor.model,
        prompt_version=prompt_version,
        density=examples.density,
        created_unix=int(time.time()),
        cost_usd=total.cost_usd,
        tokens=total.tokens,
        parse_failures=scores.parse_failures,
        scored_documents=scores.scored,
        example_ids=examples.example_ids,
        test_ids=tuple(d.doc_id for d in tests),
        score_note="; ".join(notes),
        corpus=corpus,
        domain=settings.domain,
    )
    return LabelOutcome(record, np.asarray(vector, dtype=np.float32), total)
