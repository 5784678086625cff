"""The LLM interpreter and predictor end to end: prompts, the real openai client, the fake server, parsing."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI, labelling_responder, serve_fake_openai

from featurelens.interp.budget import Budget, BudgetExhausted, estimate_call_usd
from featurelens.interp.llm import ChatClient, InMemoryChatCache, LlmConfig
from featurelens.interp.llm_labeller import LlmInterpreter, LlmPredictor
from featurelens.interp.parsing import LabelParseError
from featurelens.interp.pricing import ModelPrice, PriceTable
from featurelens.interp.prompts import PROMPT_VERSION, predictor_messages
from featurelens.interp.types import ExampleDocument, FeatureExamples

MODEL = "gpt-4o-mini"
DOMAIN = "astrophysics paper abstracts"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "llm"

FIRING = [
    "Exoplanet transmission spectroscopy reveals water vapour in a hot Jupiter atmosphere.",
    "We detect sodium absorption in the exoplanet atmosphere with transmission spectroscopy.",
    "Clouds and hazes flatten the transmission spectroscopy of a warm exoplanet atmosphere.",
    "Carbon dioxide in an exoplanet atmosphere measured with JWST transmission spectroscopy.",
]
NEGATIVE = [
    "Asteroseismology of red giant stars observed by Kepler.",
    "Radio pulsar timing noise and gravitational wave searches.",
    "Galaxy cluster masses from weak lensing shear profiles.",
]


def doc(doc_id: str, text: str, activation: float = 0.0) -> ExampleDocument:
    return ExampleDocument(doc_id, text, activation)


def examples() -> FeatureExamples:
    return FeatureExamples(
        feature=2370,
        train_firing=tuple(doc(f"f{i}", text, 9.0 - i) for i, text in enumerate(FIRING)),
        train_negatives=tuple(doc(f"n{i}", text) for i, text in enumerate(NEGATIVE)),
        test_firing=(
            doc("t1", "SECRET-TEST transmission spectroscopy of a sub-Neptune exoplanet atmosphere.", 5.0),
        ),
        test_random=(doc("t2", "SECRET-TEST stellar flares on M dwarfs."),),
        test_hard=(),
    )


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with serve_fake_openai(model=MODEL, responder=labelling_responder) as server:
        yield server


def llm_config(fake: FakeOpenAI, **overrides: Any) -> LlmConfig:
    values: dict[str, Any] = {"base_url": fake.base_url, "api_key": "sk-test", "backoff_base_s": 0.001}
    values.update(overrides)
    return LlmConfig(**values)


def replay(name: str) -> Any:
    """A responder answering every request with a recorded completion's text."""
    content = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["choices"][0]["message"][
        "content"
    ]
    return lambda body: content


async def test_the_interpreter_labels_a_feature_from_what_its_firing_documents_share(
    fake: FakeOpenAI,
) -> None:
    async with ChatClient(llm_config(fake)) as client:
        interpreter = LlmInterpreter(client, MODEL)
        interpretation = await interpreter.interpret(examples(), DOMAIN)

    assert set(interpretation.label.split()) <= {"exoplanet", "atmosphere", "transmission", "spectroscopy"}
    assert len(interpretation.label.split()) == 3
    assert interpretation.usage.calls == 1
    assert interpretation.usage.cost_usd > 0
    assert interpreter.prompt_version == PROMPT_VERSION
    assert interpreter.model == MODEL


async def test_the_interpreter_never_sends_a_test_document(fake: FakeOpenAI) -> None:
    async with ChatClient(llm_config(fake)) as client:
        await LlmInterpreter(client, MODEL).interpret(examples(), DOMAIN)

    assert "SECRET-TEST" not in json.dumps(fake.requests[-1].body)
    assert "f0" not in json.dumps(fake.requests[-1].body)  # ids are not shown either, only texts


@pytest.mark.parametrize(
    "fixture", ["interpreter_refusal", "interpreter_truncated", "interpreter_empty_label"]
)
async def test_an_answer_without_a_label_fails_the_feature_with_its_cost_and_never_invents_one(
    fake: FakeOpenAI, fixture: str
) -> None:
    fake.responder = replay(fixture)

    async with ChatClient(llm_config(fake)) as client:
        with pytest.raises(LabelParseError, match="feature 2370") as raised:
            await LlmInterpreter(client, MODEL).interpret(examples(), DOMAIN)

    assert raised.value.usage.calls == 1
    assert raised.value.usage.cost_usd > 0
    assert raised.value.excerpt


