"""The family service: feature families, feature neighbours and matching features across SAEs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

from featurelens.client import convert
from featurelens.client.options import NOT_GIVEN, NotGiven, stream_timeout
from featurelens.client.pagination import AsyncPage, AsyncPaginator, SyncPage
from featurelens.client.retries import rpc_path
from featurelens.client.transport import AsyncTransport, SyncTransport
from featurelens.client.types import (
    CrossSaeMatch,
    Family,
    FamilyBuildProgress,
    FeatureFamilies,
    FeatureNeighbour,
    NeighbourKind,
)
from featurelens.v1 import family_pb2, family_pb2_grpc

DEFAULT_PAGE_SIZE = 100
"""Families per page of ``list_families`` unless the call says otherwise."""

_SERVICE = "featurelens.v1.FamilyService"
_BUILD_FAMILIES = rpc_path(_SERVICE, "BuildFamilies")
_LIST_FAMILIES = rpc_path(_SERVICE, "ListFamilies")
_GET_FAMILY = rpc_path(_SERVICE, "GetFamily")
_FEATURE_NEIGHBOURS = rpc_path(_SERVICE, "FeatureNeighbours")
_MATCH_FEATURES = rpc_path(_SERVICE, "MatchFeatures")
_FEATURE_FAMILIES = rpc_path(_SERVICE, "FeatureFamilies")


def _page_size(page_size: int) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a whole number of 1 or more, not {page_size!r}")
    return page_size


class FamiliesClient:
    """Builds the feature families of an SAE, reads them back, and relates features to each other.

    A family is a tree of features that fire together: a general parent over more specific
    children. ``sae_id=None`` means the server's default SAE.
    """

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport
        self._stub = family_pb2_grpc.FamilyServiceStub(transport.channel)

    def build_families(
        self,
        corpus: str,
        *,
        sae_id: str | None = None,
        threshold: float | None = None,
        min_children: int | None = None,
        interpreter_model: str | None = None,
        budget_usd: float | None = None,
        domain: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Iterator[FamilyBuildProgress]:
        """Build the families of the SAE from how its features co-occur over ``corpus``; yields
        progress, and the last message carries the result (families built, their statistics and
        what labelling them cost).

        None leaves a setting to the server: ``threshold`` (the least normalised co-occurrence of
        an edge, in (0, 1]; 0.1), ``min_children`` (families with fewer children are dropped; 4),
        the model that labels the families (the offline labeller, from the members' labels, when
        no LLM is configured), the budget in US dollars and the domain ("documents"). Never
        retried; ``timeout`` bounds the whole job (no bound by default).
        """
        request = convert.build_families_request(
            corpus,
            sae_id=sae_id,
            threshold=threshold,
            min_children=min_children,
            interpreter_model=interpreter_model,
            budget_usd=budget_usd,
            domain=domain,
        )
        bound = stream_timeout(timeout, NOT_GIVEN)
        for response in self._transport.server_stream(
            self._stub.BuildFamilies, request, bound, rpc=_BUILD_FAMILIES
        ):
            yield convert.family_build_progress(response)

    def list_families(
        self,
        sae_id: str | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> SyncPage[Family]:
        """The families of an SAE, largest first, as a page (one call); their ``members`` are
        left empty (``get_family`` fills them).

        Iterate the page for every family (later pages are fetched as the loop reaches them), or
        read ``items`` for this page's. ``timeout`` bounds each page's call.
        """
        size = _page_size(page_size)

        def fetch(token: str) -> SyncPage[Family]:
            request = family_pb2.ListFamiliesRequest(sae_id=sae_id or "", page_size=size, page_token=token)
            response = self._transport.unary(
                self._stub.ListFamilies, request, rpc=_LIST_FAMILIES, timeout=timeout
            )
            return SyncPage(convert.families(response), response.next_page_token, fetch)

        return fetch(page_token or "")

    def get_family(
        self,
        family_id: str,
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Family:
        """One family with its members (parent first, then depth first); ``NotFoundError`` when
        the SAE has no family of that id."""
        request = family_pb2.GetFamilyRequest(family_id=convert.family_id(family_id), sae_id=sae_id or "")
        response = self._transport.unary(self._stub.GetFamily, request, rpc=_GET_FAMILY, timeout=timeout)
        return convert.family(response.family, response.members)

    def feature_neighbours(
        self,
        feature: int,
        sae_id: str | None = None,
        *,
        kind: NeighbourKind = "cooccurrence",
        top_k: int = 10,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[FeatureNeighbour]:
        """The ``top_k`` features most related to ``feature``, best first: by normalised
        co-occurrence over the corpus the families were built from (``kind="cooccurrence"``) or
        by the cosine of their decoder directions (``kind="decoder"``)."""
        request = convert.feature_neighbours_request(feature, sae_id=sae_id, kind=kind, top_k=top_k)
        response = self._transport.unary(
            self._stub.FeatureNeighbours, request, rpc=_FEATURE_NEIGHBOURS, timeout=timeout
        )
        return convert.feature_neighbours(response)

    def match_features(
        self,
        source_sae_id: str,
        target_sae_id: str,
        *,
        features: Iterable[int] | None = None,
        top_k: int = 1,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[CrossSaeMatch]:
        """Each feature of the source SAE (``features``, or every one when None) with its ``top_k``
        most similar features of the target SAE by decoder cosine, best first: how the features
        of a small SAE split into those of a larger one."""
        request = convert.match_features_request(source_sae_id, target_sae_id, features=features, top_k=top_k)
        response = self._transport.unary(
            self._stub.MatchFeatures, request, rpc=_MATCH_FEATURES, timeout=timeout
        )
        return convert.cross_sae_matches(response)

    def feature_families(
        self,
        features: Iterable[int],
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[FeatureFamilies]:
        """The families each feature belongs to (at most 1,000 features), in the order asked,
        most specific family first."""
        request = family_pb2.FeatureFamiliesRequest(
            sae_id=sae_id or "", features=convert.feature_ids(features)
        )
        response = self._transport.unary(
            self._stub.FeatureFamilies, request, rpc=_FEATURE_FAMILIES, timeout=timeout
        )
        return convert.feature_families(response)


class AsyncFamiliesClient:
    """Builds the feature families of an SAE, reads them back, and relates features (asyncio)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    @property
    def _stub(self) -> family_pb2_grpc.FamilyServiceAsyncStub:
        return self._transport.stub("family", lambda channel: family_pb2_grpc.FamilyServiceStub(channel))

    async def build_families(
        self,
        corpus: str,
        *,
        sae_id: str | None = None,
        threshold: float | None = None,
        min_children: int | None = None,
        interpreter_model: str | None = None,
        budget_usd: float | None = None,
        domain: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncIterator[FamilyBuildProgress]:
        """Build the families of the SAE; yields progress, and the last message carries the result.

        As ``FamiliesClient.build_families``.
        """
        request = convert.build_families_request(
            corpus,
            sae_id=sae_id,
            threshold=threshold,
            min_children=min_children,
            interpreter_model=interpreter_model,
            budget_usd=budget_usd,
            domain=domain,
        )
        bound = stream_timeout(timeout, NOT_GIVEN)
        async for response in self._transport.server_stream(
            self._stub.BuildFamilies, request, bound, rpc=_BUILD_FAMILIES
        ):
            yield convert.family_build_progress(response)

    def list_families(
        self,
        sae_id: str | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncPaginator[Family]:
        """The families of an SAE, largest first: ``await`` for the first page, or ``async for``
        over every family. As ``FamiliesClient.list_families``."""
        size = _page_size(page_size)

        async def fetch(token: str) -> AsyncPage[Family]:
            request = family_pb2.ListFamiliesRequest(sae_id=sae_id or "", page_size=size, page_token=token)
            response = await self._transport.unary(
                self._stub.ListFamilies, request, rpc=_LIST_FAMILIES, timeout=timeout
            )
            return AsyncPage(convert.families(response), response.next_page_token, fetch)

        return AsyncPaginator(fetch, page_token or "")

    async def get_family(
        self,
        family_id: str,
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Family:
        """One family with its members; ``NotFoundError`` when the SAE has no family of that id."""
        request = family_pb2.GetFamilyRequest(family_id=convert.family_id(family_id), sae_id=sae_id or "")
        response = await self._transport.unary(
            self._stub.GetFamily, request, rpc=_GET_FAMILY, timeout=timeout
        )
        return convert.family(response.family, response.members)

    async def feature_neighbours(
        self,
        feature: int,
        sae_id: str | None = None,
        *,
        kind: NeighbourKind = "cooccurrence",
        top_k: int = 10,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[FeatureNeighbour]:
        """The ``top_k`` features most related to ``feature``, best first, by co-occurrence or
        decoder cosine."""
        request = convert.feature_neighbours_request(feature, sae_id=sae_id, kind=kind, top_k=top_k)
        response = await self._transport.unary(
            self._stub.FeatureNeighbours, request, rpc=_FEATURE_NEIGHBOURS, timeout=timeout
        )
        return convert.feature_neighbours(response)

    async def match_features(
        self,
        source_sae_id: str,
        target_sae_id: str,
        *,
        features: Iterable[int] | None = None,
        top_k: int = 1,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[CrossSaeMatch]:
        """Each feature of the source SAE with its most similar features of the target SAE."""
        request = convert.match_features_request(source_sae_id, target_sae_id, features=features, top_k=top_k)
        response = await self._transport.unary(
            self._stub.MatchFeatures, request, rpc=_MATCH_FEATURES, timeout=timeout
        )
        return convert.cross_sae_matches(response)

    async def feature_families(
        self,
        features: Iterable[int],
        sae_id: str | None = None,
        *,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[FeatureFamilies]:
        """The families each feature belongs to, in the order asked, most specific first."""
        request = family_pb2.FeatureFamiliesRequest(
            sae_id=sae_id or "", features=convert.feature_ids(features)
        )
        response = await self._transport.unary(
            self._stub.FeatureFamilies, request, rpc=_FEATURE_FAMILIES, timeout=timeout
        )
        return convert.feature_families(response)
