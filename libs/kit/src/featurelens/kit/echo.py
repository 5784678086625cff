"""Bounds on what a service repeats back: a client's value in a sentence, a status detail, a log line.

A client may send megabytes where a name belongs. Repeating it whole would break the answer (gRPC
refuses status details over its 8 KiB metadata limit, so the caller would get RESOURCE_EXHAUSTED
instead of the deliberate status) and flood the log. So a sentence quotes a client's value with
``shown`` (a prefix and the whole length), and the interceptor and the logging filter cut every
status detail and log message with ``bounded``.
"""

from __future__ import annotations

#: How much of one client value a sentence quotes, in characters.
SHOWN_CHARS = 200
#: Longest status detail sent to a client, in characters.
MAX_DETAIL_CHARS = 1000
#: Longest status detail in UTF-8 bytes: gRPC percent-encodes every non-ASCII byte (3 bytes each),
#: so 2,000 bytes stay under 6 KiB on the wire, inside the 8 KiB metadata limit of a client.
MAX_DETAIL_BYTES = 2000


def shown(value: str | bytes, limit: int = SHOWN_CHARS) -> str:
    """A client's value for an error sentence: quoted (``repr``), cut after ``limit`` characters
    with its whole length, e.g. ``'zzzz'... (5,000,000 characters)``."""
    if len(value) <= limit:
        return repr(value)
    unit = "bytes" if isinstance(value, bytes) else "characters"
    return f"{value[:limit]!r}... ({len(value):,} {unit})"


def bounded(
    text: str, limit: int = MAX_DETAIL_CHARS, *, max_bytes: int | None = None, total: int | None = None
) -> str:
    """``text`` cut to at most ``limit`` characters (and ``max_bytes`` UTF-8 bytes when given), the
    cut marked with the original length; short text is returned unchanged. ``total`` is that length
    when ``text`` is already a prefix of the original."""
    total = len(text) if total is None else total
    cut = text[:limit]
    if max_bytes is not None and len(cut.encode("utf-8")) > max_bytes:
        cut = cut.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    if len(cut) == len(text) == total:
        return text
    return f"{cut}... (cut from {total:,} characters)"
