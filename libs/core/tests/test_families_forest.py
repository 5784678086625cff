"""The maximum spanning forest: unique under ties, equal to networkx's, oriented dense → sparse."""

from __future__ import annotations

import networkx as nx
import numpy as np

from featurelens.families import GraphEdges, orient, spanning_forest


def _edges(triples: list[tuple[int, int, float]]) -> GraphEdges:
    return GraphEdges(
        source=np.array([t[0] for t in triples], dtype=np.int64),
        target=np.array([t[1] for t in triples], dtype=np.int64),
        weight=np.array([t[2] for t in triples], dtype=np.float64),
    )


def _undirected(forest: nx.DiGraph) -> set[tuple[int, int]]:
    return {(min(u, v), max(u, v)) for u, v in forest.edges}


def test_the_forest_equals_networkx_maximum_spanning_tree_on_a_random_graph() -> None:
    rng = np.random.default_rng(0)
    pairs = [(i, j) for i in range(30) for j in range(i + 1, 30) if rng.random() < 0.15]
    triples = [(i, j, float(rng.random())) for i, j in pairs]
    densities = rng.integers(1, 100, size=30)
    graph = nx.Graph()
    graph.add_weighted_edges_from(triples)
    expected = {(min(u, v), max(u, v)) for u, v in nx.maximum_spanning_tree(graph).edges}
    assert _undirected(spanning_forest(_edges(triples), densities)) == expected


def test_two_components_give_a_forest_of_two_trees() -> None:
    triples = [(0, 1, 0.9), (0, 2, 0.8), (1, 2, 0.5), (3, 4, 0.7), (3, 5, 0.6)]
    forest = spanning_forest(_edges(triples), np.array([9, 5, 5, 9, 4, 4]))
    assert _undirected(forest) == {(0, 1), (0, 2), (3, 4), (3, 5)}
    assert nx.number_weakly_connected_components(forest) == 2


def test_equal_weights_keep_the_edges_with_the_smaller_feature_ids_whatever_the_input_order() -> None:
    triples = [(0, 1, 0.5), (0, 2, 0.5), (1, 2, 0.5)]
    densities = np.array([3, 2, 1])
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        forest = spanning_forest(_edges([triples[i] for i in order]), densities)
        assert _undirected(forest) == {(0, 1), (0, 2)}


def test_every_edge_points_from_the_denser_feature_to_the_sparser_one() -> None:
    rng = np.random.default_rng(1)
    pairs = [(i, j) for i in range(25) for j in range(i + 1, 25) if rng.random() < 0.2]
    densities = rng.integers(1, 50, size=25)
    forest = spanning_forest(_edges([(i, j, float(rng.random())) for i, j in pairs]), densities)
    assert forest.number_of_edges() > 0
    for parent, child in forest.edges:
        assert densities[parent] > densities[child] or (
            densities[parent] == densities[child] and parent < child
        )
        assert forest.nodes[parent]["count"] == densities[parent]


def test_equal_densities_orient_from_the_smaller_id() -> None:
    densities = np.array([5, 5, 7])
    assert orient(1, 0, densities) == (0, 1)
    assert orient(0, 2, densities) == (2, 0)


def test_excluded_features_leave_the_forest_with_their_edges() -> None:
    triples = [(0, 1, 0.9), (0, 2, 0.8), (1, 2, 0.5)]
    forest = spanning_forest(_edges(triples), np.array([9, 5, 4]), exclude={0})
    assert set(forest.nodes) == {1, 2}
    assert list(forest.edges) == [(1, 2)]
