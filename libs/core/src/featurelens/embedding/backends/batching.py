"""Approximate token budgeting for remote embedding APIs (no tokenizer needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_CHARS_PER_TOKEN = 3.0
"""English averages about 4 characters per token; 3 over-counts tokens, so limits hold for denser text
(LaTeX, code, numbers) too."""


def estimate_tokens(text: str, chars_per_token: float = DEFAULT_CHARS_PER_TOKEN) -> int:
    """A deliberately high estimate of the token count of `text`."""
    return max(1, math.ceil(len(text) / chars_per_token))


def truncate_to_tokens(
    text: str, max_tokens: int, chars_per_token: float = DEFAULT_CHARS_PER_TOKEN
) -> tuple[str, bool]:
    """Cut `text` to about `max_tokens` tokens (by characters); return the text and whether it was cut."""
    max_chars = int(max_tokens * chars_per_token)
    if len(text) <= max_chars:
        return text, False
    return text[:max_chars], True


def split_batches(
    texts: Sequence[str],
    *,
    max_inputs: int,
    max_tokens: int,
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN,
) -> list[range]:
    """Split `texts` into consecutive runs, each at most `max_inputs` texts and `max_tokens` estimated tokens.

    Order is preserved; a single text above `max_tokens` gets a run of its own.
    """
    if max_inputs <= 0 or max_tokens <= 0:
        raise ValueError("max_inputs and max_tokens must be positive")
    batches: list[range] = []
    start = 0
    tokens = 0
    for position, text in enumerate(texts):
        cost = estimate_tokens(text, chars_per_token)
        full = position - start >= max_inputs or tokens + cost > max_tokens
        if position > start and full:
            batches.append(range(start, position))
            start, tokens = position, 0
        tokens += cost
    if start < len(texts):
        batches.append(range(start, len(texts)))
    return batches
