"""API keys and TLS on real loopback servers: who is admitted, what a refusal says, and that the
key never reaches a log line or a status detail."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import ValidationError

from featurelens.kit import GrpcServer, Peer, UnavailableError
from featurelens.kit.auth import (
    MISSING_KEY,
    WRONG_KEY,
    ApiKeys,
    PeerSecurity,
    SecurityConfigError,
    ServerAuth,
)
from featurelens.kit.healthcheck import check
from featurelens.kit.redaction import forget_secrets
from featurelens.kit.settings import ServiceSettings, service_config
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tls_testing import Pki, make_pki

KEY = "fl-test-key-0123456789abcdef"
OTHER_KEY = "fl-test-key-not-configured-000"
HASHED_KEY = "fl-hashed-key-abcdefghijklmnop"
EMBED = encoder_pb2.EmbedRequest(texts=["hello"])


class DemoSettings(ServiceSettings):
    model_config = service_config("DEMO")


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture(autouse=True)
def _no_secrets_left() -> Any:
    yield
    forget_secrets()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    digest = hashlib.sha256(HASHED_KEY.encode()).hexdigest()
    path = tmp_path / "keys.txt"
    path.write_text(f"# the keys of the test\n\n{KEY}\nsha256:{digest}\n")
    return path


@pytest.fixture
async def start(fake: Any) -> AsyncIterator[Callable[..., Any]]:
    servers: list[GrpcServer] = []

    async def started(**options: Any) -> GrpcServer:
        fake.release_start.set()
        server = GrpcServer([fake], host="127.0.0.1", port=0, grace_period_s=1.0, **options)
        servers.append(server)
        await server.start()
        await server.wait_ready(timeout=10)
        return server

    yield started
    for server in servers:
        await server.stop(0)


async def keyed(start: Callable[..., Any], key_file: Path, **auth: bool) -> GrpcServer:
    keys = ApiKeys.from_file(key_file, "FEATURELENS_DEMO_API_KEYS_FILE")
    server: GrpcServer = await start(auth=ServerAuth(keys, **auth))
    return server


async def embed(address: str, metadata: tuple[tuple[str, str], ...] = ()) -> encoder_pb2.EmbedResponse:
    async with aio.insecure_channel(address) as channel:
        stub = encoder_pb2_grpc.EncoderServiceStub(channel)
        return await stub.Embed(EMBED, timeout=5, metadata=metadata)


# -- keys ------------------------------------------------------------------------------------------


async def test_a_call_without_a_key_is_unauthenticated_and_told_how_to_send_one(
    start: Callable[..., Any], key_file: Path
) -> None:
    server = await keyed(start, key_file)
    with pytest.raises(aio.AioRpcError) as refused:
        await embed(server.address)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == MISSING_KEY


@pytest.mark.parametrize(
    "value", [f"Bearer {OTHER_KEY}", f"Bearer {KEY[:-1]}", f"Basic {KEY}", KEY, "Bearer "]
)
async def test_a_wrong_key_gets_one_sentence_whatever_was_wrong_with_it(
    start: Callable[..., Any], key_file: Path, value: str
) -> None:
    server = await keyed(start, key_file)
    with pytest.raises(aio.AioRpcError) as refused:
        await embed(server.address, (("authorization", value),))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == WRONG_KEY


@pytest.mark.parametrize("key", [KEY, HASHED_KEY])
async def test_a_key_in_clear_or_stored_hashed_is_accepted(
    start: Callable[..., Any], key_file: Path, key: str
) -> None:
    server = await keyed(start, key_file)
    reply = await embed(server.address, bearer(key))
    assert reply.model_id == "fake"


async def test_keys_from_the_settings_list_are_accepted_too(start: Callable[..., Any]) -> None:
    settings = DemoSettings(api_keys=[KEY])
    server = await start(auth=settings.server_auth())
    assert (await embed(server.address, bearer(KEY))).model_id == "fake"
    with pytest.raises(aio.AioRpcError):
        await embed(server.address)


async def test_without_keys_every_call_is_admitted(start: Callable[..., Any]) -> None:
    server = await start()
    assert (await embed(server.address)).model_id == "fake"


async def health_check(address: str, metadata: tuple[tuple[str, str], ...] = ()) -> int:
    async with aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5, metadata=metadata
        )
    return int(reply.status)


async def list_services(address: str, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    async with aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]), metadata=metadata)]
    return [service.name for service in replies[0].list_services_response.service]


async def test_health_and_reflection_are_open_by_default(start: Callable[..., Any], key_file: Path) -> None:
    server = await keyed(start, key_file)
    assert await health_check(server.address) == health_pb2.HealthCheckResponse.SERVING
    assert "featurelens.v1.EncoderService" in await list_services(server.address)
    assert await asyncio.to_thread(check, "127.0.0.1", server.port)


async def test_closed_health_and_reflection_need_the_key(start: Callable[..., Any], key_file: Path) -> None:
    server = await keyed(start, key_file, open_health=False, open_reflection=False)
    for refused_call in (health_check(server.address), list_services(server.address)):
        with pytest.raises(aio.AioRpcError) as refused:
            await refused_call
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await health_check(server.address, bearer(KEY)) == health_pb2.HealthCheckResponse.SERVING
    assert "featurelens.v1.EncoderService" in await list_services(server.address, bearer(KEY))
    assert not await asyncio.to_thread(check, "127.0.0.1", server.port)
    assert await asyncio.to_thread(check, "127.0.0.1", server.port, security=PeerSecurity(api_key=KEY))


async def test_a_peer_sends_its_key_and_a_refused_key_is_unavailable_naming_the_peer(
    start: Callable[..., Any], key_file: Path
) -> None:
    server = await keyed(start, key_file)
    stub_call = encoder_pb2_grpc.EncoderServiceStub
    good = Peer("encoder", server.address, 5.0, security=PeerSecurity(api_key=KEY))
    bad = Peer("encoder", server.address, 5.0, security=PeerSecurity(api_key=OTHER_KEY))
    try:
        reply = await good.call(stub_call(good.channel).Embed(EMBED, timeout=5))
        assert reply.model_id == "fake"
        with pytest.raises(UnavailableError, match=r"the encoder service at .* refused this service's"):
            await bad.call(stub_call(bad.channel).Embed(EMBED, timeout=5))
    finally:
        await good.close()
        await bad.close()


async def test_the_key_never_reaches_a_log_line_or_a_status_detail(
    start: Callable[..., Any], key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = DemoSettings(api_keys_file=key_file, peer_api_key_file=key_file)
    server = await start(auth=settings.server_auth())
    details = []
    with pytest.raises(aio.AioRpcError) as refused:  # a key that is close to the right one
        await embed(server.address, bearer(KEY + "x"))
    details.append(str(refused.value.details()))
    assert (await embed(server.address, bearer(KEY))).model_id == "fake"
    for text in ("boom", "invalid", "echo"):  # failing calls with the right key, one echoing it
        request = encoder_pb2.EmbedRequest(texts=[text, f"my key is {KEY}"])
        async with aio.insecure_channel(server.address) as channel:
            with pytest.raises(aio.AioRpcError) as failed:
                await encoder_pb2_grpc.EncoderServiceStub(channel).Embed(
                    request, timeout=5, metadata=bearer(KEY)
                )
        details.append(str(failed.value.details()))
    assert "password" not in details[1]
    assert settings.peer_security().api_key == KEY
    for text in [*details, caplog.text, repr(settings), repr(settings.server_auth())]:
        assert KEY not in text
        assert KEY[:-1] not in text
    assert any("UNAUTHENTICATED" in record.getMessage() for record in caplog.records)


# -- configuration errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no API key"),
        ("# only a comment\n\n", "holds no API key"),
        ("sha256:abc\n", "64 hexadecimal digits"),
        (f"sha256:{KEY}\n", "64 hexadecimal digits"),
        ("short\n", "at least 16 characters"),
    ],
)
def test_an_unusable_key_file_is_refused_at_start_naming_the_setting(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(content)
    with pytest.raises(SecurityConfigError, match=message) as refused:
        DemoSettings(api_keys_file=path).server_auth()
    assert "FEATURELENS_DEMO_API_KEYS_FILE" in str(refused.value)
    assert KEY not in str(refused.value)


def test_a_missing_key_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SecurityConfigError, match="does not exist"):
        DemoSettings(api_keys_file=tmp_path / "nope.txt").server_auth()


def test_a_certificate_without_its_key_is_refused_when_the_settings_are_read(tmp_path: Path) -> None:
    with pytest.raises(
        ValidationError, match="FEATURELENS_DEMO_TLS_CERT_FILE is set but FEATURELENS_DEMO_TLS_KEY_FILE"
    ):
        DemoSettings(tls_cert_file=tmp_path / "cert.pem")
    with pytest.raises(ValidationError, match="TLS_CLIENT_CA_FILE needs"):
        DemoSettings(tls_client_ca_file=tmp_path / "ca.pem")


def test_a_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    settings = DemoSettings(tls_cert_file=tmp_path / "cert.pem", tls_key_file=tmp_path / "key.pem")
    with pytest.raises(SecurityConfigError, match=r"FEATURELENS_DEMO_TLS_CERT_FILE: .* is not a PEM file"):
        settings.server_tls()


# -- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def tls_embed(address: str, credentials: grpc.ChannelCredentials, key: str = KEY) -> str:
    async with aio.secure_channel(address, credentials) as channel:
        reply = await encoder_pb2_grpc.EncoderServiceStub(channel).Embed(
            EMBED, timeout=5, metadata=bearer(key)
        )
    return reply.model_id


async def test_over_tls_a_client_trusting_the_ca_gets_in_and_others_cannot_connect(
    start: Callable[..., Any], key_file: Path, pki: Pki
) -> None:
    settings = DemoSettings(
        api_keys_file=key_file, tls_cert_file=pki.server_cert, tls_key_file=pki.server_key
    )
    server = await start(auth=settings.server_auth(), tls=settings.server_tls())
    assert await tls_embed(server.address, grpc.ssl_channel_credentials(pki.ca.read_bytes())) == "fake"
    with pytest.raises(aio.AioRpcError) as untrusted:
        await tls_embed(server.address, grpc.ssl_channel_credentials(pki.other_ca.read_bytes()))
    assert untrusted.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(aio.AioRpcError) as plaintext:
        await embed(server.address, bearer(KEY))
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(aio.AioRpcError) as keyless:
        await tls_embed(server.address, grpc.ssl_channel_credentials(pki.ca.read_bytes()), key=OTHER_KEY)
    assert keyless.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_mutual_tls_refuses_a_client_without_a_certificate_and_peers_present_theirs(
    start: Callable[..., Any], key_file: Path, pki: Pki, tmp_path: Path
) -> None:
    (tmp_path / "peer.key").write_text(KEY)
    settings = DemoSettings(
        api_keys_file=key_file,
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca,
        peer_api_key_file=tmp_path / "peer.key",
        peer_tls_ca_file=pki.ca,
        peer_tls_cert_file=pki.client_cert,
        peer_tls_key_file=pki.client_key,
    )
    server = await start(auth=settings.server_auth(), tls=settings.server_tls())
    with pytest.raises(aio.AioRpcError) as refused:
        await tls_embed(server.address, grpc.ssl_channel_credentials(pki.ca.read_bytes()))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    peer = Peer("encoder", server.address, 5.0, security=settings.peer_security())
    try:
        stub = encoder_pb2_grpc.EncoderServiceStub(peer.channel)
        assert (await peer.call(stub.Embed(EMBED, timeout=5))).model_id == "fake"
    finally:
        await peer.close()
    assert await asyncio.to_thread(check, "127.0.0.1", server.port, security=settings.peer_security())
    assert not await asyncio.to_thread(check, "127.0.0.1", server.port)
