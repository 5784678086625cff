"""Domain errors and the one table that maps them to gRPC status codes.

Servicers raise these (or core-library errors registered with ``register_error``); the
request interceptor turns them into a status code and the error's sentence. Anything not in
the table becomes INTERNAL with the request id, never a stack trace to the caller.
"""

from __future__ import annotations

import grpc

from featurelens.steering import InterventionError
from featurelens.store.errors import CollectionNotFoundError, InvalidQueryError, StoreUnavailableError


class ServiceError(Exception):
    """Base of errors a service reports to its caller; the message is shown to them."""


class InvalidArgumentError(ServiceError, ValueError):
    """The request is malformed: wrong dimensions, NaN, empty text, out-of-range ids."""


class NotFoundError(ServiceError, LookupError):
    """A named thing (SAE, model, corpus, feature, family) does not exist."""


class AlreadyExistsError(ServiceError):
    """The thing to create exists already."""


class FailedPreconditionError(ServiceError):
    """The system is not in a state that allows the call (e.g. no SAE trained yet)."""


class PermissionDeniedError(ServiceError):
    """The request asks for something no client may have (e.g. a server path outside the allowed roots)."""


class UnauthenticatedError(ServiceError):
    """The call carries no API key, or one the server does not accept (``featurelens.kit.auth``)."""


class UnavailableError(ServiceError):
    """A dependency (encoder, sae, Qdrant, an LLM endpoint) cannot be reached."""


class ResourceExhaustedError(ServiceError):
    """A limit was hit: too many texts, message too large, quota."""


class DeadlineExceededError(ServiceError):
    """A dependency did not answer in time."""


_STATUS_BY_ERROR: dict[type[BaseException], grpc.StatusCode] = {
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
    # Core errors every service meets: a request breaking the steering rule is bad input.
    InterventionError: grpc.StatusCode.INVALID_ARGUMENT,
    # The storage port's errors, for a store call no service turned into a sentence of its own.
    InvalidQueryError: grpc.StatusCode.INVALID_ARGUMENT,
    CollectionNotFoundError: grpc.StatusCode.NOT_FOUND,
    StoreUnavailableError: grpc.StatusCode.UNAVAILABLE,
}


#: The domain error of each status code, for the other direction (a peer's status → this service's
#: error); read from the table above so the two directions never disagree.
_ERROR_BY_STATUS: dict[grpc.StatusCode, type[ServiceError]] = {
    code: error for error, code in _STATUS_BY_ERROR.items() if issubclass(error, ServiceError)
}
_ERROR_BY_STATUS[grpc.StatusCode.OUT_OF_RANGE] = InvalidArgumentError


def error_for_status(code: grpc.StatusCode) -> type[ServiceError] | None:
    """The domain error that stands for ``code`` (OUT_OF_RANGE is bad input); None for the rest."""
    return _ERROR_BY_STATUS.get(code)


def register_error(error: type[BaseException], code: grpc.StatusCode) -> None:
    """Map a library's exception type (and its subclasses) to a status code."""
    _STATUS_BY_ERROR[error] = code


def status_for(error: BaseException) -> grpc.StatusCode | None:
    """The status code for an error, by its nearest registered class; None if unmapped."""
    for cls in type(error).__mro__:
        code = _STATUS_BY_ERROR.get(cls)
        if code is not None:
            return code
    return None
