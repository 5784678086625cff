"""JudgeSteering and RewriteQuery: one LLM call each, for the steering evaluation.

Each request is checked first, then its LLM is chosen by the same rules as a labelling job's
interpreter (``LabellerFactory.plan``: the server's endpoint or an allowed one the call names,
the model, the budget), so the answer cache, prices, retries and endpoint rules are labelling's.
There is no offline stand-in: without an endpoint the call is FAILED_PRECONDITION (the objective
judge and the "<query> and <label>" rewrite need no LLM and run on the caller's side). An answer
that names no candidate (or holds no query) is not an error: the response says so in ``note``
and still reports what the call cost.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from featurelens.interp.llm import ChatClient
from featurelens.interp.parsing import LabelParseError
from featurelens.interp.steering_llm import LlmQueryRewriter, LlmSteeringJudge
from featurelens.interp.types import Usage
from featurelens.kit import FailedPreconditionError, fields
from featurelens.services.labelling import validation
from featurelens.services.labelling.labellers import EMBEDDING, LabellerFactory
from featurelens.v1 import labelling_pb2

logger = logging.getLogger(__name__)


class SteeringCalls:
    """Runs JudgeSteering and RewriteQuery requests."""

    def __init__(self, labellers: LabellerFactory, default_domain: str) -> None:
        self.labellers = labellers
        self.default_domain = default_domain

    async def judge(self, request: labelling_pb2.JudgeSteeringRequest) -> labelling_pb2.JudgeSteeringResponse:
        query = validation.query_text(request.query)
        candidates = validation.candidates(request.candidates)
        before = validation.result_texts(request.results_before, "results_before")
        after = validation.result_texts(request.results_after, "results_after")
        direction = validation.direction(request.direction)
        domain = fields.domain(request.llm.domain, self.default_domain)
        async with self._client(request.llm, "JudgeSteering") as (client, model):
            judge = LlmSteeringJudge(client, model)
            try:
                judgement = await judge.judge(query, candidates, before, after, direction, domain)
            except LabelParseError as error:
                return labelling_pb2.JudgeSteeringResponse(
                    note=error.reason, spend=_spend(error.usage, model)
                )
            return labelling_pb2.JudgeSteeringResponse(
                choice=judgement.choice, spend=_spend(judgement.usage, judgement.model)
            )

    async def rewrite(self, request: labelling_pb2.RewriteQueryRequest) -> labelling_pb2.RewriteQueryResponse:
        query = validation.query_text(request.query)
        topic = validation.topic(request.topic, "topic")
        direction = validation.direction(request.direction)
        domain = fields.domain(request.llm.domain, self.default_domain)
        async with self._client(request.llm, "RewriteQuery") as (client, model):
            rewriter = LlmQueryRewriter(client, model)
            try:
                rewritten = await rewriter.rewrite(query, topic, direction, domain)
            except LabelParseError as error:
                return labelling_pb2.RewriteQueryResponse(note=error.reason, spend=_spend(error.usage, model))
            return labelling_pb2.RewriteQueryResponse(
                query=rewritten.query, spend=_spend(rewritten.usage, rewritten.model)
            )

    @asynccontextmanager
    async def _client(self, llm: labelling_pb2.LlmCall, rpc: str) -> AsyncIterator[tuple[ChatClient, str]]:
        """The call's chat client and model, closed after the call."""
        plan = self.labellers.plan(llm.llm_base_url, llm.model, EMBEDDING, llm.budget_usd)
        client = plan.chat_client()
        if client is None:
            raise FailedPreconditionError(
                f"{rpc} needs an LLM endpoint and this call has none: the server sets no llm_base_url "
                "(or the call asked for the offline labeller); name an allowed llm_base_url"
            )
        try:
            yield client, plan.interpreter_model
        finally:
            await client.aclose()


def _spend(usage: Usage, model: str) -> labelling_pb2.LlmSpend:
    return labelling_pb2.LlmSpend(
        model=model, cached=usage.cache_hits > 0, cost_usd=usage.cost_usd, tokens=usage.tokens
    )
