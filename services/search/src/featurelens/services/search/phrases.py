"""Phrase interventions: a phrase names the labelled feature whose label best matches it.

The labelling service answers which feature that is (``labelling.LabellingPhrases``); without it,
``NoPhrases`` refuses phrase targets. Either plugs in through ``SearchServicer(phrases=...)``.
"""

from __future__ import annotations

from typing import Protocol

from featurelens.kit import FailedPreconditionError
from featurelens.steering import PhraseMatch, echo


class PhraseResolver(Protocol):
    """The labelled feature of an SAE that a phrase names."""

    async def match(self, sae_id: str, phrase: str) -> PhraseMatch:
        """The best-matching labelled feature; FailedPreconditionError when the SAE has no labels,
        UnavailableError when whoever knows the labels cannot be reached."""
        ...


class NoPhrases:
    """The resolver of a search service without a labelling service: every phrase is refused."""

    async def match(self, sae_id: str, phrase: str) -> PhraseMatch:
        raise FailedPreconditionError(
            f"cannot resolve phrase {echo(phrase)}: this search service has no labelling service to "
            "find features by their labels; steer by feature id"
        )
