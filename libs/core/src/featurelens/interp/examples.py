"""Choosing a feature's examples: what the interpreter is shown and what scores its label.

For each feature, from pools a ``DocumentSource`` reads:

- **train firing** (shown): ``top_documents`` documents spread over the activation quantiles of
  the ``top_pool`` strongest firing documents, strongest first;
- **train negatives** (shown): ``shown_negatives`` non-firing documents, half drawn at random
  (seeded), half hard (nearest the train firing documents' centroid by embedding);
- **test** (held out, scored): half of ``scoring_documents`` firing (a seeded random draw from
  all firing documents), a quarter random negatives and a quarter hard negatives.

Every document appears at most once across all five sets (deduplicated by id), so train and test
are disjoint by construction; ``FeatureExamples`` checks it again. Randomness comes from
``(seed, feature)``: two features never share their "random" negatives by accident, and the same
seed gives the same examples. Short pools give smaller sets; see ``select_examples``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from featurelens.interp.types import DocumentSource, ExampleDocument, FeatureExamples, Vector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExampleConfig:
    """How many documents each part of a feature's examples gets."""

    top_documents: int = 10
    """Firing documents shown to the interpreter."""

    shown_negatives: int = 6
    """Non-firing documents shown to the interpreter: half (rounded up) random, the rest hard."""

    scoring_documents: int = 40
    """Held-out documents scored: half firing, a quarter random negatives, a quarter hard ones
    (so it must be a multiple of 4, at least 4)."""

    top_pool: int = 100
    """Strongest firing documents read to spread the shown ones over activation quantiles."""

    def __post_init__(self) -> None:
        for name, low in (
            ("top_documents", 1),
            ("shown_negatives", 0),
            ("scoring_documents", 4),
            ("top_pool", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"ExampleConfig.{name} must be an integer >= {low}, got {value!r}")
        if self.scoring_documents % 4:
            raise ValueError(
                f"ExampleConfig.scoring_documents must be a multiple of 4 (half firing, a quarter random "
                f"negatives, a quarter hard negatives), got {self.scoring_documents}"
            )
        if self.top_pool < self.top_documents:
            raise ValueError(
                f"ExampleConfig.top_pool ({self.top_pool}) must be at least top_documents "
                f"({self.top_documents}): "
                "the shown documents are picked from the pool"
            )

    @property
    def shown_random(self) -> int:
        """Random negatives shown to the interpreter."""
        return self.shown_negatives - self.shown_negatives // 2

    @property
    def shown_hard(self) -> int:
        """Hard negatives shown to the interpreter."""
        return self.shown_negatives // 2

    @property
    def test_firing(self) -> int:
        """Held-out firing documents."""
        return self.scoring_documents // 2

    @property
    def test_random(self) -> int:
        """Held-out random negatives."""
        return self.scoring_documents // 4

    @property
    def test_hard(self) -> int:
        """Held-out hard negatives."""
        return self.scoring_documents // 4

    @property
    def firing_request(self) -> int:
        """Firing documents to sample: the test ones plus room for those already shown."""
        return self.test_firing + self.top_documents

    @property
    def random_request(self) -> int:
        """Random negatives to sample: those shown and tested, plus room for hard ones they repeat."""
        return self.shown_random + self.test_random + self.shown_hard + self.test_hard

    @property
    def hard_request(self) -> int:
        """Hard negatives to ask for: those shown plus those tested."""
        return self.shown_hard + self.test_hard


def centroid(embeddings: npt.ArrayLike) -> Vector:
    """The unit-norm mean direction of a set of embeddings (rows)."""
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty (n, dim) array, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("embeddings holds NaN or infinite values")
    mean = matrix.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        raise ValueError("the embeddings' mean is zero; their centroid has no direction")
    return (mean / norm).astype(np.float32)


def feature_rng(seed: int, feature: int) -> np.random.Generator:
    """The random generator of one feature's selection: seeded by both, so features differ."""
    return np.random.default_rng((int(seed), int(feature)))


def source_seed(seed: int, feature: int) -> int:
    """The seed handed to a source's ``sample``: derived from (seed, feature), never shared."""
    return int(np.random.SeedSequence((int(seed), int(feature))).generate_state(1)[0])


def _unique(
    documents: Iterable[ExampleDocument], *, firing: bool, exclude: set[str]
) -> list[ExampleDocument]:
    """Documents in order, first of each id, of the wanted kind, none of whose ids is in ``exclude``."""
    seen = set(exclude)
    kept: list[ExampleDocument] = []
    for doc in documents:
        if doc.fires == firing and doc.doc_id not in seen:
            seen.add(doc.doc_id)
            kept.append(doc)
    return kept


def _quantile_spread(pool: Sequence[ExampleDocument], n: int) -> list[ExampleDocument]:
    """``n`` documents of a pool sorted strongest first, one from the top of each of ``n`` equal bins.

    With a pool of 100 and n = 10 these are the ranks 0, 10, ..., 90: the strongest document and
    one from each activation decile below it.
    """
    ranks = sorted({(i * len(pool)) // n for i in range(n)})
    return [pool[r] for r in ranks]


def _split(available: int, first: int, second: int) -> tuple[int, int]:
    """Share ``available`` documents between two wants in proportion, when not all can be met."""
    if available >= first + second:
        return first, second
    take_first = min(first, math.ceil(available * first / (first + second))) if first + second else 0
    # A held-out side with nothing in it scores nothing: keep one for it when there are two.
    if second and take_first == available and available >= 2:
        take_first -= 1
    return take_first, min(second, available - take_first)


def select_examples(
    feature: int,
    top: Sequence[ExampleDocument],
    firing_sample: Sequence[ExampleDocument],
    random_negatives: Sequence[ExampleDocument],
    hard_negatives: Sequence[ExampleDocument],
    config: ExampleConfig = ExampleConfig(),
    seed: int = 0,
    density: float = 0.0,
) -> FeatureExamples:
    """Choose a feature's shown and held-out documents from pools (pure: same inputs, same output).

    - ``top``: the strongest firing documents (any order; sorted here, strongest first);
    - ``firing_sample``: a random sample of the firing documents;
    - ``random_negatives``: a random sample of the non-firing documents;
    - ``hard_negatives``: non-firing documents nearest the firing ones, nearest first.

    Documents of the wrong kind in a pool (a firing one among negatives) are dropped, and each id
    is used once. When fewer firing documents are known than ``top_documents + test_firing`` the
    shown and held-out firing documents share them in proportion (a feature firing on 7 documents
    shows 3 and holds out 4); the hard and random negatives are shared the same way. A feature
    that fires on no document cannot be labelled: ``ValueError``.
    """
    rng = feature_rng(seed, feature)
    pool = sorted(_unique(top, firing=True, exclude=set()), key=lambda d: -d.activation)
    pool_ids = {d.doc_id for d in pool}
    others = _unique(firing_sample, firing=True, exclude=pool_ids)
    known = len(pool) + len(others)
    if known == 0:
        raise ValueError(f"feature {feature} fires on no document in the pools given; it cannot be labelled")

    n_train, _ = _split(known, config.top_documents, config.test_firing)
    # Shown documents come from the top pool; when the pool is short of them, use it all.
    train_firing = _quantile_spread(pool, min(n_train, len(pool))) if pool else []
    if not train_firing:
        # No top pool (a source that only samples): show the strongest sampled documents.
        train_firing = sorted(others, key=lambda d: -d.activation)[:n_train]
    train_ids = {d.doc_id for d in train_firing}

    sampled = _unique(firing_sample, firing=True, exclude=train_ids)
    rest_of_pool = [d for d in pool if d.doc_id not in train_ids]
    candidates = [sampled[i] for i in rng.permutation(len(sampled))]
    candidates += [rest_of_pool[i] for i in rng.permutation(len(rest_of_pool))]
    test_firing = _unique(candidates, firing=True, exclude=train_ids)[: config.test_firing]

    firing_ids = pool_ids | {d.doc_id for d in others}
    hard = _unique(hard_negatives, firing=False, exclude=firing_ids)[: config.hard_request]
    shown_hard_n, test_hard_n = _split(len(hard), config.shown_hard, config.test_hard)
    hard = [hard[i] for i in rng.permutation(len(hard))]
    shown_hard, test_hard = hard[:shown_hard_n], hard[shown_hard_n : shown_hard_n + test_hard_n]

    used = firing_ids | {d.doc_id for d in (*shown_hard, *test_hard)}
    randoms = _unique(random_negatives, firing=False, exclude=used)
    randoms = [randoms[i] for i in rng.permutation(len(randoms))]
    shown_random_n, test_random_n = _split(len(randoms), config.shown_random, config.test_random)
    shown_random = randoms[:shown_random_n]
    test_random = randoms[shown_random_n : shown_random_n + test_random_n]

    if len(test_firing) < config.test_firing or len(test_random) < config.test_random:
        logger.debug(
            "feature %d: short pools give %d firing and %d random held-out documents (wanted %d and %d)",
            feature,
            len(test_firing),
            len(test_random),
            config.test_firing,
            config.test_random,
        )
    return FeatureExamples(
        feature=feature,
        train_firing=tuple(train_firing),
        train_negatives=(*shown_random, *shown_hard),
        test_firing=tuple(test_firing),
        test_random=tuple(test_random),
        test_hard=tuple(test_hard),
        density=density,
    )


async def gather_examples(
    source: DocumentSource,
    feature: int,
    config: ExampleConfig = ExampleConfig(),
    seed: int = 0,
    density: float = 0.0,
) -> FeatureExamples:
    """Read a feature's pools from a source and choose its examples (``select_examples``).

    The top pool and both random samples are read at once; the hard negatives then come from the
    centroid of the shown firing documents' embeddings, so the source must return embeddings.
    """
    sample_seed = source_seed(seed, feature)
    top, firing_sample, random_negatives = await asyncio.gather(
        source.top(feature, config.top_pool),
        source.sample(feature, config.firing_request, True, sample_seed),
        source.sample(feature, config.random_request, False, sample_seed),
    )
    shown = select_examples(feature, top, firing_sample, random_negatives, (), config, seed, density)
    hard_negatives: list[ExampleDocument] = []
    if config.hard_request:
        embedded = [d.embedding for d in shown.train_firing if d.embedding is not None]
        if not embedded:
            raise ValueError(
                f"feature {feature}: the shown firing documents carry no embeddings; the source must "
                "return them to find hard negatives"
            )
        hard_negatives = await source.nearest_non_firing(
            feature, centroid(np.stack(embedded)), config.hard_request
        )
    return select_examples(
        feature, top, firing_sample, random_negatives, hard_negatives, config, seed, density
    )
