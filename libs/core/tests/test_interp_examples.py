"""Example selection: shown and held-out documents, disjoint by construction, seeded, from any pool."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from featurelens.interp.arrays import ArraySource
from featurelens.interp.examples import ExampleConfig, centroid, gather_examples, select_examples
from featurelens.interp.types import ExampleDocument, FeatureExamples, Vector

DIM = 6


def doc(name: str, activation: float = 0.0, embedding: Vector | None = None) -> ExampleDocument:
    return ExampleDocument(name, f"text of {name}", activation, embedding)


def firing_docs(n: int) -> list[ExampleDocument]:
    """n firing documents f000.., activation n for the first down to 1 for the last."""
    return [doc(f"f{i:03d}", float(n - i)) for i in range(n)]


def negative_docs(n: int, prefix: str = "n") -> list[ExampleDocument]:
    return [doc(f"{prefix}{i:03d}") for i in range(n)]


def ids(documents: Sequence[ExampleDocument]) -> list[str]:
    return [d.doc_id for d in documents]


def parts(examples: FeatureExamples) -> dict[str, list[str]]:
    return {
        "train_firing": ids(examples.train_firing),
        "train_negatives": ids(examples.train_negatives),
        "test_firing": ids(examples.test_firing),
        "test_random": ids(examples.test_random),
        "test_hard": ids(examples.test_hard),
    }


def ample(seed: int = 0, config: ExampleConfig = ExampleConfig()) -> FeatureExamples:
    """Pools as big as the config asks for, from a feature firing on 300 documents."""
    rng = np.random.default_rng(99)
    firing = firing_docs(300)
    sample = [firing[i] for i in rng.choice(300, config.firing_request, replace=False)]
    return select_examples(
        7,
        firing[: config.top_pool],
        sample,
        negative_docs(config.random_request, "r"),
        negative_docs(config.hard_request, "h"),
        config,
        seed,
        density=0.03,
    )


def test_the_defaults_show_ten_firing_and_six_negatives_and_hold_out_forty() -> None:
    config = ExampleConfig()
    assert (config.top_documents, config.shown_negatives, config.scoring_documents, config.top_pool) == (
        10,
        6,
        40,
        100,
    )
    assert (config.shown_random, config.shown_hard) == (3, 3)
    assert (config.test_firing, config.test_random, config.test_hard) == (20, 10, 10)
    assert config.firing_request == 30
    assert config.random_request == 26
    assert config.hard_request == 13


def test_an_odd_number_of_shown_negatives_gives_the_extra_one_to_the_random_side() -> None:
    config = ExampleConfig(shown_negatives=5)
    assert (config.shown_random, config.shown_hard) == (3, 2)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"top_documents": 0}, "top_documents"),
        ({"shown_negatives": -1}, "shown_negatives"),
        ({"scoring_documents": 2}, "scoring_documents"),
        ({"scoring_documents": 22}, "scoring_documents"),
        ({"top_pool": 5}, "top_pool"),
        ({"top_documents": 2.5}, "top_documents"),
        ({"top_pool": True}, "top_pool"),
    ],
)
def test_a_bad_config_is_refused_naming_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"ExampleConfig.{field}"):
        ExampleConfig(**options)  # type: ignore[arg-type]


def test_the_centroid_is_the_unit_mean_direction() -> None:
    vector = centroid(np.array([[3.0, 0.0], [0.0, 3.0]]))
    assert vector.dtype == np.float32
    np.testing.assert_allclose(vector, [np.sqrt(0.5), np.sqrt(0.5)], rtol=1e-6)


@pytest.mark.parametrize(
    ("embeddings", "message"),
    [
        (np.empty((0, 3)), "non-empty"),
        (np.array([[1.0, 0.0], [-1.0, 0.0]]), "mean is zero"),
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.ones(3), "non-empty"),
    ],
)
def test_a_centroid_without_a_direction_is_refused(embeddings: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        centroid(embeddings)


def test_with_ample_pools_every_part_gets_its_full_count() -> None:
    examples = ample()
    assert len(examples.train_firing) == 10
    assert len(examples.train_negatives) == 6
    assert (len(examples.test_firing), len(examples.test_random), len(examples.test_hard)) == (20, 10, 10)
    assert examples.density == 0.03
    # Shown negatives: the random ones first, then the hard ones.
    assert [name[0] for name in ids(examples.train_negatives)] == ["r", "r", "r", "h", "h", "h"]


def test_shown_firing_documents_spread_over_the_activation_quantiles_strongest_first() -> None:
    # The top pool is the 100 strongest of 300 (activations 300 down to 201); the shown ones are
    # the strongest of each tenth of it.
    examples = ample()
    assert [d.activation for d in examples.train_firing] == [300.0 - 10 * i for i in range(10)]


def test_the_top_pool_is_sorted_whatever_order_the_source_gives() -> None:
    config = ExampleConfig()
    firing = firing_docs(100)
    shuffled = [firing[i] for i in np.random.default_rng(0).permutation(100)]
    examples = select_examples(1, shuffled, firing, negative_docs(26), [], config)
    assert [d.activation for d in examples.train_firing] == [100.0 - 10 * i for i in range(10)]


def test_the_same_seed_gives_the_same_examples_and_another_seed_other_ones() -> None:
    first, again, other = ample(seed=1), ample(seed=1), ample(seed=2)
    assert parts(first) == parts(again)
    assert ids(first.test_firing) != ids(other.test_firing)
    # What the interpreter is shown does not depend on the seed: only the held-out draw does.
    assert ids(first.train_firing) == ids(other.train_firing)


def test_the_same_seed_gives_two_features_different_draws() -> None:
    firing, negatives = firing_docs(300), negative_docs(200)
    config = ExampleConfig()
    one = select_examples(1, firing[:100], firing[100:], negatives, [], config, seed=0)
    two = select_examples(2, firing[:100], firing[100:], negatives, [], config, seed=0)
    assert ids(one.test_random) != ids(two.test_random)


def test_held_out_firing_documents_come_from_the_firing_sample_before_the_top_pool() -> None:
    firing = firing_docs(300)
    examples = select_examples(3, firing[:100], firing[150:180], negative_docs(30), [], ExampleConfig())
    assert {int(name[1:]) for name in ids(examples.test_firing)} <= set(range(150, 180))


def test_a_short_firing_sample_is_topped_up_from_the_rest_of_the_top_pool() -> None:
    firing = firing_docs(100)
    # The sample holds only documents already shown (ranks 0, 10, 20) and five others.
    sample = [firing[0], firing[10], firing[20], *firing[95:]]
    examples = select_examples(3, firing, sample, negative_docs(30), [], ExampleConfig())
    held_out = set(ids(examples.test_firing))
    assert len(held_out) == 20
    assert {f"f{i:03d}" for i in range(95, 100)} <= held_out
    assert not held_out & set(ids(examples.train_firing))


def test_a_feature_firing_on_seven_documents_shows_three_and_holds_out_four() -> None:
    firing = firing_docs(7)
    examples = select_examples(5, firing, firing, negative_docs(26), negative_docs(13, "h"), ExampleConfig())
    assert ids(examples.train_firing) == ["f000", "f002", "f004"]
    assert sorted(ids(examples.test_firing)) == ["f001", "f003", "f005", "f006"]


def test_a_feature_firing_on_one_document_shows_it_and_holds_out_no_firing_document() -> None:
    examples = select_examples(5, firing_docs(1), [], negative_docs(26), [], ExampleConfig())
    assert ids(examples.train_firing) == ["f000"]
    assert examples.test_firing == ()
    assert len(examples.test_random) == 10


def test_short_negative_pools_are_shared_between_shown_and_held_out() -> None:
    firing = firing_docs(100)
    examples = select_examples(5, firing, firing, negative_docs(4), negative_docs(3, "h"), ExampleConfig())
    shown = ids(examples.train_negatives)
    assert len(examples.test_random) + len([n for n in shown if n[0] == "n"]) == 4
    assert len(examples.test_hard) >= 1
    assert len(examples.test_hard) + len([n for n in shown if n[0] == "h"]) == 3


def test_a_feature_firing_on_no_document_is_refused() -> None:
    with pytest.raises(ValueError, match="feature 9 fires on no document"):
        select_examples(9, [], [], negative_docs(10), [], ExampleConfig())
    # Documents that do not fire, even in the top pool, do not count.
    with pytest.raises(ValueError, match="fires on no document"):
        select_examples(9, negative_docs(3), [], negative_docs(10), [], ExampleConfig())


def test_firing_documents_in_a_negative_pool_are_never_used_as_negatives() -> None:
    firing = firing_docs(100)
    tainted = [*firing[:5], *negative_docs(30)]
    mislabelled = [doc("f050"), *negative_docs(13, "h")]  # f050 fires, whatever this copy says
    examples = select_examples(5, firing, firing, tainted, mislabelled, ExampleConfig())
    negatives = [*examples.train_negatives, *examples.test_random, *examples.test_hard]
    assert all(not d.fires for d in negatives)
    assert not {d.doc_id for d in negatives} & {d.doc_id for d in firing}


@st.composite
def pools(draw: st.DrawFn) -> tuple[ExampleConfig, list[list[ExampleDocument]], int]:
    """A config and pools of any shape, with repeats and overlaps between pools."""
    config = ExampleConfig(
        top_documents=draw(st.integers(1, 12)),
        shown_negatives=draw(st.integers(0, 7)),
        scoring_documents=4 * draw(st.integers(1, 10)),
        top_pool=draw(st.integers(12, 40)),
    )
    n_firing = draw(st.integers(1, 80))
    n_negative = draw(st.integers(0, 60))
    firing = firing_docs(n_firing)
    negatives = negative_docs(n_negative)
    everyone = firing + negatives
    top = firing[: config.top_pool]
    sample = draw(st.lists(st.sampled_from(firing), max_size=config.firing_request))
    picks = st.sampled_from(everyone)
    randoms = draw(st.lists(picks, max_size=config.random_request + 5))
    hard = draw(st.lists(picks, max_size=config.hard_request + 5))
    return config, [top, sample, randoms, hard], draw(st.integers(0, 2**32 - 1))


@settings(max_examples=300, deadline=None, database=None)
@given(pools())
def test_no_document_is_both_shown_and_held_out_whatever_the_pools(
    case: tuple[ExampleConfig, list[list[ExampleDocument]], int],
) -> None:
    config, (top, sample, randoms, hard), seed = case
    examples = select_examples(11, top, sample, randoms, hard, config, seed)
    named = parts(examples)
    every_id = [name for part in named.values() for name in part]
    assert len(every_id) == len(set(every_id)), named
    assert all(d.fires for d in (*examples.train_firing, *examples.test_firing))
    assert all(not d.fires for d in (*examples.train_negatives, *examples.test_random, *examples.test_hard))
    assert 1 <= len(examples.train_firing) <= config.top_documents
    assert len(examples.train_negatives) <= config.shown_negatives
    assert len(examples.test_firing) <= config.test_firing
    assert len(examples.test_random) <= config.test_random
    assert len(examples.test_hard) <= config.test_hard
    # Held-out firing documents are never short while unused firing documents remain.
    known_firing = {d.doc_id for d in (*top, *sample)}
    unused = known_firing - set(named["train_firing"]) - set(named["test_firing"])
    assert len(examples.test_firing) == config.test_firing or not unused
    assert parts(select_examples(11, top, sample, randoms, hard, config, seed)) == named


# -- gather_examples, over an ArraySource -----------------------------------------------------


def array_source(n_docs: int = 400, seed: int = 0) -> ArraySource:
    """Latent 0 fires on the first 120 documents (activation falling with the row), latent 1 on 7."""
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((n_docs, DIM)).astype(np.float32)
    # The firing documents lean one way, so their centroid has a clear direction.
    embeddings[:120, 0] += 3.0
    values = np.zeros((n_docs, 2), dtype=np.float32)
    values[:120, 0] = np.linspace(5.0, 0.5, 120)
    values[200:207, 1] = 1.0
    names = [f"d{i:03d}" for i in range(n_docs)]
    return ArraySource(names, [f"text {i}" for i in range(n_docs)], embeddings, sparse.csr_matrix(values))


async def test_gathered_examples_have_every_part_and_hard_negatives_nearest_the_shown_ones() -> None:
    source = array_source()
    examples = await gather_examples(source, 0, ExampleConfig(), seed=4, density=0.3)
    assert len(examples.train_firing) == 10
    assert (len(examples.test_firing), len(examples.test_random), len(examples.test_hard)) == (20, 10, 10)
    shown_centroid = centroid(
        np.stack([d.embedding for d in examples.train_firing if d.embedding is not None])
    )
    nearest = await source.nearest_non_firing(0, shown_centroid, 13)
    hard = {*ids(examples.test_hard), *ids(examples.train_negatives[3:])}
    assert hard == set(ids(nearest))
    assert examples.density == 0.3


async def test_gathering_twice_with_one_seed_gives_the_same_examples() -> None:
    source = array_source()
    first = await gather_examples(source, 0, seed=5)
    again = await gather_examples(source, 0, seed=5)
    assert parts(first) == parts(again)
    assert parts(await gather_examples(source, 0, seed=6)) != parts(first)


async def test_two_features_with_one_seed_get_different_random_negatives() -> None:
    source = array_source()
    zero = await gather_examples(source, 0, seed=0)
    one = await gather_examples(source, 1, seed=0)
    assert ids(zero.test_random) != ids(one.test_random)
    # Not the corpus's first non-firing documents (the paper's bug): rows 120.. for latent 0.
    assert set(ids(zero.test_random)) != {f"d{i:03d}" for i in range(120, 130)}


async def test_a_feature_firing_on_seven_documents_is_gathered_without_error() -> None:
    examples = await gather_examples(array_source(), 1)
    assert len(examples.train_firing) + len(examples.test_firing) == 7


async def test_gathering_a_dead_feature_is_refused() -> None:
    source = ArraySource(["a", "b"], ["x", "y"], np.eye(2, dtype=np.float32), sparse.csr_matrix((2, 3)))
    with pytest.raises(ValueError, match="fires on no document"):
        await gather_examples(source, 2)


class GatedSource:
    """A source whose top pool waits until both samples have been asked for: read one at a time,
    the pools would never arrive."""

    def __init__(self, inner: ArraySource) -> None:
        self.inner = inner
        self.samples_asked = 0
        self.both_asked = asyncio.Event()
        self.calls: list[str] = []

    async def top(self, feature: int, n: int) -> list[ExampleDocument]:
        self.calls.append("top")
        await self.both_asked.wait()
        return await self.inner.top(feature, n)

    async def sample(self, feature: int, n: int, firing: bool, seed: int) -> list[ExampleDocument]:
        self.calls.append(f"sample firing={firing}")
        self.samples_asked += 1
        if self.samples_asked == 2:
            self.both_asked.set()
        await self.both_asked.wait()
        return await self.inner.sample(feature, n, firing, seed)

    async def nearest_non_firing(self, feature: int, vector: Vector, n: int) -> list[ExampleDocument]:
        self.calls.append("nearest")
        return await self.inner.nearest_non_firing(feature, vector, n)


async def test_the_independent_pools_are_read_concurrently() -> None:
    source = GatedSource(array_source())
    examples = await asyncio.wait_for(gather_examples(source, 0), timeout=10)
    assert len(examples.test_hard) == 10
    assert sorted(source.calls[:3]) == ["sample firing=False", "sample firing=True", "top"]
    assert source.calls[3:] == ["nearest"]


class NoEmbeddings(ArraySource):
    async def top(self, feature: int, n: int) -> list[ExampleDocument]:
        return [ExampleDocument(d.doc_id, d.text, d.activation) for d in await super().top(feature, n)]


async def test_hard_negatives_need_the_shown_documents_embeddings() -> None:
    base = array_source()
    source = NoEmbeddings(
        [base.document(i).doc_id for i in range(base.num_documents)],
        [base.document(i).text for i in range(base.num_documents)],
        np.stack([base.document(i).embedding for i in range(base.num_documents)]),  # type: ignore[misc]
        base.latents,
    )
    with pytest.raises(ValueError, match="feature 0: the shown firing documents carry no embeddings"):
        await gather_examples(source, 0)
