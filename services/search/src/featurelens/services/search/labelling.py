"""The labelling service as the search service uses it: labels for explanations and steered
features, and the feature a phrase names.

A label is a courtesy: when the labelling service cannot be reached or fails, a search goes on
without labels and a warning is logged (once a minute per cause, so a search service whose
labelling service is down does not log a line per search). A phrase is part of the query: when
it cannot be resolved, the search fails and says why.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence

from grpc import aio

from featurelens.kit import FailedPreconditionError, NotFoundError, Peer, ServiceError, UnavailableError
from featurelens.services.search.throttled import ThrottledWarning
from featurelens.steering import PhraseMatch, echo
from featurelens.v1 import labelling_pb2, labelling_pb2_grpc

logger = logging.getLogger(__name__)

#: Most features one GetLabels call may name (stated in labelling.proto).
MAX_LABELS_PER_CALL = 1000


class LabellingLabels:
    """Feature labels from the labelling service's GetLabels (a ``LabelLookup``); never fails."""

    def __init__(self, peer: Peer, clock: Callable[[], float] = time.monotonic) -> None:
        self.peer = peer
        self._warning = ThrottledWarning(
            logger, "feature labels left out: ", "; searches go on without labels", clock
        )

    async def labels(self, sae_id: str, features: Sequence[int]) -> Mapping[int, str]:
        """The labels of those features that have one; none when the labelling service fails."""
        asked = list(dict.fromkeys(features))
        batches = [asked[i : i + MAX_LABELS_PER_CALL] for i in range(0, len(asked), MAX_LABELS_PER_CALL)]
        try:
            replies = await asyncio.gather(*(self._get(sae_id, batch) for batch in batches))
        except aio.AioRpcError as error:
            code = error.code()
            self._warning.warn(code.name, "%s answered %s (%s)", self.peer.where, code.name, error.details())
            return {}
        wanted = set(asked)
        return {
            label.feature: label.label
            for reply in replies
            for label in reply.labels
            if label.feature in wanted and label.label
        }

    async def _get(self, sae_id: str, features: list[int]) -> labelling_pb2.GetLabelsResponse:
        # Not through Peer.call: its warning on every failed call is what this class rate-limits.
        stub = labelling_pb2_grpc.LabellingServiceStub(self.peer.channel)
        request = labelling_pb2.GetLabelsRequest(sae_id=sae_id, features=features)
        return await stub.GetLabels(request, timeout=self.peer.timeout_s)


class LabellingPhrases:
    """Phrases resolved by the labelling service's SearchFeatures (a ``PhraseResolver``)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def match(self, sae_id: str, phrase: str) -> PhraseMatch:
        stub = labelling_pb2_grpc.LabellingServiceStub(self.peer.channel)
        request = labelling_pb2.SearchFeaturesRequest(sae_id=sae_id, query=phrase, top_k=1)
        unresolved = f"cannot resolve phrase {echo(phrase)}"
        try:
            reply = await self.peer.call(stub.SearchFeatures(request, timeout=self.peer.timeout_s))
        except NotFoundError:
            raise _no_labels(unresolved, sae_id) from None
        except ServiceError as error:
            raise type(error)(f"{unresolved}: {error}") from None
        if not reply.matches:
            raise _no_labels(unresolved, sae_id)
        best = reply.matches[0]
        if not math.isfinite(best.score):
            raise UnavailableError(f"{unresolved}: {self.peer.where} sent a match score that is not a number")
        return PhraseMatch(best.label.feature, float(best.score), best.label.label)


def _no_labels(unresolved: str, sae_id: str) -> FailedPreconditionError:
    return FailedPreconditionError(
        f"{unresolved}: SAE {sae_id} has no labelled features; run `featurelens label` first"
    )
