"""The corrected family extraction on hand-built activations whose trees are known."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from featurelens.families import (
    Cooccurrence,
    ExtractionConfig,
    Family,
    GraphConfig,
    GraphEdges,
    cooccurrence,
    deduplicate,
    extract_families,
    families_in_forest,
    spanning_forest,
    thresholded_edges,
)

# Feature ids of the hand-built corpus: R roots a, b, c and N; N roots n1..n4; S (a second tree)
# roots s1..s4; DEAD never fires.
R, A, B, C, N, N1, N2, N3, N4, S, S1, S2, S3, S4, DEAD = range(15)
NUM_LATENTS = 15


def _corpus() -> list[set[int]]:
    """Documents as the sets of features firing on them."""
    docs: list[set[int]] = [{R} for _ in range(10)]  # R alone: R is denser than N
    for child in (A, B, C):
        docs += [{R, child} for _ in range(3)]  # w(R, child) = 3/4
    docs += [{R, N} for _ in range(4)]  # w(R, N) = 4/(c_N + 1)
    for child in (N1, N2, N3, N4):
        docs += [{N, child} for _ in range(3)]  # w(N, n_i) = 3/4, never with R
    docs += [{S} for _ in range(5)]
    for child in (S1, S2, S3, S4):
        docs += [{S, child} for _ in range(2)]  # w(S, s_i) = 2/3
    # Documents on which none of them fires, as in a real corpus: they keep the chance level of
    # every feature low (R fires on 23 of 248 documents), so the weights above stay near p_ij.
    docs += [set() for _ in range(200)]
    return docs


def _cooc(docs: list[set[int]]) -> Cooccurrence:
    rows = [r for r, doc in enumerate(docs) for _ in doc]
    cols = [f for doc in docs for f in sorted(doc)]
    a = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(len(docs), NUM_LATENTS))
    return cooccurrence(a)


def _families(docs: list[set[int]], config: ExtractionConfig | None = None) -> list[Family]:
    cooc = _cooc(docs)
    edges = thresholded_edges(cooc, GraphConfig(threshold=0.1))
    return extract_families(edges, cooc.densities, cooc.num_docs, config)


def _edges(triples: list[tuple[int, int, float]]) -> GraphEdges:
    return GraphEdges(
        source=np.array([t[0] for t in triples], dtype=np.int64),
        target=np.array([t[1] for t in triples], dtype=np.int64),
        weight=np.array([t[2] for t in triples], dtype=np.float64),
    )


def test_a_forest_of_two_trees_gives_two_families_and_a_family_nested_in_the_first() -> None:
    families = {f.root: f for f in _families(_corpus())}
    assert set(families) == {R, N, S}
    assert families[R].children == (A, B, C, N, N1, N2, N3, N4)
    assert families[N].children == (N1, N2, N3, N4)
    assert families[S].children == (S1, S2, S3, S4)
    assert families[R].nested_in is None
    assert families[S].nested_in is None
    assert families[N].nested_in == families[R].family_id
    assert set(families[R].edges) == {(R, A), (R, B), (R, C), (R, N), (N, N1), (N, N2), (N, N3), (N, N4)}


def test_a_feature_that_never_fires_belongs_to_no_family() -> None:
    assert all(DEAD not in f.members for f in _families(_corpus()))


def test_the_root_density_is_the_fraction_of_documents_the_root_fires_on() -> None:
    docs = _corpus()
    family = next(f for f in _families(docs) if f.root == S)
    assert family.root_density == pytest.approx(sum(S in d for d in docs) / len(docs))


def test_the_same_input_twice_or_shuffled_gives_the_same_families_and_ids() -> None:
    docs = _corpus()
    first = _families(docs)
    shuffled = [docs[i] for i in np.random.default_rng(0).permutation(len(docs))]
    assert _families(docs) == first
    assert _families(shuffled) == first
    assert [f.family_id for f in first] == [f"f{R}-p0", f"f{N}-p0", f"f{S}-p0"]


def test_families_with_too_few_children_are_dropped() -> None:
    docs = [d for d in _corpus() if S4 not in d]  # S keeps 3 children: a root, but too small
    roots = {f.root for f in _families(docs)}
    assert S not in roots
    assert {R, N} <= roots


def test_a_node_reached_from_two_roots_roots_one_nested_family_in_the_denser_root() -> None:
    r1, r2, x, a1, a2, b1, b2, x1, x2, x3 = range(10)
    triples = [(r1, a1, 0.9), (r1, a2, 0.9), (r1, x, 0.5), (r2, b1, 0.9), (r2, b2, 0.9), (r2, x, 0.5)]
    triples += [(x, c, 0.8) for c in (x1, x2, x3)]
    densities = np.array([100, 90, 50, 10, 10, 10, 10, 10, 10, 10])
    forest = spanning_forest(_edges(triples), densities)
    families = families_in_forest(forest, num_docs=200)
    assert [(f.root, f.nested_in) for f in families] == [(r1, None), (x, f"f{r1}-p0"), (r2, None)]
    assert set(families[2].children) == {b1, b2, x, x1, x2, x3}


def test_a_later_pass_finds_the_family_hidden_behind_a_removed_root() -> None:
    # y1..y4 hang under the hub H in the first forest; without H they hang under Y.
    h, a, b, c, y, y1, y2, y3, y4 = range(9)
    triples = [(h, a, 0.9), (h, b, 0.9), (h, c, 0.9)]
    triples += [(h, child, 0.8) for child in (y1, y2, y3, y4)]
    triples += [(y, child, 0.5) for child in (y1, y2, y3, y4)]
    densities = np.array([100, 10, 10, 10, 50, 10, 10, 10, 10])
    one_pass = extract_families(_edges(triples), densities, 200, ExtractionConfig(passes=1))
    assert [f.root for f in one_pass] == [h]
    four_passes = extract_families(_edges(triples), densities, 200)
    assert [(f.family_id, f.children) for f in four_passes] == [
        (f"f{h}-p0", (a, b, c, y1, y2, y3, y4)),
        (f"f{y}-p1", (y1, y2, y3, y4)),
    ]


def _family(root: int, children: range | tuple[int, ...], nested_in: str | None = None) -> Family:
    return Family(
        family_id=f"f{root}-p0",
        root=root,
        children=tuple(children),
        edges=(),
        pass_index=0,
        nested_in=nested_in,
        root_density=0.1,
    )


def test_of_two_families_overlapping_above_the_jaccard_limit_the_smaller_is_dropped() -> None:
    big = _family(100, range(10))  # children 0..9
    overlapping = _family(101, range(7))  # Jaccard 7/10 with big
    distinct = _family(102, (*range(6), 20, 21, 22, 23))  # Jaccard 6/14 with big
    assert deduplicate([overlapping, big, distinct], 0.6) == [big, distinct]


def test_a_family_nested_in_a_dropped_one_moves_up_to_the_nearest_kept_ancestor() -> None:
    top = _family(100, range(20))
    middle = _family(101, range(15), nested_in="f100-p0")  # Jaccard 0.75: dropped
    inner = _family(102, range(4), nested_in="f101-p0")
    kept = deduplicate([top, middle, inner], 0.6)
    assert [(f.root, f.nested_in) for f in kept] == [(100, None), (102, "f100-p0")]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"passes": 0}, "passes"),
        ({"min_root_children": 0}, "min_root_children"),
        ({"min_family_children": 0}, "min_family_children"),
        ({"max_jaccard": 1.5}, "max_jaccard"),
    ],
)
def test_an_extraction_config_out_of_range_names_its_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ExtractionConfig(**kwargs)  # type: ignore[arg-type]
