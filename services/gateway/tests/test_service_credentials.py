"""The gateway calls the services with the API key (and TLS) of its settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from featurelens.client import UnauthenticatedError
from featurelens.kit import GrpcServer
from featurelens.kit.auth import ApiKeys, ServerAuth
from featurelens.kit.redaction import forget_secrets
from featurelens.services.gateway.app import build_client
from featurelens.services.gateway.settings import GatewaySettings

KEY = "fl-gateway-test-key-0123456789"


@pytest.fixture
async def keyed_server() -> object:
    # Health closed: the one RPC a server with no services answers needs the key.
    server = GrpcServer(
        [], host="127.0.0.1", port=0, auth=ServerAuth(ApiKeys.parse([KEY], "test"), open_health=False)
    )
    await server.start()
    await server.wait_ready(timeout=10)
    yield server
    await server.stop(0)
    forget_secrets()


async def test_the_gateway_sends_the_key_of_its_key_file(keyed_server: GrpcServer, tmp_path: Path) -> None:
    (tmp_path / "key").write_text(f"# the gateway's key\n{KEY}\n")
    addresses: dict[str, Any] = {
        f"{name}_address": keyed_server.address
        for name in ("encoder", "sae", "search", "labelling", "family")
    }
    client = build_client(GatewaySettings(api_key_file=tmp_path / "key", **addresses))
    async with client:
        assert await client.health() == "SERVING"
    keyless = build_client(GatewaySettings(**addresses, call_timeout_s=5))
    async with keyless:
        with pytest.raises(UnauthenticatedError):
            await keyless.health()


def test_server_side_security_settings_are_refused_for_the_gateway(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a gateway setting"):
        GatewaySettings(api_keys_file=tmp_path / "keys")
