"""Logging: JSON lines with the request id, and secrets redacted from every record."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from featurelens.kit import configure_logging, redact
from featurelens.kit.context import reset_request_id, set_request_id
from featurelens.kit.logs import JsonFormatter, RedactingFilter, TextFormatter

SECRETS = [
    ("OPENAI_API_KEY is sk-proj-abcDEF1234567890xyz", "sk-proj-abcDEF1234567890xyz"),
    ("calling with api_key=hunter2hunter2 now", "hunter2hunter2"),
    ('settings {"api_key": "s3cr3t-value", "model": "m"}', "s3cr3t-value"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "eyJhbGciOiJIUzI1NiJ9.payload"),
    ("connecting to redis://user:pa55word@redis:6379/0", "pa55word"),
    ("connecting to redis://:pa55word@redis:6379/0", "pa55word"),
]


@pytest.mark.parametrize(("line", "secret"), SECRETS)
def test_redact_removes_the_secret_and_keeps_the_rest(line: str, secret: str) -> None:
    redacted = redact(line)

    assert secret not in redacted
    assert "***" in redacted
    assert redacted.split()[0] == line.split()[0]


def test_redact_keeps_the_host_of_a_url_with_a_password() -> None:
    assert redact("redis://user:pa55word@redis:6379/0") == "redis://user:***@redis:6379/0"


def test_redact_leaves_ordinary_text_alone() -> None:
    line = "embedded 512 texts with max_tokens=256 at http://encoder:50051/v1 in 3.2s"
    assert redact(line) == line


def record_line(formatter: logging.Formatter, message: str, *args: object, exc: bool = False) -> str:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("featurelens.tests.logs")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        if exc:
            try:
                raise ValueError("bad key sk-abcdefghijklmnop")
            except ValueError:
                logger.exception(message, *args)
        else:
            logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return buffer.getvalue().strip()


def test_a_json_line_has_time_level_logger_message_and_the_request_id() -> None:
    token = set_request_id("req-7")
    try:
        line = record_line(JsonFormatter(), "embedded %d texts with key %s", 3, "sk-abcdefghijklmnop")
    finally:
        reset_request_id(token)

    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message", "request_id"}
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "featurelens.tests.logs"
    assert entry["request_id"] == "req-7"
    assert entry["message"] == "embedded 3 texts with key sk-***"


def test_a_json_line_outside_a_request_has_no_request_id() -> None:
    assert "request_id" not in json.loads(record_line(JsonFormatter(), "idle"))


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_secrets_in_a_logged_traceback_are_redacted(formatter: logging.Formatter) -> None:
    line = record_line(formatter, "call failed", exc=True)

    assert "ValueError" in line
    assert "sk-abcdefghijklmnop" not in line


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_configure_logging_writes_redacted_json_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="info", fmt="json")

    logging.getLogger("featurelens.encoder").info("redis at redis://:topsecret@redis:6379/0")
    logging.getLogger("featurelens.encoder").debug("not shown at INFO")

    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "redis at redis://:***@redis:6379/0"
    assert entry["level"] == "INFO"
