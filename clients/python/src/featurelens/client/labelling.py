"""The labelling service: a scored label for every feature, and features found by what they mean."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence

from featurelens.client import convert
from featurelens.client.options import NOT_GIVEN, NotGiven, stream_timeout
from featurelens.client.pagination import AsyncPage, AsyncPaginator, SyncPage
from featurelens.client.retries import rpc_path
from featurelens.client.transport import AsyncTransport, SyncTransport
from featurelens.client.types import (
    FeatureLabel,
    FeatureMatch,
    LabelProgress,
    QueryRewrite,
    SteeringDirection,
    SteeringJudgement,
)
from featurelens.v1 import labelling_pb2, labelling_pb2_grpc

DEFAULT_PAGE_SIZE = 100
"""Labels per page of ``list_labels`` unless the call says otherwise."""

_SERVICE = "featurelens.v1.LabellingService"
_LABEL_FEATURES = rpc_path(_SERVICE, "LabelFeatures")
_GET_LABEL = rpc_path(_SERVICE, "GetLabel")
_GET_LABELS = rpc_path(_SERVICE, "GetLabels")
_LIST_LABELS = rpc_path(_SERVICE, "ListLabels")
_SEARCH_FEATURES = rpc_path(_SERVICE, "SearchFeatures")
_SCORE_LABEL = rpc_path(_SERVICE, "ScoreLabel")
_JUDGE_STEERING = rpc_path(_SERVICE, "JudgeSteering")
_REWRITE_QUERY = rpc_path(_SERVICE, "RewriteQuery")


def _page_size(page_size: int) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a whole number of 1 or more, not {page_size!r}")
    return page_size


class LabellingClient:
    """Labels the features of an SAE, reads the labels back and finds features by meaning.

    ``sae_id=None`` means the server's default SAE. A label's scores say how well it predicts
    where its feature fires on held-out documents (see ``FeatureLabel``).
    """

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport
        self._stub = labelling_pb2_grpc.LabellingServiceStub(transport.channel)

    def label_features(
        self,
        sae_id: str | None,
        corpus: str,
        *,
        features: Iterable[int] = (),
        interpreter_model: str | None = None,
        predictor_model: str | None = None,
        top_documents: int | None = None,
        scoring_documents: int | None = None,
        overwrite: bool = False,
        seed: int = 0,
        domain: str | None = None,
        llm_base_url: str | None = None,
        budget_usd: float | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> Iterator[LabelProgress]:
        """Label ``features`` of the SAE (every live one when none are named) from the documents of
        ``corpus``; yields progress, each finished label and the running cost as the server reports
        them.

        Resumable: features that have a label are skipped unless ``overwrite``. None (or 0) leaves
        a setting to the server: the models (the offline labeller in the embedded mode), the number
        of documents shown (10) and scored (20), the domain ("documents"), the endpoint (which must
        be one the server allows) and the budget in US dollars. When the next LLM call would pass
        the budget the job stops cleanly: the last message has ``budget_exhausted`` set and the
        labels finished before are kept. Leaving the loop early cancels the job (finished labels
        stay). Never retried: it stores labels as it goes. ``timeout`` bounds the whole job (no
        bound by default).
        """
        request = convert.label_features_request(
            sae_id,
            corpus,
            features=features,
            interpreter_model=interpreter_model,
            predictor_model=predictor_model,
            top_documents=top_documents,
            scoring_documents=scoring_documents,
            overwrite=overwrite,
            seed=seed,
            domain=domain,
            llm_base_url=llm_base_url,
            budget_usd=budget_usd,
        )
        bound = stream_timeout(timeout, NOT_GIVEN)
        for response in self._transport.server_stream(
            self._stub.LabelFeatures, request, bound, rpc=_LABEL_FEATURES
        ):
            yield convert.label_progress(response)

    def get_label(
        self, sae_id: str | None, feature: int, *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> FeatureLabel:
        """The stored label of one feature; ``NotFoundError`` when it has none."""
        request = labelling_pb2.GetLabelRequest(sae_id=sae_id or "", feature=convert.feature_id(feature))
        response = self._transport.unary(self._stub.GetLabel, request, rpc=_GET_LABEL, timeout=timeout)
        return convert.feature_label(response.label)

    def get_labels(
        self, sae_id: str | None, features: Iterable[int], *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> list[FeatureLabel]:
        """The stored labels of many features (at most 1,000) in the order asked; features without a
        label are left out."""
        request = labelling_pb2.GetLabelsRequest(sae_id=sae_id or "", features=convert.feature_ids(features))
        response = self._transport.unary(self._stub.GetLabels, request, rpc=_GET_LABELS, timeout=timeout)
        return convert.feature_labels(response)

    def list_labels(
        self,
        sae_id: str | None,
        *,
        min_pearson_r: float | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> SyncPage[FeatureLabel]:
        """The stored labels of an SAE, best score first, as a page (one call).

        Iterate the page for every label (later pages are fetched as the loop reaches them), or
        read ``items`` for this page's. ``min_pearson_r`` keeps labels whose Pearson r is at least
        that (None: no filter). ``page_token`` starts at a page that an earlier page's
        ``next_page_token`` named. ``timeout`` bounds each page's call.
        """
        size = _page_size(page_size)

        def fetch(token: str) -> SyncPage[FeatureLabel]:
            request = convert.list_labels_request(
                sae_id, min_pearson_r=min_pearson_r, page_size=size, page_token=token
            )
            response = self._transport.unary(
                self._stub.ListLabels, request, rpc=_LIST_LABELS, timeout=timeout
            )
            return SyncPage(convert.feature_labels(response), response.next_page_token, fetch)

        return fetch(page_token or "")

    def search_features(
        self,
        sae_id: str | None,
        query: str,
        *,
        top_k: int = 10,
        substring: bool = False,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[FeatureMatch]:
        """The labelled features whose labels are closest in meaning to ``query``, best first (at
        most ``top_k``, up to 1,000); with ``substring``, labels containing the query come first."""
        request = labelling_pb2.SearchFeaturesRequest(
            sae_id=sae_id or "", query=query, top_k=top_k, substring=substring
        )
        response = self._transport.unary(
            self._stub.SearchFeatures, request, rpc=_SEARCH_FEATURES, timeout=timeout
        )
        return convert.feature_matches(response)

    def score_label(
        self,
        sae_id: str | None,
        corpus: str,
        feature: int,
        label: str,
        *,
        predictor_model: str | None = None,
        scoring_documents: int | None = None,
        seed: int = 0,
        domain: str | None = None,
        llm_base_url: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> FeatureLabel:
        """Score a label you wrote for ``feature`` on held-out documents of ``corpus``; nothing is
        stored. None leaves a setting to the server, as in ``label_features``."""
        request = convert.score_label_request(
            sae_id,
            corpus,
            feature,
            label,
            predictor_model=predictor_model,
            scoring_documents=scoring_documents,
            seed=seed,
            domain=domain,
            llm_base_url=llm_base_url,
        )
        response = self._transport.unary(self._stub.ScoreLabel, request, rpc=_SCORE_LABEL, timeout=timeout)
        return convert.feature_label(response.label)

    def judge_steering(
        self,
        query: str,
        candidates: Sequence[str],
        results_before: Sequence[str],
        results_after: Sequence[str],
        direction: SteeringDirection,
        *,
        model: str | None = None,
        llm_base_url: str | None = None,
        budget_usd: float | None = None,
        domain: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> SteeringJudgement:
        """Ask the server's LLM which of ``candidates`` (2 to 10 topics; shuffle them) a steered
        search moved its results towards (``direction="up"``) or away from (``"down"``), given
        the results' texts before and after. Needs an LLM endpoint on the server (or an allowed
        ``llm_base_url``); the answer cache and ``budget_usd`` work as in ``label_features``."""
        request = convert.judge_steering_request(
            query,
            candidates,
            results_before,
            results_after,
            direction,
            convert.llm_call(model, llm_base_url, budget_usd, domain),
        )
        response = self._transport.unary(
            self._stub.JudgeSteering, request, rpc=_JUDGE_STEERING, timeout=timeout
        )
        return convert.steering_judgement(response)

    def rewrite_query(
        self,
        query: str,
        topic: str,
        direction: SteeringDirection,
        *,
        model: str | None = None,
        llm_base_url: str | None = None,
        budget_usd: float | None = None,
        domain: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> QueryRewrite:
        """Have the server's LLM rewrite ``query`` to be more (``"up"``) or less (``"down"``) about
        ``topic``; the LLM settings work as in ``judge_steering``."""
        request = convert.rewrite_query_request(
            query, topic, direction, convert.llm_call(model, llm_base_url, budget_usd, domain)
        )
        response = self._transport.unary(
            self._stub.RewriteQuery, request, rpc=_REWRITE_QUERY, timeout=timeout
        )
        return convert.query_rewrite(response)


class AsyncLabellingClient:
    """Labels the features of an SAE, reads the labels back and finds features by meaning (asyncio)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    @property
    def _stub(self) -> labelling_pb2_grpc.LabellingServiceAsyncStub:
        return self._transport.stub(
            "labelling", lambda channel: labelling_pb2_grpc.LabellingServiceStub(channel)
        )

    async def label_features(
        self,
        sae_id: str | None,
        corpus: str,
        *,
        features: Iterable[int] = (),
        interpreter_model: str | None = None,
        predictor_model: str | None = None,
        top_documents: int | None = None,
        scoring_documents: int | None = None,
        overwrite: bool = False,
        seed: int = 0,
        domain: str | None = None,
        llm_base_url: str | None = None,
        budget_usd: float | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncIterator[LabelProgress]:
        """Label features of the SAE; yields progress, each finished label and the running cost.

        As ``LabellingClient.label_features``.
        """
        request = convert.label_features_request(
            sae_id,
            corpus,
            features=features,
            interpreter_model=interpreter_model,
            predictor_model=predictor_model,
            top_documents=top_documents,
            scoring_documents=scoring_documents,
            overwrite=overwrite,
            seed=seed,
            domain=domain,
            llm_base_url=llm_base_url,
            budget_usd=budget_usd,
        )
        bound = stream_timeout(timeout, NOT_GIVEN)
        async for response in self._transport.server_stream(
            self._stub.LabelFeatures, request, bound, rpc=_LABEL_FEATURES
        ):
            yield convert.label_progress(response)

    async def get_label(
        self, sae_id: str | None, feature: int, *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> FeatureLabel:
        """The stored label of one feature; ``NotFoundError`` when it has none."""
        request = labelling_pb2.GetLabelRequest(sae_id=sae_id or "", feature=convert.feature_id(feature))
        response = await self._transport.unary(self._stub.GetLabel, request, rpc=_GET_LABEL, timeout=timeout)
        return convert.feature_label(response.label)

    async def get_labels(
        self, sae_id: str | None, features: Iterable[int], *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> list[FeatureLabel]:
        """The stored labels of many features (at most 1,000) in the order asked; features without a
        label are left out."""
        request = labelling_pb2.GetLabelsRequest(sae_id=sae_id or "", features=convert.feature_ids(features))
        response = await self._transport.unary(
            self._stub.GetLabels, request, rpc=_GET_LABELS, timeout=timeout
        )
        return convert.feature_labels(response)

    def list_labels(
        self,
        sae_id: str | None,
        *,
        min_pearson_r: float | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncPaginator[FeatureLabel]:
        """The stored labels of an SAE, best score first: ``await`` for the first page, or
        ``async for`` over every label. As ``LabellingClient.list_labels``."""
        size = _page_size(page_size)

        async def fetch(token: str) -> AsyncPage[FeatureLabel]:
            request = convert.list_labels_request(
                sae_id, min_pearson_r=min_pearson_r, page_size=size, page_token=token
            )
            response = await self._transport.unary(
                self._stub.ListLabels, request, rpc=_LIST_LABELS, timeout=timeout
            )
            return AsyncPage(convert.feature_labels(response), response.next_page_token, fetch)

        return AsyncPaginator(fetch, page_token or "")

    async def search_features(
        self,
        sae_id: str | None,
        query: str,
        *,
        top_k: int = 10,
        substring: bool = False,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> list[FeatureMatch]:
        """The labelled features whose labels are closest in meaning to ``query``, best first."""
        request = labelling_pb2.SearchFeaturesRequest(
            sae_id=sae_id or "", query=query, top_k=top_k, substring=substring
        )
        response = await self._transport.unary(
            self._stub.SearchFeatures, request, rpc=_SEARCH_FEATURES, timeout=timeout
        )
        return convert.feature_matches(response)

    async def score_label(
        self,
        sae_id: str | None,
        corpus: str,
        feature: int,
        label: str,
        *,
        predictor_model: str | None = None,
        scoring_documents: int | None = None,
        seed: int = 0,
        domain: str | None = None,
        llm_base_url: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> FeatureLabel:
        """Score a label you wrote for ``feature``; nothing is stored."""
        request = convert.score_label_request(
            sae_id,
            corpus,
            feature,
            label,
            predictor_model=predictor_model,
            scoring_documents=scoring_documents,
            seed=seed,
            domain=domain,
            llm_base_url=llm_base_url,
        )
        response = await self._transport.unary(
            self._stub.ScoreLabel, request, rpc=_SCORE_LABEL, timeout=timeout
        )
        return convert.feature_label(response.label)

    async def judge_steering(
        self,
        query: str,
        candidates: Sequence[str],
        results_before: Sequence[str],
        results_after: Sequence[str],
        direction: SteeringDirection,
        *,
        model: str | None = None,
        llm_base_url: str | None = None,
        budget_usd: float | None = None,
        domain: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> SteeringJudgement:
        """Ask the server's LLM which of ``candidates`` (2 to 10 topics; shuffle them) a steered
        search moved its results towards (``direction="up"``) or away from (``"down"``), given
        the results' texts before and after. Needs an LLM endpoint on the server (or an allowed
        ``llm_base_url``); the answer cache and ``budget_usd`` work as in ``label_features``."""
        request = convert.judge_steering_request(
            query,
            candidates,
            results_before,
            results_after,
            direction,
            convert.llm_call(model, llm_base_url, budget_usd, domain),
        )
        response = await self._transport.unary(
            self._stub.JudgeSteering, request, rpc=_JUDGE_STEERING, timeout=timeout
        )
        return convert.steering_judgement(response)

    async def rewrite_query(
        self,
        query: str,
        topic: str,
        direction: SteeringDirection,
        *,
        model: str | None = None,
        llm_base_url: str | None = None,
        budget_usd: float | None = None,
        domain: str | None = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> QueryRewrite:
        """Have the server's LLM rewrite ``query`` to be more (``"up"``) or less (``"down"``) about
        ``topic``; the LLM settings work as in ``judge_steering``."""
        request = convert.rewrite_query_request(
            query, topic, direction, convert.llm_call(model, llm_base_url, budget_usd, domain)
        )
        response = await self._transport.unary(
            self._stub.RewriteQuery, request, rpc=_REWRITE_QUERY, timeout=timeout
        )
        return convert.query_rewrite(response)