async def test_the_predictor_scores_every_document_in_order_one_call_per_batch(fake: FakeOpenAI) -> None:
    documents = [
        doc(f"d{i}", FIRING[i % 4] if i % 3 == 0 else NEGATIVE[i % 3], 1.0 if i % 3 == 0 else 0.0)
        for i in range(45)
    ]

    async with ChatClient(llm_config(fake)) as client:
        predictor = LlmPredictor(client, MODEL, batch_size=20)
        predictions = await predictor.predict("exoplanet atmosphere spectroscopy", documents, DOMAIN)

    assert fake.answered_chat_calls == 3
    assert predictions.usage.calls == 3
    assert predictions.parse_failures == 0
    assert len(predictions.values) == 45
    for document, value in zip(documents, predictions.values, strict=True):
        assert value == (1.0 if document.fires else 0.0)
    shown = [
        re.findall(r"^\d+\. ", request.body["messages"][1]["content"], re.MULTILINE)
        for request in fake.requests
    ]
    assert sorted(len(numbers) for numbers in shown) == [5, 20, 20]


async def test_unreadable_scores_are_counted_as_parse_failures_never_as_zero(fake: FakeOpenAI) -> None:
    fake.responder = replay("predictor_truncated")
    documents = [doc(f"d{i}", f"Document number {i} about something.") for i in range(10)]

    async with ChatClient(llm_config(fake)) as client:
        predictions = await LlmPredictor(client, MODEL).predict("anything", documents, DOMAIN)

    assert predictions.parse_failures == 4
    assert predictions.values[6:] == (None, None, None, None)
    assert predictions.usage.calls == 1


async def test_a_rerun_of_the_same_feature_makes_zero_calls(fake: FakeOpenAI) -> None:
    cache = InMemoryChatCache()
    shown = examples()

    async def label_and_score() -> tuple[str, tuple[float | None, ...], int, int]:
        async with ChatClient(llm_config(fake), cache=cache) as client:
            label = (await LlmInterpreter(client, MODEL).interpret(shown, DOMAIN)).label
            predictions = await LlmPredictor(client, MODEL, batch_size=1).predict(
                label, shown.test_documents, DOMAIN
            )
        return label, predictions.values, predictions.usage.calls, predictions.usage.cache_hits

    first = await label_and_score()
    calls_after_first = fake.chat_calls

    again = await label_and_score()

    assert calls_after_first == 3
    assert fake.chat_calls == calls_after_first
    assert again[:2] == first[:2]
    assert again[2:] == (0, 2)


async def test_a_budget_stop_in_the_middle_of_a_prediction_propagates_and_cancels_the_other_batches(
    fake: FakeOpenAI,
) -> None:
    prices = PriceTable({MODEL: ModelPrice(100.0, 100.0)})
    documents = [doc(f"d{i}", f"Document {i}: exoplanet atmosphere spectroscopy.") for i in range(30)]
    config = llm_config(fake)
    one_batch = estimate_call_usd(
        prices, MODEL, predictor_messages("exoplanet", documents[:5], DOMAIN), config.predictor_max_tokens
    )
    # Room for two of the six batches in flight: the third is refused before it is sent.
    budget = Budget(2.5 * one_batch)

    async with ChatClient(config, prices=prices, budget=budget) as client:
        with pytest.raises(BudgetExhausted):
            await LlmPredictor(client, MODEL, batch_size=5).predict("exoplanet", documents, DOMAIN)

    assert fake.chat_calls <= 2
    assert budget.exhausted
    assert budget.reserved == 0.0
    assert budget.spent == pytest.approx(client.stats.cost_usd)


def test_a_batch_too_large_for_the_predictors_answer_tokens_is_refused() -> None:
    async def build() -> None:
        async with ChatClient(LlmConfig("http://127.0.0.1:9/v1", predictor_max_tokens=100)) as client:
            LlmPredictor(client, MODEL, batch_size=20)

    with pytest.raises(ValueError, match="predictor_max_tokens"):
        asyncio.run(build())
