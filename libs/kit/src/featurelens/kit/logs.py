"""Logging set-up: readable text on a terminal, one JSON object per line in a container.

Secrets are redacted from every record (``featurelens.kit.redaction``: configured secrets by value,
API keys, bearer and basic credentials, passwords in URLs), and every record is bounded: a message
keeps its first 4,000 characters and each line of a traceback its first 1,000, so a client's
megabyte-long name cannot flood the log.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from featurelens.kit.context import current_request_id
from featurelens.kit.redaction import redact, redacted_and_bounded

__all__ = ["JsonFormatter", "RedactingFilter", "TextFormatter", "configure_logging", "redact"]

#: Longest log message, in characters (what is cut is marked with the original length).
MAX_MESSAGE_CHARS = 4000
#: Longest line of a logged traceback, in characters.
MAX_TRACEBACK_LINE_CHARS = 1000


def _bounded_traceback(text: str) -> str:
    # Cut line by line: the exception's message is the last line, the one worth keeping.
    return "\n".join(redacted_and_bounded(line, MAX_TRACEBACK_LINE_CHARS) for line in text.splitlines())


class RedactingFilter(logging.Filter):
    """Formats each record's message once, redacts secrets from it and bounds its length."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redacted_and_bounded(message, MAX_MESSAGE_CHARS)
        record.args = None
        record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return _bounded_traceback(super().formatException(ei))


class TextFormatter(logging.Formatter):
    """Readable single-line records with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return _bounded_traceback(super().formatException(ei))

    def format(self, record: logging.LogRecord) -> str:
        # The filter redacts the message and formatException the traceback; this catches a record
        # that reached the handler without the filter.
        line = redact(super().format(record))
        request_id = getattr(record, "request_id", None)
        return f"{line} [{request_id}]" if request_id else line


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure the root logger once for a service process (called from ``__main__``)."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter that drowns a service's own lines.
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
