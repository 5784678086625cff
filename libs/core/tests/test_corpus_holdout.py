"""The held-out rule: deterministic by id, about the asked share of a real corpus, checked input."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from featurelens.corpus import DEFAULT_HOLDOUT_FRACTION, held_out, read_corpus


def test_the_rule_is_the_ids_sha256_below_the_fraction() -> None:
    """Pinned to the formula, so a change of rule (which would move papers in or out of every
    index built with the old one) fails here first."""
    for doc_id in ("2504.11526", "astro-ph/0001001", "ü-ñ", ""):
        value = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")
        assert held_out(doc_id, 0.3) == (value < 0.3 * 2**64)


def test_same_answer_every_time_and_nested_by_fraction() -> None:
    ids = [f"2501.{n:05d}" for n in range(2000)]
    assert [held_out(i) for i in ids] == [held_out(i) for i in ids]
    # A larger fraction holds out a superset: growing the split never moves a paper back in.
    small = {i for i in ids if held_out(i, 0.05)}
    large = {i for i in ids if held_out(i, 0.2)}
    assert small <= large


def test_about_the_fraction_of_a_real_corpus(astro_path: Path) -> None:
    ids = [record.id for record in itertools.islice(read_corpus(astro_path), 4000)]
    share = sum(held_out(i) for i in ids) / len(ids)
    # Binomial(4000, 0.05): standard deviation 0.0034; four of them either side.
    assert abs(share - DEFAULT_HOLDOUT_FRACTION) < 0.014, share


def test_the_edges_hold_out_nothing_or_everything() -> None:
    ids = [str(n) for n in range(500)]
    assert not any(held_out(i, 0.0) for i in ids)
    assert all(held_out(i, 1.0) for i in ids)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_a_fraction_outside_0_1_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        held_out("2504.11526", fraction)
