"""Every error as JSON, in one table: the SDK's error class (one per gRPC status) → HTTP status.

The body of every error the gateway answers::

    {"error": {"code": "NOT_FOUND", "message": "...", "request_id": "4f2a9c1e0b7d3a55"}}

``code`` is always a gRPC status name, so a client handles the gateway and the gRPC API alike.
Choices where gRPC and HTTP do not line up one to one:

- Bad input of any kind is 400 INVALID_ARGUMENT: what a service refuses, what the gateway's own
  checks refuse (``validation``) and what FastAPI's request validation refuses (wrong types,
  missing fields, malformed JSON), so a client needs one rule, not 400 *and* 422.
- FAILED_PRECONDITION is 409 Conflict: the request is fine but the server's state does not allow
  it yet (e.g. a corpus not indexed with that SAE); 412 is about HTTP conditional headers.
- HTTP-level refusals of the gateway itself keep their HTTP status and get the nearest gRPC name
  (404 NOT_FOUND for an unknown path, 405 UNIMPLEMENTED, 413 RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from featurelens.client import errors as sdk
from featurelens.services.gateway.middleware import REQUEST_ID_HEADER, request_id_of
from featurelens.services.gateway.validation import GatewayInputError, ResourceNotFoundError

logger = logging.getLogger(__name__)

#: The HTTP status of each SDK error class; a subclass not listed takes its nearest listed base.
HTTP_STATUS: dict[type[sdk.APIStatusError], int] = {
    sdk.InvalidArgumentError: 400,
    sdk.OutOfRangeError: 400,
    sdk.UnauthenticatedError: 401,
    sdk.PermissionDeniedError: 403,
    sdk.NotFoundError: 404,
    sdk.AlreadyExistsError: 409,
    sdk.FailedPreconditionError: 409,
    sdk.AbortedError: 409,
    sdk.ResourceExhaustedError: 429,
    sdk.CallCancelledError: 499,
    sdk.InternalServerError: 500,
    sdk.UnimplementedError: 501,
    sdk.UnavailableError: 503,
    sdk.DeadlineExceededError: 504,
}

#: The gRPC name of an HTTP refusal made by the gateway itself (unknown path, wrong method, ...).
_CODE_OF_HTTP_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "FAILED_PRECONDITION",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def http_status(error: sdk.APIStatusError) -> int:
    """The HTTP status of an SDK error (500 for a status the table does not know)."""
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500


def code_of_http_status(status: int) -> str:
    """The gRPC status name of an HTTP status the gateway answers by itself."""
    if status in _CODE_OF_HTTP_STATUS:
        return _CODE_OF_HTTP_STATUS[status]
    return "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"


def error_response(request: Request, status: int, code: str, message: str) -> JSONResponse:
    request_id = request_id_of(request.scope)
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    # Set here as well as by the middleware: an unexpected exception's response is sent from
    # outside it.
    return JSONResponse(body, status_code=status, headers={REQUEST_ID_HEADER: request_id})


async def _sdk_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, sdk.FeaturelensError)
    status = http_status(error) if isinstance(error, sdk.APIStatusError) else 500
    if status >= 500:
        logger.warning("%s %s failed: %s", request.method, request.url.path, error)
    return error_response(request, status, error.code.name, error.details)


async def _input_error(request: Request, error: Exception) -> JSONResponse:
    return error_response(request, 400, "INVALID_ARGUMENT", str(error))


async def _not_found(request: Request, error: Exception) -> JSONResponse:
    return error_response(request, 404, "NOT_FOUND", str(error))


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return error_response(request, 400, "INVALID_ARGUMENT", validation_sentence(error))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    status = error.status_code
    message = str(error.detail) if error.detail else HTTPStatus(status).phrase
    if status == 404 and message == HTTPStatus(404).phrase:
        message = f"no such path: {request.method} {request.url.path}"
    response = error_response(request, status, code_of_http_status(status), message)
    for name, value in (error.headers or {}).items():
        response.headers[name] = value
    return response


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    request_id = request_id_of(request.scope)
    logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return error_response(
        request, 500, "INTERNAL", f"internal error; quote request id {request_id} to the operator"
    )


def validation_sentence(error: RequestValidationError) -> str:
    """FastAPI's validation errors as one sentence naming each field at fault."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "the body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    more = len(error.errors()) - len(parts)
    suffix = f" (and {more} more)" if more > 0 else ""
    return "invalid request: " + "; ".join(parts) + suffix


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as JSON with a gRPC status name and the request id."""
    app.add_exception_handler(sdk.FeaturelensError, _sdk_error)
    app.add_exception_handler(GatewayInputError, _input_error)
    app.add_exception_handler(ResourceNotFoundError, _not_found)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
