"""Families between the store's ``FamilyRecord`` / the core's statistics and the wire's messages."""

from __future__ import annotations

import math
from collections.abc import Mapping

from featurelens.families import FamilyStats
from featurelens.services.family.dependencies import MemberLabel
from featurelens.store.families import FamilyRecord
from featurelens.v1 import family_pb2


def family(record: FamilyRecord) -> family_pb2.Family:
    return family_pb2.Family(
        family_id=record.family_id,
        sae_id=record.sae_id,
        parent_feature=record.root,
        features=list(record.members),
        edge_parents=[parent for parent, _ in record.edges],
        edge_children=[child for _, child in record.edges],
        label=record.label,
        depth=record.depth,
        root_density=record.root_density,
        nested_in=record.nested_in or "",
        corpus=record.corpus,
        direction_norm=record.direction_norm,
    )


def tree_order(record: FamilyRecord) -> list[tuple[int, int | None]]:
    """(feature, parent) of every member: the root first (no parent), then depth first with
    children by feature id, as GetFamily lists them."""
    below: dict[int, list[int]] = {}
    for above, child in record.edges:
        below.setdefault(above, []).append(child)
    order: list[tuple[int, int | None]] = []
    stack: list[tuple[int, int | None]] = [(record.root, None)]
    while stack:
        feature, parent = stack.pop()
        order.append((feature, parent))
        stack.extend((child, feature) for child in sorted(below.get(feature, ()), reverse=True))
    return order


def members(record: FamilyRecord, labels: Mapping[int, MemberLabel]) -> list[family_pb2.FamilyMember]:
    """The family's members in tree order, with densities and whatever labels were found."""
    out = []
    for feature, parent in tree_order(record):
        member = family_pb2.FamilyMember(feature=feature, density=record.density(feature))
        if parent is not None:
            member.parent = parent
        label = labels.get(feature)
        if label is not None:
            member.label = label.label
            member.label_score = _finite(label.score)
        out.append(member)
    return out


def statistics(stats: FamilyStats) -> family_pb2.FamilyStatistics:
    """The paper's statistics; an undefined one (no families, siblings that never co-occur) is 0."""
    return family_pb2.FamilyStatistics(
        families=stats.num_families,
        mean_children=_finite(stats.mean_children),
        median_children=_finite(stats.median_children),
        parent_child=_finite(stats.parent_child),
        child_child=_finite(stats.child_child),
        block_score=_finite(stats.block_score),
        block_control=_finite(stats.control_mean),
        features_in_families=int((stats.membership > 0).sum()),
    )


def neighbour(feature: int, score: float, labels: Mapping[int, MemberLabel]) -> family_pb2.FeatureNeighbour:
    label = labels.get(feature)
    return family_pb2.FeatureNeighbour(
        feature=feature, score=_finite(score), label=label.label if label is not None else ""
    )


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0
