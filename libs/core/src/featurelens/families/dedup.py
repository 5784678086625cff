"""Jaccard deduplication of families: of two families with overlapping children, keep the larger.

Nested families and later passes find families that are mostly the same set of children. The
paper drops the smaller of two families whose children have a Jaccard similarity above 0.6.
Families are considered from the largest down (ties: earlier pass, then smaller root id), and
each is kept unless it overlaps a kept one too much, so the result does not depend on the order
the families were given in.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from featurelens.families.family import Family

__all__ = ["deduplicate", "jaccard"]

logger = logging.getLogger(__name__)


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """|a ∩ b| / |a ∪ b| of two sets of features; 0 for two empty sets."""
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def deduplicate(families: Sequence[Family], max_jaccard: float = 0.6) -> list[Family]:
    """The families whose children overlap no larger kept family's above ``max_jaccard``.

    Kept families come back in their input order; a ``nested_in`` that named a dropped family
    is moved up to the nearest kept ancestor (None if there is none).
    """
    by_size = sorted(families, key=lambda f: (-f.size, f.pass_index, f.root))
    kept: list[Family] = []
    for family in by_size:
        if all(jaccard(family.children, other.children) <= max_jaccard for other in kept):
            kept.append(family)
    kept_ids = {f.family_id for f in kept}
    parent_of = {f.family_id: f.nested_in for f in families}
    result = []
    for family in families:
        if family.family_id not in kept_ids:
            continue
        parent = family.nested_in
        while parent is not None and parent not in kept_ids:
            parent = parent_of.get(parent)
        if parent != family.nested_in:
            family = dataclasses.replace(family, nested_in=parent)
        result.append(family)
    logger.debug("jaccard dedup at %.2f: kept %d of %d families", max_jaccard, len(result), len(families))
    return result
