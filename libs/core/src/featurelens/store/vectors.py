"""Reading the vectors of any collection, also one featurelens did not create.

A team that already runs Qdrant trains an SAE on its own collection: any name, any vector name,
integer or UUID ids, its own payload. The adapters read such a collection through three calls,
kept apart from the port's corpus reads (which assume featurelens's own layout):

- ``vector_collections()``: every collection there is, featurelens-made or not;
- ``vector_specs(name)``: the collection's named vectors, dense (with a dimension) or not;
- ``scroll_vectors(name, vector_name, batch)``: the named vector of every point, in the engine's
  id order, ``batch`` rows at a time as float32 arrays (points without that vector are skipped).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

#: Rows per scroll request when reading a collection's vectors.
SCROLL_BATCH = 1024


@dataclass(frozen=True)
class VectorSpec:
    """One named vector of a collection ("" is a collection's unnamed vector)."""

    name: str
    dim: int | None
    """Dimension of a plain dense vector; None for a sparse or multi-vector one."""
    kind: str
    """"dense", "sparse" or "multivector"."""


@runtime_checkable
class VectorReader(Protocol):
    """What reading a collection's vectors needs from a store (both adapters have it)."""

    def vector_collections(self) -> list[str]: ...

    def vector_specs(self, name: str) -> list[VectorSpec]: ...

    def count_points(self, name: str) -> int: ...

    def close(self) -> None: ...

    def scroll_vectors(
        self, name: str, vector_name: str, batch: int = SCROLL_BATCH
    ) -> Iterator[np.ndarray]: ...


def stacked(vectors: list[list[float]], dim: int) -> np.ndarray:
    """Scrolled vectors as one (n, dim) float32 array (an empty page is (0, dim))."""
    if not vectors:
        return np.zeros((0, dim), dtype=np.float32)
    return np.asarray(vectors, dtype=np.float32)
