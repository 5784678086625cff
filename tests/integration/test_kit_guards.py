"""The kit's guards around a real service, hosted as ``featurelens up`` hosts it: configured
secrets never reach a client or the log (issue 8, defect 12), a megabyte-long name gets its
deliberate status (defect 5), and bytes that are no message are INVALID_ARGUMENT (defect 4)."""

from __future__ import annotations

import base64
import io
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from featurelens.kit import GrpcServer
from featurelens.kit.embedded import embedded_host, free_port
from featurelens.kit.logs import JsonFormatter, RedactingFilter
from featurelens.kit.redaction import forget_secrets
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

# The core library's fake OpenAI-compatible server (a test helper, not a package).
_CORE_TESTS = Path(__file__).resolve().parents[2] / "libs" / "core" / "tests"
if str(_CORE_TESTS) not in sys.path:
    sys.path.insert(0, str(_CORE_TESTS))

from fake_openai import FakeOpenAI, serve_fake_openai  # noqa: E402

#: An API key without the sk- prefix: nothing but its value gives it away.
PLAIN_KEY = "Zq8vR2mN5tY7wX1cK3pL"
URL_PASSWORD = "hunter2-in-the-url"
BASIC = base64.b64encode(b"gateway:hunter2-upstream").decode()
TEXTS = ["Gravitational waves from binary neutron stars."]


@pytest.fixture(autouse=True)
def no_registered_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.fixture
def service_log() -> Iterator[io.StringIO]:
    """Everything the process logs, as a service writes it (JSON lines, redacted, bounded)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(previous_level)


async def serve_openai_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str, model: str, *, key_in_file: bool = False
) -> GrpcServer:
    """The encoder with an OpenAI backend, set up by environment variables and hosted as
    ``featurelens up`` hosts it (which registers the configured secrets)."""
    monkeypatch.setenv("FEATURELENS_ENCODER_OPENAI_BASE_URL", base_url)
    if key_in_file:
        key_file = tmp_path / "openai_api_key"
        key_file.write_text(PLAIN_KEY + "\n", encoding="utf-8")
        monkeypatch.setenv("FEATURELENS_ENCODER_OPENAI_API_KEY_FILE", str(key_file))
    else:
        monkeypatch.setenv("FEATURELENS_ENCODER_OPENAI_API_KEY", PLAIN_KEY)
    monkeypatch.setenv("FEATURELENS_ENCODER_OPENAI_MODEL", model)
    monkeypatch.setenv("FEATURELENS_ENCODER_OPENAI_MAX_RETRIES", "0")
    monkeypatch.setenv("FEATURELENS_ENCODER_OPENAI_TIMEOUT_S", "5")
    host = embedded_host(port=0, data_dir=tmp_path / "data", models=["openai"], services=["encoder"])
    server = host.build_server()
    await server.start()
    await server.wait_ready(timeout=60)
    return server


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    with serve_fake_openai(dim=32, model="fake-embedding-model", api_key=PLAIN_KEY) as fake:
        yield fake


async def failure(call: object) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_a_password_in_the_openai_url_never_reaches_the_client_or_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service_log: io.StringIO
) -> None:
    closed_port = free_port("127.0.0.1")
    base_url = f"http://featurelens:{URL_PASSWORD}@127.0.0.1:{closed_port}/v1"
    server = await serve_openai_encoder(tmp_path, monkeypatch, base_url, "text-embedding-3-small")
    try:
        async with aio.insecure_channel(server.address) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            error = await failure(stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS)))
    finally:
        await server.stop(0)

    details = str(error.details())
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert f"127.0.0.1:{closed_port}" in details  # still says where it went
    assert URL_PASSWORD not in details
    assert "Embed UNAVAILABLE" in service_log.getvalue()
    assert URL_PASSWORD not in service_log.getvalue()
    assert PLAIN_KEY not in service_log.getvalue()


@pytest.mark.parametrize("key_in_file", [False, True], ids=["key-variable", "key-file"])
async def test_an_upstream_echoing_the_key_and_basic_credentials_is_redacted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeOpenAI,
    service_log: io.StringIO,
    key_in_file: bool,
) -> None:
    server = await serve_openai_encoder(
        tmp_path, monkeypatch, fake.base_url, "fake-embedding-model", key_in_file=key_in_file
    )
    fake.fail_next(
        401, message=f"Incorrect API key provided: {PLAIN_KEY}. The proxy saw Authorization: Basic {BASIC}"
    )
    try:
        async with aio.insecure_channel(server.address) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            error = await failure(stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS)))
    finally:
        await server.stop(0)

    details = str(error.details())
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "HTTP 401" in details
    assert "Incorrect API key provided: ***" in details
    for secret in (PLAIN_KEY, BASIC):
        assert secret not in details
        assert secret not in service_log.getvalue()


async def test_a_five_megabyte_model_name_is_not_found_with_a_short_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeOpenAI, service_log: io.StringIO
) -> None:
    server = await serve_openai_encoder(tmp_path, monkeypatch, fake.base_url, "fake-embedding-model")
    try:
        async with aio.insecure_channel(server.address) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            error = await failure(stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS, model="m" * 5_000_000)))
            undecodable = await failure(
                channel.unary_unary("/featurelens.v1.EncoderService/Embed")(b"\xff\xff\xff", timeout=10)
            )
    finally:
        await server.stop(0)

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert len(str(error.details())) < 1100
    assert max(len(line) for line in service_log.getvalue().splitlines()) < 5000
    assert undecodable.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid featurelens.v1.EmbedRequest message" in str(undecodable.details())
