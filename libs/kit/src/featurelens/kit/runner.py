"""A service process's main(): logging, one server, serve until SIGTERM/SIGINT, drain, stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from featurelens.kit import tracing
from featurelens.kit.auth import SecurityConfigError
from featurelens.kit.logs import configure_logging
from featurelens.kit.observer import install_observer
from featurelens.kit.peers import set_peer_security
from featurelens.kit.readiness import start_following
from featurelens.kit.redaction import register_settings_secrets
from featurelens.kit.server import GrpcServer, Servicer
from featurelens.kit.settings import ServiceSettings

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


async def serve(settings: SettingsT, build_servicer: Callable[[SettingsT], Servicer]) -> None:
    """Serve one servicer per its settings until SIGTERM or SIGINT, then drain and stop.

    Raises ``SecurityConfigError`` before anything starts when a key or certificate file is unusable.
    """
    # Before the servicer exists: nothing it logs or answers may carry a configured secret.
    register_settings_secrets(settings)
    auth = settings.server_auth()
    tls = settings.server_tls()
    set_peer_security(settings.peer_security())
    install_observer()
    tracing.configure(service_name(settings), settings.otlp_endpoint)
    # Built inside the running loop: a grpc.aio server binds to the loop it is created in.
    server = GrpcServer(
        [build_servicer(settings)],
        host=settings.host,
        port=settings.port,
        grace_period_s=settings.grace_period_s,
        max_message_bytes=settings.max_message_bytes,
        auth=auth,
        tls=tls,
        metrics_port=settings.metrics_port or None,
    )
    following: list[asyncio.Task[None]] = []
    try:
        # Once ready, health follows what the service can serve (its store going away and back).
        await server.serve_until_signalled(on_ready=lambda: following.append(start_following(server)))
    finally:
        for task in following:
            task.cancel()
        tracing.shutdown()


def service_name(settings: ServiceSettings) -> str:
    """The service as traces name it: ``featurelens-search`` for ``FEATURELENS_SEARCH_`` settings."""
    prefix = str(type(settings).model_config.get("env_prefix", "FEATURELENS_"))
    name = prefix.removeprefix("FEATURELENS_").strip("_").lower()
    return f"featurelens-{name}" if name else "featurelens"


def run_service(settings: SettingsT, build_servicer: Callable[[SettingsT], Servicer]) -> None:
    """Configure logging from the settings and serve (what each service's ``main()`` does)."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings, build_servicer))
    except SecurityConfigError as error:
        logger.error("cannot start: %s", error)
        raise SystemExit(2) from None
