"""The paper's LLM judge and the LLM rewrite, through the labelling service's LLM path.

The steering evaluation's objective judge needs no LLM; with ``LlmOptions`` it also asks the
server's LLM (``JudgeSteering``) which candidate label each steered result set moved towards (away
from), like the paper's GPT-4o judge, and adds a rewriting baseline written by the LLM
(``RewriteQuery``). Every call goes through the labelling service, so its answer cache, prices
and endpoint rules apply; this side keeps the run's total under ``budget_usd`` by giving each
call what is left, and stops asking (the run goes on with the objective judge) once it is spent.

The candidates are shown in a seeded random order, so the target's place tells the judge nothing;
a judge that cannot read the results picks the target one time in five.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featurelens.client import (
    FailedPreconditionError,
    FeaturelensClient,
    FeaturelensError,
    LlmSpend,
    ResourceExhaustedError,
    SteeringDirection,
)

logger = logging.getLogger(__name__)


class LlmJudgeError(ValueError):
    """The LLM judge cannot run at all (no LLM endpoint on the server, a model it refuses)."""


@dataclass(frozen=True)
class LlmOptions:
    """Which LLM the judge and the rewriting baseline use; checked on construction."""

    model: str | None = None
    """None: the labelling server's default interpreter model."""
    base_url: str | None = None
    """None: the labelling server's own endpoint (it must allow any other)."""
    budget_usd: float = 2.0
    """Most US dollars the whole run may spend on LLM calls (cache hits cost nothing)."""
    domain: str | None = None
    """What the corpus is, told to the LLM; None: the server's default."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.budget_usd) and self.budget_usd > 0):
            raise ValueError(f"budget_usd must be a positive number of dollars, got {self.budget_usd!r}")


class LlmJudge:
    """Asks the server's LLM to judge steered results and to rewrite queries, within a budget."""

    def __init__(self, client: FeaturelensClient, options: LlmOptions, seed: int) -> None:
        self.client = client
        self.options = options
        self.order = np.random.default_rng([seed, 2])
        self.calls = 0
        self.cache_hits = 0
        self.spent_usd = 0.0
        self.tokens = 0
        self.unanswered = 0
        self.model = ""
        self.stopped = ""

    @property
    def active(self) -> bool:
        return not self.stopped

    def judge(
        self,
        query: str,
        labels: Sequence[str],
        before: Sequence[str],
        after: Sequence[str],
        direction: SteeringDirection,
    ) -> bool | None:
        """Whether the judge picked the target (``labels[0]``); None when it was not asked (the
        budget is spent, or a side has no results) or its answer named no candidate."""
        if not self.active or not before or not after:
            return None
        order = [int(i) for i in self.order.permutation(len(labels))]
        shown = [labels[i] for i in order]
        budget = self._left()
        if budget is None:
            return None
        try:
            judgement = self.client.labelling.judge_steering(
                query, shown, before, after, direction, budget_usd=budget, **self._llm()
            )
        except FeaturelensError as error:
            self._failed(error)
            return None
        self._count(judgement.spend)
        if judgement.choice is None:
            self.unanswered += 1
            logger.debug("the LLM judge named no candidate: %s", judgement.note)
            return None
        return order[judgement.choice] == 0

    def rewrite(self, query: str, topic: str, direction: SteeringDirection) -> str | None:
        """The LLM's rewrite of ``query``; None when it was not asked or wrote none."""
        budget = self._left() if self.active else None
        if budget is None:
            return None
        try:
            rewritten = self.client.labelling.rewrite_query(
                query, topic, direction, budget_usd=budget, **self._llm()
            )
        except FeaturelensError as error:
            self._failed(error)
            return None
        self._count(rewritten.spend)
        if not rewritten.query:
            self.unanswered += 1
            return None
        return rewritten.query

    def summary(self) -> dict[str, Any]:
        """What the LLM did, JSON-ready."""
        return {
            "model": self.model or self.options.model or "the server's default",
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "cost_usd": round(self.spent_usd, 6),
            "tokens": self.tokens,
            "budget_usd": self.options.budget_usd,
            "unanswered": self.unanswered,
            "stopped": self.stopped,
        }

    def _llm(self) -> dict[str, Any]:
        return {
            "model": self.options.model,
            "llm_base_url": self.options.base_url,
            "domain": self.options.domain,
        }

    def _left(self) -> float | None:
        # The server refuses (RESOURCE_EXHAUSTED) a call whose most possible cost passes what is left.
        left = self.options.budget_usd - self.spent_usd
        if left <= 0:
            self.stopped = f"the budget of ${self.options.budget_usd:g} is spent"
            logger.warning("LLM judge stopped: %s", self.stopped)
            return None
        return left

    def _count(self, spend: LlmSpend) -> None:
        self.calls += 1
        self.cache_hits += spend.cached
        self.spent_usd += spend.cost_usd
        self.tokens += spend.tokens
        self.model = spend.model or self.model

    def _failed(self, error: FeaturelensError) -> None:
        """A refused or failed call: the judge stops (the run goes on); before any call succeeded,
        a server without an LLM is the caller's mistake and raises."""
        if isinstance(error, FailedPreconditionError) and self.calls == 0:
            raise LlmJudgeError(f"the LLM judge cannot run: {error}") from error
        if isinstance(error, ResourceExhaustedError):
            self.stopped = f"the budget of ${self.options.budget_usd:g} is spent ({error})"
        else:
            self.stopped = f"an LLM call failed: {error}"
        logger.warning("LLM judge stopped: %s", self.stopped)
