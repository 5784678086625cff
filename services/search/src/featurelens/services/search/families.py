"""Family interventions: a family id expands to its member features (the family service's job).

Until the family service exists, ``NoFamilies`` refuses family targets; a real expander plugs in
through ``SearchServicer(families=...)`` without touching the search path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from featurelens.kit import FailedPreconditionError
from featurelens.kit.echo import shown


class FamilyExpander(Protocol):
    """The member features of a feature family of an SAE."""

    async def features(self, sae_id: str, family_id: str) -> Sequence[int]:
        """The family's member latents; NotFoundError for an unknown family."""
        ...


class NoFamilies:
    """The expander used until the family service exists: every family target is refused."""

    async def features(self, sae_id: str, family_id: str) -> Sequence[int]:
        raise FailedPreconditionError(
            f"intervention on family {shown(family_id)}: families are not available yet; steer by feature id"
        )
