"""The LLM's two parts in the steering evaluation: the paper's judge, and the rewriting baseline.

- ``LlmSteeringJudge``: shown a query, the top results before and after steering, and a numbered
  list of candidate topics (feature or family labels), the LLM says which topic the results moved
  towards (up-weighting) or away from (down-weighting). It is O'Neill et al.'s GPT-4o judge; the
  caller shuffles the candidates so that the target's place tells nothing.
- ``LlmQueryRewriter``: the LLM rewrites the query to be more (or less) about a topic, the
  baseline steering is compared against at matched cos(q, q′).

Both go through a ``ChatClient`` (so the same answer cache, budget, retries and prices as
labelling) with their own prompt versions; every text is shown on one line, so a result or a
label cannot fake the prompt's structure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from featurelens.interp.llm import ChatClient, Completion
from featurelens.interp.parsing import LabelParseError, parse_choice, parse_rewrite
from featurelens.interp.prompts import ChatMessage, domain_line, one_line
from featurelens.interp.types import Usage

logger = logging.getLogger(__name__)

T = TypeVar("T")

SteeringDirection = Literal["up", "down"]

#: Part of every judging prompt's cache key: change it whenever the wording changes.
JUDGE_PROMPT_VERSION = "steering-judge-2026.11-1"
#: Part of every rewriting prompt's cache key.
REWRITE_PROMPT_VERSION = "query-rewrite-2026.11-1"
#: Candidates a judge chooses among (the paper used 5).
MIN_CANDIDATES = 2
MAX_CANDIDATES = 10
#: Results per side at most, and the characters shown of each result and of the query.
MAX_RESULTS = 50
SHOWN_RESULT_CHARS = 300
SHOWN_QUERY_CHARS = 1000
#: Characters shown of a topic (a candidate's label, or the rewriting topic).
SHOWN_TOPIC_CHARS = 200
#: Tokens of the judge's answer ({"choice": 3}) and of a rewritten query.
JUDGE_MAX_TOKENS = 20
REWRITE_MAX_TOKENS = 120

_JUDGE_SYSTEM = (
    "You evaluate a search engine whose results can be steered towards or away from a topic. You "
    "are shown a search query, the top results before steering and the top results after it, and a "
    "numbered list of candidate topics. Exactly one candidate was steered. Answer with JSON only, no "
    'other text: {"choice": <the candidate\'s number>}'
)
_REWRITE_SYSTEM = (
    "You rewrite search queries for a semantic search engine over a document corpus. Keep the "
    "query short, like something a person would type. Answer with JSON only, no other text: "
    '{"query": "<the rewritten query>"}'
)


@dataclass(frozen=True)
class Judgement:
    """The judge's pick (0-based index into the candidates) and what the call cost."""

    choice: int
    usage: Usage
    model: str


@dataclass(frozen=True)
class Rewrite:
    """A rewritten query and what the call cost."""

    query: str
    usage: Usage
    model: str


def judge_messages(
    query: str,
    candidates: Sequence[str],
    before: Sequence[str],
    after: Sequence[str],
    direction: SteeringDirection,
    domain: str,
) -> list[ChatMessage]:
    """The system and user messages asking which candidate the results moved towards (away from)."""
    if not MIN_CANDIDATES <= len(candidates) <= MAX_CANDIDATES:
        raise ValueError(f"{len(candidates)} candidates; give {MIN_CANDIDATES} to {MAX_CANDIDATES}")
    if not before or not after or len(before) > MAX_RESULTS or len(after) > MAX_RESULTS:
        raise ValueError(f"the judge needs 1 to {MAX_RESULTS} results before and after steering")
    towards = "towards" if direction == "up" else "away from"
    listed = "\n".join(
        f"{number}. {one_line(topic, SHOWN_TOPIC_CHARS)}" for number, topic in enumerate(candidates, start=1)
    )
    user = (
        f"Corpus: {domain_line(domain)}\n\n"
        f"Query: {one_line(query, SHOWN_QUERY_CHARS)}\n\n"
        f"Top results before steering:\n{_numbered(before)}\n\n"
        f"Top results after steering:\n{_numbered(after)}\n\n"
        f"Candidate topics:\n{listed}\n\n"
        f"Which candidate topic were the results steered {towards}? Answer with JSON only: "
        f'{{"choice": <1 to {len(candidates)}>}}'
    )
    return [{"role": "system", "content": _JUDGE_SYSTEM}, {"role": "user", "content": user}]


