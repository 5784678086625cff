"""The LabellingService: checks each request and hands it to a job, the labels or the scorer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import grpc
from grpc import aio
from typing_extensions import override

from featurelens.interp.budget import BudgetExhausted
from featurelens.interp.llm import LlmRequestError, LlmUnavailableError
from featurelens.kit import NotFoundError, fields, register_error
from featurelens.kit.pages import page_offset, page_token, query_fingerprint
from featurelens.services.labelling import convert, validation
from featurelens.services.labelling.dependencies import Peers
from featurelens.services.labelling.family_labels import FamilyLabelJob
from featurelens.services.labelling.jobs import LabelJob
from featurelens.services.labelling.labellers import LabellerFactory
from featurelens.services.labelling.labels import Labels
from featurelens.services.labelling.scoring import LabelScorer
from featurelens.services.labelling.settings import LabellingSettings
from featurelens.services.labelling.steering_calls import SteeringCalls
from featurelens.v1 import labelling_pb2, labelling_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = labelling_pb2.DESCRIPTOR.services_by_name["LabellingService"].full_name

# The LLM path's errors as statuses: an endpoint that cannot be reached is UNAVAILABLE; one that
# refuses the server's key, model or request is the server's set-up (FAILED_PRECONDITION); a
# budget that does not allow one more call is RESOURCE_EXHAUSTED.
register_error(LlmUnavailableError, grpc.StatusCode.UNAVAILABLE)
register_error(LlmRequestError, grpc.StatusCode.FAILED_PRECONDITION)
register_error(BudgetExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED)


class LabellingServicer(labelling_pb2_grpc.LabellingServiceServicer):
    """Labels features, keeps the labels in Qdrant and finds features by their labels.

    The server calls ``start()``, which opens the label store; health turns SERVING then.
    """

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(
        self, labels: Labels, peers: Peers, labellers: LabellerFactory, settings: LabellingSettings
    ) -> None:
        self.labels = labels
        self.peers = peers
        self.labellers = labellers
        self.settings = settings
        self.steering = SteeringCalls(labellers, settings.default_domain)

    # -- lifecycle (the kit's Servicer protocol) --------------------------------------------

    def add_to_server(self, server: aio.Server) -> None:
        labelling_pb2_grpc.add_LabellingServiceServicer_to_server(self, server)

    async def start(self) -> None:
        await self.labels.open()
        logger.info(
            "label store open; search at %s, encoder at %s, sae at %s; %s",
            self.peers.search.address,
            self.peers.encoder.address,
            self.peers.sae.address,
            self.labellers.describe_default(),
        )

    async def unready_reason(self) -> str | None:
        """None while the label store answers (the kit's readiness probe, ``featurelens.kit.readiness``)."""
        return await self.labels.unready_reason()

    async def close(self) -> None:
        await self.peers.close()
        await self.labellers.close()
        await self.labels.close()

    async def _sae_id(self, requested: str) -> str:
        """The SAE a request means: the one it names, or the sae service's default."""
        if validation.sae_id(requested):
            return requested
        return (await self.peers.sae_facts("")).sae_id

    # -- RPCs ---------------------------------------------------------------------------------

    @override
    async def LabelFeatures(
        self, request: labelling_pb2.LabelFeaturesRequest, context: aio.ServicerContext
    ) -> AsyncIterator[labelling_pb2.LabelFeaturesResponse]:
        job = LabelJob(
            self.peers, self.labels, self.labellers, self.settings.concurrency, self.settings.default_domain
        )
        async for response in job.run(request):
            yield response

    @override
    async def LabelFamilies(
        self, request: labelling_pb2.LabelFamiliesRequest, context: aio.ServicerContext
    ) -> AsyncIterator[labelling_pb2.LabelFamiliesResponse]:
        job = FamilyLabelJob(
            self.peers, self.labels, self.labellers, self.settings.concurrency, self.settings.default_domain
        )
        async for response in job.run(request):
            yield response

    @override
    async def GetLabel(
        self, request: labelling_pb2.GetLabelRequest, context: aio.ServicerContext
    ) -> labelling_pb2.GetLabelResponse:
        sae_id = await self._sae_id(request.sae_id)
        await self.labels.require(sae_id)
        found = await self.labels.get(sae_id, [request.feature])
        if not found:
            raise NotFoundError(
                f"feature {request.feature} of SAE {sae_id!r} has no label; label it with LabelFeatures "
                "(`featurelens label`)"
            )
        return labelling_pb2.GetLabelResponse(label=convert.feature_label(found[0]))

    @override
    async def GetLabels(
        self, request: labelling_pb2.GetLabelsRequest, context: aio.ServicerContext
    ) -> labelling_pb2.GetLabelsResponse:
        sae_id = await self._sae_id(request.sae_id)
        features = fields.feature_ids(request.features, validation.MAX_GET_FEATURES)
        found = await self.labels.get(sae_id, features) if features else []
        return labelling_pb2.GetLabelsResponse(labels=[convert.feature_label(r) for r in found])

    @override
    async def ListLabels(
        self, request: labelling_pb2.ListLabelsRequest, context: aio.ServicerContext
    ) -> labelling_pb2.ListLabelsResponse:
        sae_id = await self._sae_id(request.sae_id)
        size = validation.count(
            request.page_size, "page_size", validation.DEFAULT_PAGE_SIZE, validation.MAX_PAGE_SIZE
        )
        least = validation.min_pearson_r(request.min_pearson_r if request.HasField("min_pearson_r") else None)
        fingerprint = query_fingerprint("ListLabels", sae_id, least)
        offset = page_offset(request.page_token, fingerprint)
        await self.labels.require(sae_id)
        records = await self.labels.listing(sae_id)
        if least is not None:
            records = [r for r in records if r.pearson_r is not None and r.pearson_r >= least]
        page = records[offset : offset + size]
        following = offset + len(page)
        return labelling_pb2.ListLabelsResponse(
            labels=[convert.feature_label(r) for r in page],
            next_page_token=page_token(following, fingerprint) if following < len(records) else "",
        )

    @override
    async def SearchFeatures(
        self, request: labelling_pb2.SearchFeaturesRequest, context: aio.ServicerContext
    ) -> labelling_pb2.SearchFeaturesResponse:
        sae_id = await self._sae_id(request.sae_id)
        query = validation.query_text(request.query)
        top_k = validation.count(request.top_k, "top_k", validation.DEFAULT_TOP_K, validation.MAX_TOP_K)
        await self.labels.require(sae_id)
        response = labelling_pb2.SearchFeaturesResponse()
        seen: set[int] = set()
        if request.substring:
            for record in await self.labels.substring(sae_id, query, top_k):
                seen.add(record.feature)
                response.matches.add(label=convert.feature_label(record), score=1.0, substring_match=True)
        if len(response.matches) < top_k:
            sae = await self.peers.sae_facts(sae_id)
            vector = (await self.peers.embed([query], sae.embedding_model))[0]
            for record, score in await self.labels.search(sae_id, vector, top_k + len(seen)):
                if record.feature in seen or len(response.matches) >= top_k:
                    continue
                response.matches.add(label=convert.feature_label(record), score=score)
        return response

    @override
    async def ScoreLabel(
        self, request: labelling_pb2.ScoreLabelRequest, context: aio.ServicerContext
    ) -> labelling_pb2.ScoreLabelResponse:
        record = await LabelScorer(self.peers, self.labellers, self.settings.default_domain).score(request)
        return labelling_pb2.ScoreLabelResponse(label=convert.feature_label(record))

    @override
    async def JudgeSteering(
        self, request: labelling_pb2.JudgeSteeringRequest, context: aio.ServicerContext
    ) -> labelling_pb2.JudgeSteeringResponse:
        return await self.steering.judge(request)

    @override
    async def RewriteQuery(
        self, request: labelling_pb2.RewriteQueryRequest, context: aio.ServicerContext
    ) -> labelling_pb2.RewriteQueryResponse:
        return await self.steering.rewrite(request)
