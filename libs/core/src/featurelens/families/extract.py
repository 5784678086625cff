"""The paper's family extraction over several passes, with its bugs fixed.

One pass, on the oriented forest: every node with no parent and more than 2 children roots a
family made of all its descendants; then, going down from each family root, a child with more
than 2 children of its own roots a nested family, and so on below it. The walk is a queue of
(node, family id) consumed front to back, never a list extended while it is iterated, and a
node roots at most one family (a set of visited roots), so each nested family is found once —
the paper's code visited them twice. Roots are taken densest first (ties: smaller id), so when
two families reach the same node the denser one nests it.

Between passes, every root found (top-level and nested) is removed from the graph and the forest
is rebuilt, with the same threshold (the paper lowered it in later passes); the paper runs 3 more
passes after the first. Then families with more than 3 children are kept and the Jaccard
deduplication drops the smaller of two overlapping ones.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx
import numpy as np
import numpy.typing as npt

from featurelens.families.cooccurrence import GraphEdges
from featurelens.families.dedup import deduplicate
from featurelens.families.family import Family, family_id
from featurelens.families.forest import spanning_forest

__all__ = ["ExtractionConfig", "extract_families", "families_in_forest"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractionConfig:
    """How families are read from the forests (the paper's values by default)."""

    passes: int = 4
    """Forests built: the first and the paper's 3 more, each without the roots found before."""

    min_root_children: int = 3
    """A node roots a family when it has at least this many direct children (the paper: > 2)."""

    min_family_children: int = 4
    """Families with fewer children (descendants) are dropped at the end (the paper: > 3)."""

    max_jaccard: float = 0.6
    """Of two families whose children overlap more than this (Jaccard), the smaller is dropped."""

    def __post_init__(self) -> None:
        for name, low in (("passes", 1), ("min_root_children", 1), ("min_family_children", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"ExtractionConfig.{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= self.max_jaccard <= 1.0:
            raise ValueError(f"ExtractionConfig.max_jaccard must be in [0, 1], got {self.max_jaccard!r}")


def _family(forest: nx.DiGraph, root: int, pass_index: int, nested_in: str | None, num_docs: int) -> Family:
    children = tuple(sorted(nx.descendants(forest, root)))
    members = {root, *children}
    edges = tuple(sorted((int(u), int(v)) for u, v in forest.out_edges(members) if v in members))
    return Family(
        family_id=family_id(root, pass_index),
        root=int(root),
        children=tuple(int(c) for c in children),
        edges=edges,
        pass_index=pass_index,
        nested_in=nested_in,
        root_density=forest.nodes[root]["count"] / max(num_docs, 1),
    )


def families_in_forest(
    forest: nx.DiGraph,
    num_docs: int,
    pass_index: int = 0,
    min_root_children: int = 3,
) -> list[Family]:
    """The families of one oriented forest: top-level ones first, each followed by its nested ones.

    No size filter or deduplication here; ``extract_families`` applies them after all passes.
    """
    roots = [
        n for n in forest.nodes if forest.in_degree(n) == 0 and forest.out_degree(n) >= min_root_children
    ]
    roots.sort(key=lambda n: (-forest.nodes[n]["count"], n))
    visited: set[int] = set()
    families: list[Family] = []
    for root in roots:
        visited.add(root)
        top = _family(forest, root, pass_index, None, num_docs)
        families.append(top)
        queue: deque[tuple[int, str]] = deque([(root, top.family_id)])
        while queue:
            node, fid = queue.popleft()
            for child in sorted(forest.successors(node)):
                if child in visited or forest.out_degree(child) < min_root_children:
                    continue
                visited.add(child)
                nested = _family(forest, child, pass_index, fid, num_docs)
                families.append(nested)
                queue.append((child, nested.family_id))
    return families


def extract_families(
    edges: GraphEdges,
    densities: npt.NDArray[np.integer],
    num_docs: int,
    config: ExtractionConfig | None = None,
    on_pass: Callable[[int, int], None] | None = None,
) -> list[Family]:
    """Every family of the thresholded graph, over ``config.passes`` passes, filtered and deduplicated.

    ``on_pass(pass_index, families_found)`` is called after each pass (progress for a caller that
    streams it). Passes stop early when one finds no family, since the next forest would be the same.
    """
    config = config or ExtractionConfig()
    removed: set[int] = set()
    found: list[Family] = []
    for pass_index in range(config.passes):
        forest = spanning_forest(edges, densities, exclude=removed)
        families = families_in_forest(forest, num_docs, pass_index, config.min_root_children)
        logger.info("family pass %d: %d candidate families", pass_index, len(families))
        if on_pass is not None:
            on_pass(pass_index, len(families))
        if not families:
            break
        found.extend(families)
        removed.update(f.root for f in families)
    # A family contains every family nested in it, so it is never smaller: the size filter leaves
    # no ``nested_in`` pointing at a dropped family (the deduplication repairs its own).
    sized = [f for f in found if f.size >= config.min_family_children]
    kept = deduplicate(sized, config.max_jaccard)
    logger.info(
        "families: %d candidates, %d with at least %d children, %d after deduplication",
        len(found),
        len(sized),
        config.min_family_children,
        len(kept),
    )
    return kept
