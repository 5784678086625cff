"""The gateway's FastAPI application: the JSON API, its OpenAPI document, errors as JSON, the
request id of every request, Prometheus metrics at /metrics, and the explorer's static files."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from featurelens import client as sdk
from featurelens.kit.metrics import HTTP_REQUESTS, HTTP_SECONDS
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


#: Methods counted by name; any other is counted as OTHER (a client chooses the method).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route_label(scope: Scope) -> str:
    """The route template that served the request ("/api/v1/features/{sae_id}/{feature}"), never
    the path itself (it holds ids); "static" for the explorer's files, "unmatched" for no route."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return "unmatched"
    # The explorer's files are mounted at "/", whose template is "".
    return path or "static"


class HttpMetrics:
    """Counts and times every HTTP request by method, route template and status code
    (``featurelens_http_requests_total``, ``featurelens_http_request_duration_seconds``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # A request that fails before it answers is counted as the 500 the server then sends.
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            method = scope.get("method", "GET")
            method = method if method in _METHODS else "OTHER"
            route = _route_label(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)


def metrics_response() -> Response:
    """Every metric of this process in Prometheus's text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


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
    # Every metric of the process: in `featurelens up` the hosted services' too.
    app.add_api_route("/metrics", metrics_response, methods=["GET"], include_in_schema=False)
    install_error_handlers(app)
    # Added last = outermost: the request id exists before the body is read or refused.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIds)
    app.add_middleware(HttpMetrics)
    if settings.static_dir is not None:
        logger.info("serving the explorer's files from %s", settings.static_dir)
        app.mount("/", ExplorerFiles(settings.static_dir), name="explorer")
    return app
