"""Configured secrets are redacted by value, whatever their shape, from log records and from every
status detail a client receives; credentials of a known shape by pattern."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator

import grpc
import pytest
from grpc import aio
from pydantic import Field, SecretStr

from featurelens.kit import (
    ServiceSettings,
    redact,
    register_secret,
    register_settings_secrets,
    service_config,
)
from featurelens.kit.logs import JsonFormatter, RedactingFilter
from featurelens.kit.redaction import forget_secrets, url_password
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

#: An API key without any recognisable prefix: only its value gives it away.
PLAIN_KEY = "Zq8vR2mN5tY7wX1c"
BASIC = base64.b64encode(b"featurelens:hunter2-upstream").decode()


class SecretiveSettings(ServiceSettings):
    model_config = service_config("SECRETIVE")

    api_key: SecretStr = Field(SecretStr(""))
    base_url: str = ""
    mirrors: list[str] = Field(default_factory=list)
    redis_url: str = ""


@pytest.fixture(autouse=True)
def no_registered_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def test_a_registered_secret_is_redacted_by_value_whatever_its_shape() -> None:
    line = f"upstream said: invalid key {PLAIN_KEY} (HTTP 401)"
    assert PLAIN_KEY in redact(line)

    register_secret(PLAIN_KEY)

    assert redact(line) == "upstream said: invalid key *** (HTTP 401)"


def test_a_value_too_short_to_be_a_secret_is_not_registered() -> None:
    register_secret("abc")
    register_secret("")

    assert redact("abc def") == "abc def"


def test_the_settings_register_their_secret_fields_and_the_passwords_of_their_urls() -> None:
    settings = SecretiveSettings(
        api_key=SecretStr(PLAIN_KEY),
        base_url="http://featurelens:p%40ss-word9@127.0.0.1:9/v1",
        mirrors=["https://:mirror-pass-1@mirror.example/v1", "https://mirror.example/open"],
        redis_url="redis://:redis-pass-77@redis:6379/0",
    )

    register_settings_secrets(settings)

    leaks = f"{PLAIN_KEY} p@ss-word9 p%40ss-word9 mirror-pass-1 redis-pass-77"
    assert redact(leaks) == "*** *** *** *** ***"
    assert redact("https://mirror.example/open") == "https://mirror.example/open"


def test_url_password_reads_the_userinfo_only() -> None:
    assert url_password("http://user:pw%2Fx@host:1/v1") == "pw%2Fx"
    assert url_password("http://host:1/v1") is None
    assert url_password("not a url @ all") is None


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"upstream echoed Authorization: Basic {BASIC}", BASIC),
        ("proxy sent 'authorization: basic ZmVhdHVyZWxlbnM6aHVudGVyMg=='", "ZmVhdHVyZWxlbnM6aHVudGVyMg=="),
        ("Authorization: Bearer abc.DEF-123_456~+/xyz==", "abc.DEF-123_456~+/xyz=="),
    ],
)
def test_basic_and_bearer_credentials_are_redacted_by_pattern(line: str, secret: str) -> None:
    assert secret not in redact(line)
    assert "***" in redact(line)


def test_the_word_basic_in_a_sentence_is_left_alone() -> None:
    line = "Basic statistics of the corpus: Basic abcd1234 is not base64 of a user and password"
    assert redact(line) == line


def test_a_logged_record_is_redacted_by_value() -> None:
    register_secret(PLAIN_KEY)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("featurelens.tests.redaction")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("the API refused key %s", PLAIN_KEY)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    assert PLAIN_KEY not in buffer.getvalue()
    assert "the API refused key ***" in buffer.getvalue()


async def test_a_status_detail_is_redacted_before_it_reaches_the_client(
    stub: encoder_pb2_grpc.EncoderServiceStub,
) -> None:
    register_secret(PLAIN_KEY)
    # The fake repeats texts[1] whole in its sentence.
    leaky = f"key {PLAIN_KEY} at http://featurelens:pa55word@api.example/v1 said Basic {BASIC}"

    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Embed(encoder_pb2.EmbedRequest(texts=["echo", leaky]))

    details = str(caught.value.details())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for secret in (PLAIN_KEY, "pa55word", BASIC):
        assert secret not in details
    assert "http://featurelens:***@api.example/v1" in details
