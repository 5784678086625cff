"""The LLM interpreter and predictor: the ``Interpreter`` and ``Predictor`` protocols over a ``ChatClient``.

The interpreter sends one call per feature and raises ``LabelParseError`` (with the call's usage)
when the answer holds no label: the job counts the feature as failed, no label is made up. The
predictor scores documents in batches, one call each, all at once (the client's concurrency
limit applies); an entry it cannot read is None, counted as a parse failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from featurelens.interp.llm import ChatClient
from featurelens.interp.parsing import LabelParseError, parse_label, parse_predictions
from featurelens.interp.prompts import PROMPT_VERSION, interpreter_messages, predictor_messages
from featurelens.interp.types import ExampleDocument, FeatureExamples, Interpretation, Predictions, Usage

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Answer tokens one scored document needs ({"id": 12, "score": 7}, ), and the JSON around them.
TOKENS_PER_DOCUMENT = 12
_TOKENS_OVERHEAD = 32


class LlmInterpreter:
    """Writes a feature's label with one chat completion (``PROMPT_VERSION`` prompts)."""

    def __init__(self, client: ChatClient, model: str, *, max_doc_chars: int = 600) -> None:
        if not model.strip():
            raise ValueError("model is empty; name the interpreter model")
        self.client = client
        self._model = model
        self.max_doc_chars = max_doc_chars

    @property
    def model(self) -> str:
        return self._model

    @property
    def prompt_version(self) -> str:
        return PROMPT_VERSION

    async def interpret(self, examples: FeatureExamples, domain: str) -> Interpretation:
        """The label of ``examples.feature``; ``LabelParseError`` when the answer holds none."""
        messages = interpreter_messages(examples, domain, self.max_doc_chars)
        completion = await self.client.complete(
            self._model, messages, PROMPT_VERSION, self.client.config.interpreter_max_tokens
        )
        try:
            label = parse_label(completion.text)
        except LabelParseError as error:
            logger.info("feature %d: %s", examples.feature, error)
            raise LabelParseError(
                f"feature {examples.feature}: the interpreter ({self._model}) gave no label"
                + (" (its answer was cut off at max_tokens)" if completion.finish_reason == "length" else ""),
                error.excerpt,
                completion.usage,
            ) from None
        return Interpretation(label, completion.usage)


class LlmPredictor:
    """Predicts activations from a label, ``batch_size`` documents per chat completion."""

    def __init__(
        self, client: ChatClient, model: str, batch_size: int = 20, *, max_doc_chars: int = 600
    ) -> None:
        if not model.strip():
            raise ValueError("model is empty; name the predictor model")
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}; a batch holds at least one document")
        needed = _TOKENS_OVERHEAD + TOKENS_PER_DOCUMENT * batch_size
        if client.config.predictor_max_tokens < needed:
            raise ValueError(
                f"batch_size is {batch_size} but predictor_max_tokens is "
                f"{client.config.predictor_max_tokens}; such a batch needs about {needed} tokens of answer"
            )
        self.client = client
        self._model = model
        self.batch_size = batch_size
        self.max_doc_chars = max_doc_chars

    @property
    def model(self) -> str:
        return self._model

    @property
    def prompt_version(self) -> str:
        return PROMPT_VERSION

    async def predict(self, label: str, documents: Sequence[ExampleDocument], domain: str) -> Predictions:
        """One value in [0, 1] (or None, unparsed) per document, in order, and the summed usage."""
        if not documents:
            return Predictions(())
        batches = [
            documents[start : start + self.batch_size] for start in range(0, len(documents), self.batch_size)
        ]
        # Build every prompt first, so that bad input fails before any call is made.
        prompts = [predictor_messages(label, batch, domain, self.max_doc_chars) for batch in batches]
        answers = await _all_or_none(
            [
                self._predict_batch(messages, len(batch))
                for messages, batch in zip(prompts, batches, strict=True)
            ]
        )
        values: list[float | None] = []
        usage = Usage()
        for batch_values, batch_usage in answers:
            values.extend(batch_values)
            usage = usage + batch_usage
        return Predictions(tuple(values), usage)

    async def _predict_batch(
        self, messages: list[dict[str, str]], count: int
    ) -> tuple[tuple[float | None, ...], Usage]:
        completion = await self.client.complete(
            self._model, messages, PROMPT_VERSION, self.client.config.predictor_max_tokens
        )
        values = parse_predictions(completion.text, count)
        failures = sum(value is None for value in values)
        if failures:
            logger.info(
                "predictor (%s): %d of %d scores unreadable%s",
                self._model,
                failures,
                count,
                " (answer cut off at max_tokens)" if completion.finish_reason == "length" else "",
            )
        return values, completion.usage


async def _all_or_none(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Every result, in order; on the first failure the other calls are cancelled, then it is raised.

    (``asyncio.gather`` would leave the others running and spending; a ``TaskGroup`` would wrap
    the error in an ExceptionGroup, hiding ``BudgetExhausted`` from a plain ``except``.)
    """
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
