"""The errors the SDK raises for a failed call: one shallow tree under ``FeaturelensError``.

Every error carries the gRPC status code, the server's sentence (``details``) and the request id
the SDK sent as ``x-request-id``, which is what an operator needs to find the call in the logs.
"""

from __future__ import annotations

import grpc


class FeaturelensError(Exception):
    """A featurelens call failed; ``code``, ``details`` and ``request_id`` say how and which."""

    def __init__(self, code: grpc.StatusCode, details: str, request_id: str | None = None) -> None:
        self.code = code
        self.details = details
        self.request_id = request_id
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{code.name}: {details}{suffix}")


class InvalidArgumentError(FeaturelensError):
    """The server rejected the request's content; ``details`` says what was wrong."""


class NotFoundError(FeaturelensError):
    """A named thing (model, SAE, corpus, feature) does not exist on the server."""


class UnavailableError(FeaturelensError):
    """The server (or a service it depends on) cannot be reached or is not ready; retrying may help."""


class DeadlineExceededError(FeaturelensError):
    """The call did not finish within its timeout."""


class APIStatusError(FeaturelensError):
    """Any other non-OK status (INTERNAL, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, ...)."""


_ERROR_BY_CODE: dict[grpc.StatusCode, type[FeaturelensError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_rpc_error(error: grpc.RpcError, request_id: str | None = None) -> FeaturelensError:
    """The SDK error for a failed sync or asyncio gRPC call."""
    # Both grpc's sync errors and grpc.aio.AioRpcError are also grpc.Call-like with these methods.
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = details_of() if callable(details_of) else None
    cls = _ERROR_BY_CODE.get(code, APIStatusError)
    return cls(code, details or code.name.lower().replace("_", " "), request_id)
