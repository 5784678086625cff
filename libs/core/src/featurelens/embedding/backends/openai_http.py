"""What an OpenAI-compatible endpoint's error answers say: how long to wait, and the message.

Shared by the embeddings backend and the labelling LLM client, so both read ``Retry-After`` and
error bodies by one rule.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Mapping

import openai


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if present."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return float(milliseconds) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - dt.datetime.now(dt.UTC)).total_seconds()


def error_message(exc: openai.APIStatusError) -> str:
    """The endpoint's own sentence from an error answer's body, else the client's message."""
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)
    return exc.message
