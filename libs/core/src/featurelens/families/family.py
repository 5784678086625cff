"""A feature family: a root feature over its descendants in the oriented spanning forest."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Family", "family_id"]


def family_id(root: int, pass_index: int) -> str:
    """``f<root>-p<pass>``: readable, and unique because a root is removed after its pass.

    Derived from the root alone (never from a label, which the paper's code used as a key so one
    family overwrote another), so the same activations always give the same ids.
    """
    return f"f{root}-p{pass_index}"


@dataclass(frozen=True)
class Family:
    """A general (dense) feature over the specific (sparser) features below it."""

    family_id: str
    """Stable id, see ``family_id``."""

    root: int
    """The parent feature (the family's root in the oriented forest)."""

    children: tuple[int, ...]
    """Every descendant of the root in the forest of its pass (the members but the root), sorted."""

    edges: tuple[tuple[int, int], ...]
    """The (parent, child) edges of the forest among the root and its children, sorted: the tree
    to draw."""

    pass_index: int
    """The pass (0-based) whose forest the family was found in."""

    nested_in: str | None
    """The id of the family this one is nested in, or None for a top-level family."""

    root_density: float
    """Fraction of the documents on which the root fires."""

    def __post_init__(self) -> None:
        if self.root in self.children:
            raise ValueError(f"Family.children must not contain the root {self.root}")
        if list(self.children) != sorted(set(self.children)):
            raise ValueError("Family.children must be sorted and without repeats")

    @property
    def members(self) -> tuple[int, ...]:
        """The root followed by the children."""
        return (self.root, *self.children)

    @property
    def size(self) -> int:
        """Number of children (the paper's family size)."""
        return len(self.children)
