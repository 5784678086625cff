"""The SDK and the CLI against servers that require an API key, serve TLS or mutual TLS: the key
and TLS from arguments or the environment, sync and async alike."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from featurelens.cli.main import app
from featurelens.client import (
    APIConnectionError,
    AsyncFeaturelensClient,
    FeaturelensClient,
    NotFoundError,
    TlsConfig,
    UnauthenticatedError,
)
from featurelens.kit.auth import ApiKeys, ServerAuth, ServerTls
from featurelens.kit.redaction import forget_secrets

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "libs" / "kit" / "tests"))
from tls_testing import Pki, make_pki

KEY = "fl-sdk-test-key-0123456789"
runner = CliRunner()

ENV = (
    "FEATURELENS_API_KEY",
    "FEATURELENS_TLS_CA_FILE",
    "FEATURELENS_TLS_CERT_FILE",
    "FEATURELENS_TLS_KEY_FILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    forget_secrets()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def keys(**options: bool) -> ServerAuth:
    return ServerAuth(ApiKeys.parse([KEY], "test keys"), **options)


def server_tls(pki: Pki, *, mutual: bool = False) -> ServerTls:
    client_ca = pki.ca.read_bytes() if mutual else None
    return ServerTls(pki.server_cert.read_bytes(), pki.server_key.read_bytes(), client_ca)


@pytest.fixture(scope="module")
def keyed(serve: Callable[..., str], fake_sae: Any) -> str:
    """Keys required, health closed too."""
    return serve([fake_sae], auth=keys(open_health=False))


@pytest.fixture(scope="module")
def tls_keyed(serve: Callable[..., str], fake_sae: Any, pki: Pki) -> str:
    return serve([fake_sae], auth=keys(), tls=server_tls(pki))


@pytest.fixture(scope="module")
def mutual(serve: Callable[..., str], fake_sae: Any, pki: Pki) -> str:
    return serve([fake_sae], auth=keys(), tls=server_tls(pki, mutual=True))


def sae_ids(client: FeaturelensClient) -> list[str]:
    return [info.sae_id for info in client.sae.list_saes()]


async def async_sae_ids(client: AsyncFeaturelensClient) -> list[str]:
    async with client:
        return [info.sae_id for info in await client.sae.list_saes()]


def test_a_call_without_the_key_is_refused_and_with_it_succeeds(keyed: str) -> None:
    with FeaturelensClient(keyed, max_retries=0) as client, pytest.raises(UnauthenticatedError) as refused:
        sae_ids(client)
    assert "FEATURELENS_API_KEY" in refused.value.details
    with FeaturelensClient(keyed, max_retries=0, api_key="not-the-key-0123456789") as client:
        with pytest.raises(UnauthenticatedError):
            sae_ids(client)
    with FeaturelensClient(keyed, api_key=KEY) as client:
        assert sae_ids(client)
        assert client.health() == "SERVING"
        # with_options keeps the key.
        assert sae_ids(client.with_options(timeout=5))


async def test_the_async_client_sends_its_key_too(keyed: str) -> None:
    with pytest.raises(UnauthenticatedError):
        await async_sae_ids(AsyncFeaturelensClient(keyed, max_retries=0))
    assert await async_sae_ids(AsyncFeaturelensClient(keyed, api_key=KEY))


def test_the_key_comes_from_the_environment_unless_an_argument_says_otherwise(
    keyed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATURELENS_API_KEY", KEY)
    with FeaturelensClient(keyed) as client:
        assert sae_ids(client)
    assert asyncio.run(async_sae_ids(AsyncFeaturelensClient(keyed)))
    with FeaturelensClient(keyed, api_key="", max_retries=0) as client, pytest.raises(UnauthenticatedError):
        sae_ids(client)


def test_over_tls_with_the_ca_and_the_key_a_call_succeeds(tls_keyed: str, pki: Pki) -> None:
    with FeaturelensClient(tls_keyed, api_key=KEY, tls=TlsConfig(ca_file=pki.ca)) as client:
        assert sae_ids(client)
    client_async = AsyncFeaturelensClient(tls_keyed, api_key=KEY, tls=TlsConfig(ca_file=pki.ca))
    assert asyncio.run(async_sae_ids(client_async))
    with FeaturelensClient(tls_keyed, tls=TlsConfig(ca_file=pki.ca), max_retries=0) as client:
        with pytest.raises(UnauthenticatedError):
            sae_ids(client)


def test_tls_settings_come_from_the_environment(
    tls_keyed: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATURELENS_API_KEY", KEY)
    monkeypatch.setenv("FEATURELENS_TLS_CA_FILE", str(pki.ca))
    with FeaturelensClient(tls_keyed) as client:
        assert sae_ids(client)


def test_without_the_ca_the_tls_handshake_fails_with_an_error_that_says_so(tls_keyed: str, pki: Pki) -> None:
    for tls in (TlsConfig(ca_file=pki.other_ca), True):
        with FeaturelensClient(tls_keyed, api_key=KEY, tls=tls, max_retries=0) as client:
            with pytest.raises(APIConnectionError) as failed:
                sae_ids(client)
        assert "TLS handshake failed" in failed.value.details
        assert "FEATURELENS_TLS_CA_FILE" in failed.value.details
    with pytest.raises(APIConnectionError, match="TLS handshake failed"):
        asyncio.run(
            async_sae_ids(
                AsyncFeaturelensClient(tls_keyed, tls=TlsConfig(ca_file=pki.other_ca), max_retries=0)
            )
        )


def test_mutual_tls_refuses_a_client_without_a_certificate(mutual: str, pki: Pki) -> None:
    with FeaturelensClient(mutual, api_key=KEY, tls=TlsConfig(ca_file=pki.ca), max_retries=0) as client:
        with pytest.raises(APIConnectionError):
            sae_ids(client)
    with_cert = TlsConfig(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    with FeaturelensClient(mutual, api_key=KEY, tls=with_cert) as client:
        assert sae_ids(client)
    assert asyncio.run(async_sae_ids(AsyncFeaturelensClient(mutual, api_key=KEY, tls=with_cert)))


def test_unusable_tls_settings_fail_when_the_client_is_made(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the TLS CA file"):
        FeaturelensClient("127.0.0.1:1", tls=TlsConfig(ca_file=tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        TlsConfig(cert_file=tmp_path / "cert.pem")


def test_the_key_appears_in_no_error_log_or_repr(keyed: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts = []
    with FeaturelensClient(keyed, api_key=KEY, max_retries=0) as client:
        with pytest.raises(NotFoundError) as failed:
            client.sae.get_sae("no-such-sae")
        texts += [str(failed.value), repr(client.__dict__), repr(client._transport("sae").security)]
    with FeaturelensClient(keyed, api_key=KEY[:-1] + "x", max_retries=0) as client:
        with pytest.raises(UnauthenticatedError) as refused:
            sae_ids(client)
        texts.append(str(refused.value))
    for text in [*texts, caplog.text]:
        assert KEY not in text


# -- the CLI ---------------------------------------------------------------------------------------


def test_the_cli_takes_the_key_as_an_option_or_from_the_environment(
    keyed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = runner.invoke(app, ["health", "--address", keyed])
    assert refused.exit_code == 1
    assert "UNAUTHENTICATED" in refused.stderr
    assert KEY not in refused.output

    result = runner.invoke(app, ["health", "--address", keyed, "--api-key", KEY])
    assert result.exit_code == 0, result.output
    assert "SERVING" in result.stdout

    monkeypatch.setenv("FEATURELENS_API_KEY", KEY)
    assert runner.invoke(app, ["health", "--address", keyed]).exit_code == 0


def test_the_cli_connects_over_tls_with_the_ca_option(tls_keyed: str, pki: Pki) -> None:
    result = runner.invoke(app, ["health", "--address", tls_keyed, "--api-key", KEY, "--tls-ca", str(pki.ca)])
    assert result.exit_code == 0, result.output
    failed = runner.invoke(
        app, ["health", "--address", tls_keyed, "--api-key", KEY, "--tls-ca", str(pki.other_ca)]
    )
    assert failed.exit_code == 1
    assert "TLS handshake failed" in failed.stderr