def rewrite_messages(query: str, topic: str, direction: SteeringDirection, domain: str) -> list[ChatMessage]:
    """The system and user messages asking for the query rewritten more (less) about ``topic``."""
    if not query.strip() or not topic.strip():
        raise ValueError("the rewriter needs a query and a topic")
    wish = "more about" if direction == "up" else "less about (or excluding)"
    user = (
        f"Corpus: {domain_line(domain)}\n\n"
        f"Query: {one_line(query, SHOWN_QUERY_CHARS)}\n"
        f"Topic: {one_line(topic, SHOWN_TOPIC_CHARS)}\n\n"
        f"Rewrite the query so that it finds documents {wish} the topic, keeping the rest of its "
        'meaning. Answer with JSON only: {"query": "<the rewritten query>"}'
    )
    return [{"role": "system", "content": _REWRITE_SYSTEM}, {"role": "user", "content": user}]


def _numbered(texts: Sequence[str]) -> str:
    return "\n".join(f"{n}. {one_line(text, SHOWN_RESULT_CHARS)}" for n, text in enumerate(texts, start=1))


class _OneCall:
    """One chat completion whose answer a parser reads: the judge's and the rewriter's common part."""

    role = "the LLM"

    def __init__(self, client: ChatClient, model: str) -> None:
        if not model.strip():
            raise ValueError(f"model is empty; name {self.role}'s model")
        self.client = client
        self.model = model

    async def _ask(
        self, messages: list[ChatMessage], prompt_version: str, max_tokens: int, parse: Callable[[str], T]
    ) -> tuple[T, Completion]:
        """The parsed answer and its completion; ``LabelParseError`` carrying the call's usage (so
        a failed call's cost is still counted) when the parser finds nothing."""
        completion = await self.client.complete(self.model, messages, prompt_version, max_tokens)
        try:
            return parse(completion.text), completion
        except LabelParseError as error:
            logger.info("%s (%s): %s", self.role, self.model, error)
            raise LabelParseError(error.reason, error.excerpt, completion.usage) from None


class LlmSteeringJudge(_OneCall):
    """Judges a steered search with one chat completion (``JUDGE_PROMPT_VERSION`` prompt)."""

    role = "the judge"

    async def judge(
        self,
        query: str,
        candidates: Sequence[str],
        before: Sequence[str],
        after: Sequence[str],
        direction: SteeringDirection,
        domain: str,
    ) -> Judgement:
        """The judge's pick; ``LabelParseError`` (with the call's usage) when it names none."""
        messages = judge_messages(query, candidates, before, after, direction, domain)
        choice, completion = await self._ask(
            messages, JUDGE_PROMPT_VERSION, JUDGE_MAX_TOKENS, lambda text: parse_choice(text, len(candidates))
        )
        return Judgement(choice, completion.usage, completion.model or self.model)


class LlmQueryRewriter(_OneCall):
    """Rewrites a query with one chat completion (``REWRITE_PROMPT_VERSION`` prompt)."""

    role = "the rewriter"

    async def rewrite(self, query: str, topic: str, direction: SteeringDirection, domain: str) -> Rewrite:
        """The rewritten query; ``LabelParseError`` (with the call's usage) when there is none."""
        messages = rewrite_messages(query, topic, direction, domain)
        rewritten, completion = await self._ask(
            messages, REWRITE_PROMPT_VERSION, REWRITE_MAX_TOKENS, parse_rewrite
        )
        return Rewrite(rewritten, completion.usage, completion.model or self.model)
