"""LabelFeatures through an OpenAI-compatible endpoint: the real `openai` client against the fake
server on loopback, answers cached in the real Redis, retries, the budget stop and failures."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fake_openai import FakeOpenAI, labelling_responder, serve_fake_openai
from labelling_testing import LabellingStack, labels_of, serve_labelling
from search_testing import CountingBackend, failure_of

from featurelens.embedding.backends import EmbeddingBackend
from featurelens.v1 import labelling_pb2

FEATURES = [0, 1, 2, 3, 4, 5]
MODEL = "gpt-4o-mini"


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with serve_fake_openai(responder=labelling_responder) as fake:
        yield fake


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_llm_job_labels_through_the_endpoint_and_counts_calls_tokens_and_dollars(
    cached_stack: LabellingStack, sae_id: str, llm: FakeOpenAI
) -> None:
    messages = await cached_stack.label(
        sae_id=sae_id, features=FEATURES, llm_base_url=llm.base_url, domain="astrophysics abstracts"
    )

    labels = labels_of(messages)
    last = messages[-1]
    assert sorted(label.feature for label in labels) == FEATURES
    assert all(label.interpreter_model == MODEL and label.predictor_model == MODEL for label in labels)
    assert all(
        label.tokens > 0 and label.cost_usd > 0 and label.prompt_version.startswith("interp-")
        for label in labels
    )
    assert last.llm_calls == llm.answered_chat_calls > 0
    assert last.cache_hits == 0
    assert last.cost_usd == pytest.approx(sum(label.cost_usd for label in labels))
    assert last.tokens_used > 0
    sent = [request.body for request in llm.requests if request.body and "messages" in request.body]
    assert any("astrophysics abstracts" in str(body["messages"]) for body in sent)


async def test_a_rerun_is_answered_by_the_cache_and_makes_no_calls(
    cached_stack: LabellingStack, sae_id: str, llm: FakeOpenAI
) -> None:
    first = await cached_stack.label(sae_id=sae_id, features=FEATURES, llm_base_url=llm.base_url, seed=5)
    calls = llm.chat_calls

    rerun = await cached_stack.label(
        sae_id=sae_id, features=FEATURES, llm_base_url=llm.base_url, seed=5, overwrite=True
    )

    assert llm.chat_calls == calls
    assert rerun[-1].llm_calls == 0
    assert rerun[-1].cost_usd == 0.0
    assert rerun[-1].cache_hits == first[-1].llm_calls
    assert [label.label for label in labels_of(rerun)]
    assert {(label.feature, label.label) for label in labels_of(rerun)} == {
        (label.feature, label.label) for label in labels_of(first)
    }


async def test_a_rate_limit_is_waited_out_and_the_job_completes(
    cached_stack: LabellingStack, sae_id: str, llm: FakeOpenAI
) -> None:
    llm.fail_next(429, times=2, headers={"retry-after-ms": "20"})
    llm.fail_next(503)

    messages = await cached_stack.label(sae_id=sae_id, features=FEATURES[:2], llm_base_url=llm.base_url)

    assert len(labels_of(messages)) == 2
    assert messages[-1].failed == 0
    assert llm.chat_calls == llm.answered_chat_calls + 3


async def test_the_budget_stops_the_job_cleanly_and_a_rerun_resumes(
    cached_stack: LabellingStack, sae_id: str, llm: FakeOpenAI
) -> None:
    features = list(range(12))
    stopped = await cached_stack.label(
        sae_id=sae_id, features=features, llm_base_url=llm.base_url, budget_usd=0.004
    )

    kept = labels_of(stopped)
    assert stopped[-1].budget_exhausted
    assert "budget" in stopped[-1].progress.message
    assert stopped[-1].cost_usd <= 0.004
    assert len(kept) < len(features)
    resumed = await cached_stack.label(
        sae_id=sae_id, features=features, llm_base_url=llm.base_url, budget_usd=1.0
    )
    assert resumed[-1].skipped == len(kept)
    assert sorted(label.feature for label in kept + labels_of(resumed)) == features


async def test_redis_down_labelling_goes_on_uncached_with_one_warning(
    wordllama: EmbeddingBackend,
    models_dir: Path,
    edge_copy: Path,
    tmp_path: Path,
    sae_id: str,
    llm: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with serve_labelling(
        CountingBackend(wordllama),
        models_dir,
        edge_copy,
        tmp_path / "labels",
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
    ) as stack:
        messages = await stack.label(sae_id=sae_id, features=FEATURES[:3], llm_base_url=llm.base_url)

    assert len(labels_of(messages)) == 3
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "redis" in r.getMessage().lower()
    ]
    assert len(warnings) == 1


async def test_an_answer_without_a_label_fails_that_feature_and_the_job_goes_on(
    cached_stack: LabellingStack, sae_id: str
) -> None:
    with serve_fake_openai(responder=lambda body: "I'm sorry, I can't help with that.") as refusing:
        messages = await cached_stack.label(
            sae_id=sae_id, features=FEATURES[:3], llm_base_url=refusing.base_url
        )

    assert labels_of(messages) == []
    assert messages[-1].failed == 3
    assert all("label" in m.failure_reason.lower() for m in messages if m.failure_reason)


async def test_predictions_that_do_not_parse_are_counted_never_read_as_zero(
    cached_stack: LabellingStack, sae_id: str
) -> None:
    def garbled_predictions(body: dict[str, Any]) -> str:
        answer = labelling_responder(body)
        return answer if '"label"' in answer else "Document 1: quite likely. Others: unsure."

    with serve_fake_openai(responder=garbled_predictions) as garbling:
        messages = await cached_stack.label(
            sae_id=sae_id, features=FEATURES[:2], llm_base_url=garbling.base_url
        )

    labels = labels_of(messages)
    assert len(labels) == 2
    assert all(label.parse_failures == label.scored_documents + label.parse_failures for label in labels)
    assert all(label.parse_failures > 0 and not label.HasField("pearson_r") for label in labels)


async def test_a_refused_api_key_ends_the_job_with_failed_precondition(
    wordllama: EmbeddingBackend, models_dir: Path, edge_copy: Path, tmp_path: Path, sae_id: str
) -> None:
    with serve_fake_openai(responder=labelling_responder, api_key="right-key") as guarded:
        async with serve_labelling(
            CountingBackend(wordllama), models_dir, edge_copy, tmp_path / "labels", llm_api_key="wrong-key"
        ) as stack:
            error = await failure_of(
                stack.label(sae_id=sae_id, features=FEATURES, llm_base_url=guarded.base_url)
            )

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "wrong-key" not in (error.details() or "")


async def test_an_endpoint_the_server_does_not_allow_is_refused(
    wordllama: EmbeddingBackend,
    models_dir: Path,
    edge_copy: Path,
    tmp_path: Path,
    sae_id: str,
    llm: FakeOpenAI,
) -> None:
    async with serve_labelling(
        CountingBackend(wordllama), models_dir, edge_copy, tmp_path / "labels", llm_allow_loopback=False
    ) as stack:
        error = await failure_of(stack.label(sae_id=sae_id, features=FEATURES, llm_base_url=llm.base_url))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not allowed" in (error.details() or "")
    assert llm.chat_calls == 0


async def test_get_label_after_an_llm_job_keeps_models_and_cost(
    cached_stack: LabellingStack, sae_id: str, llm: FakeOpenAI
) -> None:
    await cached_stack.label(sae_id=sae_id, features=[7], llm_base_url=llm.base_url)

    got = await cached_stack.stub.GetLabel(labelling_pb2.GetLabelRequest(sae_id=sae_id, feature=7))

    assert got.label.interpreter_model == MODEL
    assert got.label.cost_usd > 0
    assert len(got.label.example_ids) > 10
