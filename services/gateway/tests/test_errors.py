"""The one table of errors: each SDK error (one per gRPC status) and its HTTP status."""

from __future__ import annotations

import grpc
import pytest

from featurelens.client import errors as sdk
from featurelens.services.gateway.errors import HTTP_STATUS, code_of_http_status, http_status

EXPECTED = [
    (sdk.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (sdk.OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE, 400),
    (sdk.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED, 401),
    (sdk.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED, 403),
    (sdk.NotFoundError, grpc.StatusCode.NOT_FOUND, 404),
    (sdk.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS, 409),
    (sdk.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION, 409),
    (sdk.AbortedError, grpc.StatusCode.ABORTED, 409),
    (sdk.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (sdk.CallCancelledError, grpc.StatusCode.CANCELLED, 499),
    (sdk.InternalServerError, grpc.StatusCode.INTERNAL, 500),
    (sdk.InternalServerError, grpc.StatusCode.UNKNOWN, 500),
    (sdk.InternalServerError, grpc.StatusCode.DATA_LOSS, 500),
    (sdk.UnimplementedError, grpc.StatusCode.UNIMPLEMENTED, 501),
    (sdk.UnavailableError, grpc.StatusCode.UNAVAILABLE, 503),
    (sdk.APIConnectionError, grpc.StatusCode.UNAVAILABLE, 503),
    (sdk.DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (sdk.APITimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED, 504),
]


@pytest.mark.parametrize(("cls", "code", "status"), EXPECTED, ids=lambda v: getattr(v, "__name__", str(v)))
def test_each_sdk_error_maps_to_its_http_status(
    cls: type[sdk.APIStatusError], code: grpc.StatusCode, status: int
) -> None:
    assert http_status(cls(code, "what went wrong", "req-1")) == status


def test_every_error_class_of_the_sdk_is_in_the_table_or_under_one_that_is() -> None:
    classes = {cls for cls, _, _ in EXPECTED}

    assert set(HTTP_STATUS) <= classes
    assert all(any(issubclass(cls, listed) for listed in HTTP_STATUS) for cls in classes)


def test_a_status_the_sdk_has_no_class_for_is_a_500() -> None:
    assert http_status(sdk.APIStatusError(grpc.StatusCode.UNKNOWN, "?")) == 500


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "NOT_FOUND"),
        (405, "UNIMPLEMENTED"),
        (413, "RESOURCE_EXHAUSTED"),
        (418, "INVALID_ARGUMENT"),
        (502, "INTERNAL"),
    ],
)
def test_the_gateways_own_http_refusals_get_the_nearest_grpc_name(status: int, code: str) -> None:
    assert code_of_http_status(status) == code
