"""The errors the SDK raises for a failed call: one class per gRPC status, in the openai-python style.

```
FeaturelensError                    every failed call: ``code``, ``details``, ``request_id``
└── APIStatusError                  the call ended with a non-OK status
    ├── InvalidArgumentError        INVALID_ARGUMENT: ``details`` says what was wrong
    ├── OutOfRangeError             OUT_OF_RANGE
    ├── NotFoundError               NOT_FOUND
    ├── AlreadyExistsError          ALREADY_EXISTS
    ├── FailedPreconditionError     FAILED_PRECONDITION: not possible in the current state
    ├── AbortedError                ABORTED
    ├── PermissionDeniedError       PERMISSION_DENIED
    ├── UnauthenticatedError        UNAUTHENTICATED
    ├── ResourceExhaustedError      RESOURCE_EXHAUSTED: a limit or quota was hit
    ├── CallCancelledError          CANCELLED
    ├── UnimplementedError          UNIMPLEMENTED: the server does not offer this RPC
    ├── InternalServerError         INTERNAL, UNKNOWN, DATA_LOSS
    ├── UnavailableError            UNAVAILABLE said by the server (a dependency is down)
    │   └── APIConnectionError      no server answered: refused, unresolvable, connection lost
    └── DeadlineExceededError       DEADLINE_EXCEEDED said by the server (a dependency was slow)
        └── APITimeoutError         the call's own ``timeout`` passed
```

gRPC gives every failure a status code, even those the client library makes up itself, so the
two client-side failures are refinements of the code they carry: code that catches
``UnavailableError`` or ``DeadlineExceededError`` keeps catching them, and code that wants to
tell "the server said so" from "no answer" catches ``APIConnectionError`` / ``APITimeoutError``
first. ``request_id`` is the ``x-request-id`` the SDK sent, the same on every attempt of one
call, which is what an operator needs to find the call in the services' logs.
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


class APIStatusError(FeaturelensError):
    """The call ended with a non-OK status; the subclasses name the status."""


class InvalidArgumentError(APIStatusError):
    """The server rejected the request's content; ``details`` says what was wrong."""


class OutOfRangeError(APIStatusError):
    """A value is past the end of what exists (an offset, a latent id beyond the SAE's size)."""


class NotFoundError(APIStatusError):
    """A named thing (model, SAE, corpus, feature) does not exist on the server."""


class AlreadyExistsError(APIStatusError):
    """The thing the call would create exists already."""


class FailedPreconditionError(APIStatusError):
    """The server is not in a state that allows the call (e.g. no SAE trained yet); retrying won't help."""


class AbortedError(APIStatusError):
    """The server gave up on the call because of a concurrent change; redoing the operation may help."""


class PermissionDeniedError(APIStatusError):
    """The request asks for something no client may have (e.g. a server path outside the allowed roots)."""


class UnauthenticatedError(APIStatusError):
    """The server (or a proxy in front of it) wants credentials the call did not carry."""


class ResourceExhaustedError(APIStatusError):
    """A limit was hit (too many texts, a message too large, a quota); retried if the server says when."""


class CallCancelledError(APIStatusError):
    """The call was cancelled on the server's side (e.g. the server is shutting down)."""


class UnimplementedError(APIStatusError):
    """The server does not offer this RPC (an older server, or the wrong service at that address)."""


class InternalServerError(APIStatusError):
    """The server failed in a way it did not expect; ``details`` holds the request id to quote."""


class UnavailableError(APIStatusError):
    """The server (or a service it depends on) cannot be reached or is not ready; retrying may help."""


class APIConnectionError(UnavailableError):
    """No server answered: the address refused or did not resolve, or the connection was lost."""


class DeadlineExceededError(APIStatusError):
    """The call, or a call the server made on its behalf, did not finish in time."""


class APITimeoutError(DeadlineExceededError):
    """The call's own ``timeout`` passed before the server answered."""


_ERROR_BY_CODE: dict[grpc.StatusCode, type[APIStatusError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.CANCELLED: CallCancelledError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalServerError,
    grpc.StatusCode.UNKNOWN: InternalServerError,
    grpc.StatusCode.DATA_LOSS: InternalServerError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}

# How grpc-core itself words an UNAVAILABLE for which no server answered. A featurelens server
# that reports a dependency down starts with its own words ("the encoder service at ... is
# unavailable (failed to connect ...)"), so only the start of the details is compared.
_CONNECTION_FAILURE_PREFIXES = (
    "failed to connect to all addresses",  # refused, unreachable network, handshake failed
    "connections to all backends failing",  # the same, under a load-balancing policy
    "errors resolving",  # DNS, grpc >= 1.6x
    "dns resolution failed",  # DNS, older grpc
    "name resolution failed",
    "empty address list",
    "stream removed",  # the connection dropped mid-call ("Stream removed (Socket closed)")
    "socket closed",
    "connection reset",
    "recvmsg:connection reset",
    "broken pipe",
    "connection refused",
)


def is_connection_failure(code: grpc.StatusCode, details: str) -> bool:
    """Whether a status means that no server answered, rather than that a server said so."""
    return code == grpc.StatusCode.UNAVAILABLE and details.strip().lower().startswith(
        _CONNECTION_FAILURE_PREFIXES
    )


def status_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """The code and details of a failed sync or asyncio call (UNKNOWN when grpc gave none)."""
    # Both grpc's sync errors and grpc.aio.AioRpcError are also grpc.Call-like with these methods.
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = details_of() if callable(details_of) else None
    return code, details or code.name.lower().replace("_", " ")


_TLS_FAILURE_WORDS = ("ssl", "handshake", "certificate", "tls")


def _tls_hint(details: str) -> str:
    """A connection failure's details, with what to check first when TLS is what failed."""
    if not any(word in details.lower() for word in _TLS_FAILURE_WORDS):
        return details
    return (
        f"the TLS handshake failed: check that the server serves TLS and that FEATURELENS_TLS_CA_FILE "
        f"(or tls=TlsConfig(ca_file=...)) names the CA that signed its certificate ({details})"
    )


def from_rpc_error(
    error: grpc.RpcError, request_id: str | None = None, *, deadline_passed: bool = False
) -> FeaturelensError:
    """The SDK error for a failed sync or asyncio gRPC call.

    ``deadline_passed`` says that the call's own deadline has passed, which makes a
    DEADLINE_EXCEEDED the client's timeout rather than one the server reports for its own calls.
    """
    code, details = status_of(error)
    cls: type[APIStatusError] = _ERROR_BY_CODE.get(code, APIStatusError)
    if is_connection_failure(code, details):
        cls = APIConnectionError
        details = _tls_hint(details)
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline_passed:
        cls = APITimeoutError
    return cls(code, details, request_id)
