"""Feature families as the search service uses them: what a family intervention expands to, and
which families each explaining feature belongs to. The family service answers both.

A family intervention is part of the query: when it cannot be expanded, the search fails and
says why, with the family service's code (NOT_FOUND for a family it does not know, UNAVAILABLE
when it cannot be reached). A feature's families in an explanation are a courtesy, like its
label: when the family service fails, the explanation goes without them and a warning is logged
(once a minute per cause).

``FamilyService`` is the client; ``NoFamilies`` stands in when no family service is configured.
Either plugs in through ``SearchServicer(families=...)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from grpc import aio

from featurelens.kit import FailedPreconditionError, Peer, ServiceError, UnavailableError
from featurelens.kit.echo import shown
from featurelens.services.search.throttled import ThrottledWarning
from featurelens.steering import FamilyMembers
from featurelens.v1 import family_pb2, family_pb2_grpc

logger = logging.getLogger(__name__)

#: Most features one FeatureFamilies call may name (stated in family.proto).
MAX_FEATURES_PER_CALL = 1000


class FamilyExpander(Protocol):
    """The feature families of an SAE: a family's members, and the families of some features."""

    async def members(self, sae_id: str, family_id: str) -> FamilyMembers:
        """The family's members and direction norm; NotFoundError for an unknown family,
        UnavailableError when whoever knows the families cannot be reached."""
        ...

    async def families_of(self, sae_id: str, features: Sequence[int]) -> Mapping[int, Sequence[str]]:
        """The family ids of those features that belong to one, most specific first; never fails
        for want of families."""
        ...


class NoFamilies:
    """The families of a search service without a family service: family targets are refused and
    explanations name no families."""

    async def members(self, sae_id: str, family_id: str) -> FamilyMembers:
        raise FailedPreconditionError(
            f"cannot expand family {shown(family_id)}: this search service has no family service "
            "configured (FEATURELENS_SEARCH_FAMILY_ADDRESS); steer by feature id"
        )

    async def families_of(self, sae_id: str, features: Sequence[int]) -> Mapping[int, Sequence[str]]:
        return {}


class FamilyService:
    """Families from the family service: GetFamily expands a family target, FeatureFamilies names
    the families of explaining features (a ``FamilyExpander``)."""

    def __init__(self, peer: Peer, clock: Callable[[], float] = time.monotonic) -> None:
        self.peer = peer
        self._warning = ThrottledWarning(
            logger, "feature families left out: ", "; explanations go on without families", clock
        )

    async def members(self, sae_id: str, family_id: str) -> FamilyMembers:
        stub = family_pb2_grpc.FamilyServiceStub(self.peer.channel)
        request = family_pb2.GetFamilyRequest(family_id=family_id, sae_id=sae_id)
        unexpanded = f"cannot expand family {shown(family_id)}"
        try:
            reply = await self.peer.call(stub.GetFamily(request, timeout=self.peer.timeout_s))
        except ServiceError as error:
            # The peer's code is kept (NOT_FOUND for an unknown family), the sentence names the family.
            raise type(error)(f"{unexpanded}: {error}") from None
        try:
            return FamilyMembers(tuple(reply.family.features), float(reply.family.direction_norm))
        except ValueError as error:
            raise UnavailableError(
                f"{unexpanded}: {self.peer.where} sent a family it cannot steer ({error})"
            ) from None

    async def families_of(self, sae_id: str, features: Sequence[int]) -> Mapping[int, Sequence[str]]:
        """The families of those features that have one; none when the family service fails."""
        asked = list(dict.fromkeys(features))
        batches = [asked[i : i + MAX_FEATURES_PER_CALL] for i in range(0, len(asked), MAX_FEATURES_PER_CALL)]
        try:
            replies = await asyncio.gather(*(self._feature_families(sae_id, batch) for batch in batches))
        except aio.AioRpcError as error:
            code = error.code()
            self._warning.warn(code.name, "%s answered %s (%s)", self.peer.where, code.name, error.details())
            return {}
        wanted = set(asked)
        return {
            entry.feature: tuple(entry.family_ids)
            for reply in replies
            for entry in reply.features
            if entry.feature in wanted and entry.family_ids
        }

    async def _feature_families(self, sae_id: str, features: list[int]) -> family_pb2.FeatureFamiliesResponse:
        # Not through Peer.call: its warning on every failed call is what this class rate-limits.
        stub = family_pb2_grpc.FamilyServiceStub(self.peer.channel)
        request = family_pb2.FeatureFamiliesRequest(sae_id=sae_id, features=features)
        return await stub.FeatureFamilies(request, timeout=self.peer.timeout_s)
