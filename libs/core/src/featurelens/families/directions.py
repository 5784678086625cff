"""A family's direction in the embedding space: where steering by the whole family moves a query."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from featurelens.families.family import Family

__all__ = ["family_directions"]


def family_directions(
    families: Sequence[Family], members: Sequence[int], unit: npt.NDArray[np.float32]
) -> list[tuple[npt.NDArray[np.float32], float]]:
    """Each family's direction (the normalised sum of its members' unit decoder directions) and the
    sum's length; ``unit[i]`` is the unit decoder direction of feature ``members[i]``.

    Steering by a family with weight w adds w times the direction, which is each member's unit
    direction times w / length: one weight for the family, shared by its members.
    """
    row = {feature: index for index, feature in enumerate(members)}
    out = []
    for family in families:
        total = unit[[row[m] for m in family.members]].sum(axis=0, dtype=np.float64)
        norm = float(np.linalg.norm(total))
        # Members that cancel out exactly never happen with real decoders; the root's direction
        # keeps the store's rule (a direction must point somewhere) if they ever do.
        direction = total / norm if norm > 1e-9 else unit[row[family.root]].astype(np.float64)
        out.append((direction.astype(np.float32), norm))
    return out
