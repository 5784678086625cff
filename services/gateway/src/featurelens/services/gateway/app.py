"""The gateway's FastAPI application: the JSON API, its OpenAPI document, errors as JSON, the
request id of every request, and the explorer's static files."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from featurelens import client as sdk
from featurelens.services.gateway import routes
from featurelens.services.gateway.errors import install_error_handlers
from featurelens.services.gateway.middleware import BodyLimit, RequestIds
from featurelens.services.gateway.settings import GatewaySettings
from featurelens.services.gateway.static import ExplorerFiles

logger = logging.getLogger(__name__)

API_VERSION = "1"
DESCRIPTION = """HTTP/JSON over the featurelens gRPC services, for the web explorer and REST users.

Every error is `{"error": {"code", "message", "request_id"}}` where `code` is a gRPC status name:
INVALID_ARGUMENT is 400 (bad input of any kind, request validation included), NOT_FOUND 404,
FAILED_PRECONDITION and ALREADY_EXISTS 409, RESOURCE_EXHAUSTED 429 (413 for a body too large),
UNAVAILABLE 503, DEADLINE_EXCEEDED 504, UNIMPLEMENTED 501, INTERNAL and UNKNOWN 500.
Send `X-Request-Id` (1-128 printable ASCII characters) to choose a request's id; every response
carries it back, and the services log it.
"""


def build_client(settings: GatewaySettings) -> sdk.AsyncFeaturelensClient:
    """An SDK client of the five services at the settings' addresses, with the settings' key and
    TLS (never the SDK's environment variables: the settings say everything)."""
    tls: sdk.TlsConfig | bool = False
    if settings.tls_ca_file is not None or settings.tls_client_cert_file is not None:
        tls = sdk.TlsConfig(settings.tls_ca_file, settings.tls_client_cert_file, settings.tls_client_key_file)
    return sdk.AsyncFeaturelensClient(
        settings.encoder_address,
        encoder_address=settings.encoder_address,
        sae_address=settings.sae_address,
        search_address=settings.search_address,
        labelling_address=settings.labelling_address,
        family_address=settings.family_address,
        timeout_s=settings.call_timeout_s,
        max_message_bytes=settings.max_message_bytes,
        api_key=settings.service_api_key(),
        tls=tls,
    )


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway for these settings; its SDK client is made at start-up and closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.client = build_client(settings)
        try:
            yield
        finally:
            await app.state.client.close()

    app = FastAPI(
        title="featurelens gateway",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(routes.router)
    install_error_handlers(app)
    # Added last = outermost: the request id exists before the body is read or refused.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIds)
    if settings.static_dir is not None:
        logger.info("serving the explorer's files from %s", settings.static_dir)
        app.mount("/", ExplorerFiles(settings.static_dir), name="explorer")
    return app
