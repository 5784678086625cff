"""JudgeSteering and RewriteQuery over real gRPC, through the fake OpenAI-compatible server, with the
answer cache in the real Redis; and the SDK's LLM judge of the steering evaluation on top of them."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fake_openai import FakeOpenAI, serve_fake_openai
from labelling_testing import LabellingStack
from search_testing import failure_of

from featurelens.client import FeaturelensClient
from featurelens.evaluation.llm_judge import LlmJudge, LlmJudgeError, LlmOptions
from featurelens.v1 import labelling_pb2

MODEL = "gpt-4o-mini"
TARGET = "dark matter halos"
OTHERS = ["exoplanet atmospheres", "gravitational waves", "solar flares", "quasar outflows"]
BEFORE = ["Rotation curves of dwarf galaxies", "Stellar populations of the Milky Way"]
AFTER = ["Cusps and cores in dark matter halos", "Rotation curves of dwarf galaxies"]
UP = labelling_pb2.STEERING_DIRECTION_UP
_CANDIDATE = re.compile(r"^(\d+)\. (.*)$", re.MULTILINE)


def finds_the_target(body: dict[str, Any]) -> str:
    """A judge that always finds TARGET among the candidates, wherever it is shown; it rewrites a
    query by appending the topic."""
    user = body["messages"][-1]["content"]
    if "Candidate topics:" not in user:
        query = re.search(r"^Query: (.*)$", user, re.MULTILINE)
        topic = re.search(r"^Topic: (.*)$", user, re.MULTILINE)
        return json.dumps(
            {"query": f"{query.group(1) if query else ''} on {topic.group(1) if topic else ''}"}
        )
    shown = dict((topic, number) for number, topic in _CANDIDATE.findall(user.split("Candidate topics:")[1]))
    return json.dumps({"choice": int(shown[TARGET])})


def always_the_first(body: dict[str, Any]) -> str:
    """A judge that ignores what it is shown and names candidate 1."""
    return '{"choice": 1}'


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with serve_fake_openai(model=MODEL, responder=finds_the_target) as fake:
        yield fake


def judge_request(fake: FakeOpenAI | None, **fields: Any) -> labelling_pb2.JudgeSteeringRequest:
    request: dict[str, Any] = {
        "query": "halo density profiles",
        "candidates": [OTHERS[0], TARGET, *OTHERS[1:]],
        "results_before": BEFORE,
        "results_after": AFTER,
        "direction": UP,
        "llm": labelling_pb2.LlmCall(
            llm_base_url=fake.base_url if fake else "", domain="astrophysics abstracts"
        ),
    }
    return labelling_pb2.JudgeSteeringRequest(**(request | fields))


async def test_the_judge_names_the_steered_topic_and_a_repeat_is_served_from_redis(
    cached_stack: LabellingStack, llm: FakeOpenAI
) -> None:
    request = judge_request(llm, query=f"halo density profiles {id(llm)}")

    first = await cached_stack.stub.JudgeSteering(request)
    again = await cached_stack.stub.JudgeSteering(request)

    assert first.HasField("choice")
    assert first.choice == 1
    assert first.note == ""
    assert first.spend.model == MODEL
    assert not first.spend.cached
    assert first.spend.cost_usd > 0
    assert first.spend.tokens > 0
    assert again.choice == 1
    assert again.spend.cached
    assert again.spend.cost_usd == 0.0
    assert llm.answered_chat_calls == 1
    sent = llm.requests[-1].body
    assert sent is not None
    assert "astrophysics abstracts" in sent["messages"][-1]["content"]


async def test_an_answer_naming_no_candidate_is_a_note_with_its_cost_not_an_error(
    stack: LabellingStack,
) -> None:
    with serve_fake_openai(model=MODEL, responder=lambda body: "They all look the same to me.") as fake:
        response = await stack.stub.JudgeSteering(judge_request(fake))
    assert not response.HasField("choice")
    assert "names no candidate" in response.note
    assert response.spend.cost_usd > 0


async def test_the_llm_rewrites_a_query_towards_a_topic(stack: LabellingStack, llm: FakeOpenAI) -> None:
    response = await stack.stub.RewriteQuery(
        labelling_pb2.RewriteQueryRequest(
            query="halo density profiles",
            topic="dwarf galaxies",
            direction=UP,
            llm=labelling_pb2.LlmCall(llm_base_url=llm.base_url),
        )
    )
    assert response.query == "halo density profiles on dwarf galaxies"
    assert response.spend.model == MODEL


async def test_a_call_that_could_pass_its_budget_is_refused_before_anything_is_sent(
    stack: LabellingStack, llm: FakeOpenAI
) -> None:
    request = judge_request(llm, llm=labelling_pb2.LlmCall(llm_base_url=llm.base_url, budget_usd=1e-9))
    error = await failure_of(stack.stub.JudgeSteering(request))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "budget" in (error.details() or "")
    assert llm.chat_calls == 0


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"query": " "}, grpc.StatusCode.INVALID_ARGUMENT, "query is empty"),
        ({"query": "x" * 1001}, grpc.StatusCode.INVALID_ARGUMENT, "limit is 1,000"),
        ({"candidates": [TARGET]}, grpc.StatusCode.INVALID_ARGUMENT, "give 2 to 10"),
        ({"candidates": [TARGET] + OTHERS * 3}, grpc.StatusCode.INVALID_ARGUMENT, "give 2 to 10"),
        ({"candidates": [TARGET, TARGET.upper()]}, grpc.StatusCode.INVALID_ARGUMENT, "repeat a topic"),
        ({"candidates": [TARGET, ""]}, grpc.StatusCode.INVALID_ARGUMENT, "candidates[1]"),
        ({"candidates": [TARGET, "x" * 201]}, grpc.StatusCode.INVALID_ARGUMENT, "not a short topic"),
        ({"results_before": []}, grpc.StatusCode.INVALID_ARGUMENT, "results_before has 0"),
        ({"results_after": ["a"] * 51}, grpc.StatusCode.INVALID_ARGUMENT, "give 1 to 50"),
        ({"results_after": ["x" * 10_001]}, grpc.StatusCode.INVALID_ARGUMENT, "limit is 10,000"),
        ({"results_after": ["  "]}, grpc.StatusCode.INVALID_ARGUMENT, "results_after[0] is empty"),
        ({"direction": 0}, grpc.StatusCode.INVALID_ARGUMENT, "direction is unset"),
        ({"llm": labelling_pb2.LlmCall(budget_usd=-1.0)}, grpc.StatusCode.INVALID_ARGUMENT, "budget"),
        ({"llm": labelling_pb2.LlmCall(domain="x" * 500)}, grpc.StatusCode.INVALID_ARGUMENT, "domain"),
        ({"llm": labelling_pb2.LlmCall()}, grpc.StatusCode.FAILED_PRECONDITION, "needs an LLM endpoint"),
        (
            {"llm": labelling_pb2.LlmCall(llm_base_url="https://api.example.org/v1")},
            grpc.StatusCode.FAILED_PRECONDITION,
            "not allowed",
        ),
    ],
)
async def test_a_bad_judging_request_is_refused_with_a_clear_sentence(
    stack: LabellingStack, llm: FakeOpenAI, fields: dict[str, Any], code: grpc.StatusCode, words: str
) -> None:
    error = await failure_of(stack.stub.JudgeSteering(judge_request(llm, **fields)))
    assert error.code() == code
    assert words in (error.details() or "")
    assert llm.chat_calls == 0


@pytest.mark.parametrize(
    ("fields", "words"),
    [({"topic": ""}, "topic"), ({"query": ""}, "query is empty"), ({"direction": 0}, "direction is unset")],
)
async def test_a_bad_rewriting_request_is_refused(
    stack: LabellingStack, llm: FakeOpenAI, fields: dict[str, Any], words: str
) -> None:
    request = {
        "query": "q",
        "topic": "halos",
        "direction": UP,
        "llm": labelling_pb2.LlmCall(llm_base_url=llm.base_url),
    }
    error = await failure_of(stack.stub.RewriteQuery(labelling_pb2.RewriteQueryRequest(**(request | fields))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (error.details() or "")


# -- the evaluation's LLM judge, through the SDK ------------------------------------------------


def judge_many(stack: LabellingStack, options: LlmOptions, trials: int) -> tuple[list[bool | None], LlmJudge]:
    """``trials`` judgements of the same steered search (TARGET first, as the evaluation passes it)."""
    with FeaturelensClient(stack.search.server.address) as client:
        judge = LlmJudge(client, options, seed=0)
        verdicts = [
            judge.judge(f"query {trial}", [TARGET, *OTHERS], BEFORE, AFTER, "up") for trial in range(trials)
        ]
    return verdicts, judge


async def test_the_evaluations_judge_scores_1_when_the_llm_always_finds_the_target(
    stack: LabellingStack, llm: FakeOpenAI
) -> None:
    verdicts, judge = await asyncio.to_thread(judge_many, stack, LlmOptions(base_url=llm.base_url), 40)
    assert verdicts == [True] * 40
    # The target was shown in every position: its place told the LLM nothing.
    places = set()
    for request in llm.requests:
        if request.body and "messages" in request.body:
            topics = request.body["messages"][-1]["content"].split("Candidate topics:")[1]
            places.update(number for number, topic in _CANDIDATE.findall(topics) if topic == TARGET)
    assert places == {"1", "2", "3", "4", "5"}
    assert judge.summary()["calls"] == 40
    assert judge.summary()["model"] == MODEL


async def test_the_evaluations_judge_scores_about_chance_when_the_llm_ignores_the_results(
    stack: LabellingStack,
) -> None:
    with serve_fake_openai(model=MODEL, responder=always_the_first) as fake:
        verdicts, _ = await asyncio.to_thread(judge_many, stack, LlmOptions(base_url=fake.base_url), 200)
    rate = sum(v is True for v in verdicts) / len(verdicts)
    assert all(v is not None for v in verdicts)
    assert 0.12 <= rate <= 0.28, rate


async def test_the_evaluations_judge_stops_at_its_budget_and_the_run_goes_on(
    stack: LabellingStack, llm: FakeOpenAI
) -> None:
    one_call = (await stack.stub.JudgeSteering(judge_request(llm, query="price probe"))).spend.cost_usd
    options = LlmOptions(base_url=llm.base_url, budget_usd=2.5 * one_call)
    verdicts, judge = await asyncio.to_thread(judge_many, stack, options, 10)
    assert 1 <= sum(v is not None for v in verdicts) <= 3
    assert verdicts[-1] is None
    assert "budget" in judge.stopped
    assert judge.spent_usd <= options.budget_usd


async def test_the_evaluations_judge_refuses_to_start_without_an_llm(stack: LabellingStack) -> None:
    with pytest.raises(LlmJudgeError, match="needs an LLM endpoint"):
        await asyncio.to_thread(judge_many, stack, LlmOptions(), 1)
