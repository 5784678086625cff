"""ASGI middleware of the gateway: the request id of every request, and the bound on body size.

Both are plain ASGI (not Starlette's ``BaseHTTPMiddleware``), so the request runs in the task that
set the request id's context variables, and a body is refused while it arrives, not after.
"""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from featurelens.client import using_request_id
from featurelens.kit.context import reset_request_id, set_request_id
from featurelens.services.gateway.validation import accepted_request_id
from featurelens.wire.metadata import new_request_id

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"


def request_id_of(scope: Scope) -> str:
    """The id ``RequestIds`` gave this request (a fresh one when it did not run)."""
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = new_request_id()
    return str(state["request_id"])


class RequestIds:
    """Gives each HTTP request an id: the caller's ``X-Request-Id`` when usable, else a fresh one.

    The id is returned as ``X-Request-Id`` on every response, written on the gateway's log lines
    (the kit's logging context) and sent as ``x-request-id`` on every gRPC call the request makes,
    so the services' log lines carry it too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = accepted_request_id(given) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != header[0]]
                message["headers"] = [*headers, header]
            await send(message)

        token = set_request_id(request_id)
        try:
            with using_request_id(request_id):
                await self.app(scope, receive, send_with_id)
        finally:
            reset_request_id(token)


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413: at once by its Content-Length, or as it
    arrives (the exception reaches the app's error handlers, which answer as for any error)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"the request body is larger than {self.max_bytes:,} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        request_id = request_id_of(scope)
        body = {
            "error": {
                "code": "RESOURCE_EXHAUSTED",
                "message": str(self._too_large().detail),
                "request_id": request_id,
            }
        }
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            try:
                return bytes(value).decode("ascii")
            except UnicodeDecodeError:
                return None
    return None
