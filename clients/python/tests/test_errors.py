"""The SDK's error tree: one class per status, connection failures and timeouts told apart."""

from __future__ import annotations

import grpc
import pytest

import featurelens.client as sdk
from featurelens.client import (
    AbortedError,
    AlreadyExistsError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CallCancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    FeaturelensError,
    InternalServerError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from featurelens.client.errors import from_rpc_error, is_connection_failure
from featurelens.client.retries import Backoff, retry_delay, server_pushback_s

CLASS_BY_CODE = {
    grpc.StatusCode.CANCELLED: CallCancelledError,
    grpc.StatusCode.UNKNOWN: InternalServerError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalServerError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DATA_LOSS: InternalServerError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}


class FailedCall(grpc.RpcError):
    """What grpc raises for a failed call, reduced to the two methods the SDK reads."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_every_status_but_ok_has_its_own_status_error_class() -> None:
    assert set(CLASS_BY_CODE) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    for code, cls in CLASS_BY_CODE.items():
        error = from_rpc_error(FailedCall(code, "what happened"), "rid-1")

        assert type(error) is cls
        assert isinstance(error, APIStatusError)
        assert isinstance(error, FeaturelensError)
        assert (error.code, error.details, error.request_id) == (code, "what happened", "rid-1")
        assert str(error) == f"{code.name}: what happened (request id rid-1)"


def test_every_error_class_is_importable_from_the_package() -> None:
    classes = {*CLASS_BY_CODE.values(), APIConnectionError, APITimeoutError, APIStatusError, FeaturelensError}

    for cls in classes:
        assert getattr(sdk, cls.__name__) is cls
        assert cls.__name__ in sdk.__all__


def test_connection_errors_and_timeouts_refine_the_codes_they_carry() -> None:
    """Code written against UnavailableError and DeadlineExceededError keeps catching them."""
    assert issubclass(APIConnectionError, UnavailableError)
    assert issubclass(APITimeoutError, DeadlineExceededError)
    assert not issubclass(APITimeoutError, UnavailableError)


def test_a_deadline_is_a_timeout_error_only_when_the_calls_own_deadline_passed() -> None:
    failed = FailedCall(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    assert type(from_rpc_error(failed, deadline_passed=True)) is APITimeoutError
    assert type(from_rpc_error(failed, deadline_passed=False)) is DeadlineExceededError


@pytest.mark.parametrize(
    "details",
    [
        # What grpc 1.85 says for a closed port, an unreachable network, an unknown host and a
        # server killed mid-call (captured from real calls), and older grpc's DNS wording.
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:39209: "
        "Failed to connect to remote host: Connection refused",
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.255.255.1:50051: "
        "Failed to connect to remote host: getsockopt(SO_ERROR): Network is unreachable",
        "errors resolving nope.invalid:50051: [field:hostname lookup error:address lookup failed "
        "for nope.invalid:50051: Domain name not found]",
        "DNS resolution failed for nope.invalid:50051: C-ares status is not ARES_SUCCESS",
        "Stream removed (Socket closed)",
    ],
)
def test_unavailable_with_grpcs_own_connection_wording_is_a_connection_error(details: str) -> None:
    assert is_connection_failure(grpc.StatusCode.UNAVAILABLE, details)
    assert type(from_rpc_error(FailedCall(grpc.StatusCode.UNAVAILABLE, details))) is (APIConnectionError)


@pytest.mark.parametrize(
    "details",
    [
        # A server that could not reach its own dependency answered; the SDK's server is reachable.
        "the encoder service at 127.0.0.1:1 is unavailable (failed to connect to all addresses; "
        "last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused)",
        "Cancelling all calls",
        "the model is still loading",
    ],
)
def test_unavailable_said_by_a_server_is_not_a_connection_error(details: str) -> None:
    assert not is_connection_failure(grpc.StatusCode.UNAVAILABLE, details)
    assert type(from_rpc_error(FailedCall(grpc.StatusCode.UNAVAILABLE, details))) is (UnavailableError)


def test_the_backoff_doubles_from_half_a_second_to_eight_with_up_to_a_quarter_off() -> None:
    no_jitter = Backoff(random=lambda: 0.0)
    full_jitter = Backoff(random=lambda: 1.0)

    assert [no_jitter.delay(retry) for retry in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert [full_jitter.delay(retry) for retry in range(2)] == [0.375, 0.75]
    assert no_jitter.delay(10_000) == 8.0


def test_the_servers_pushback_is_read_from_the_trailing_metadata() -> None:
    assert server_pushback_s([("x-request-id", "a")]) is None
    assert server_pushback_s([("retry-after-ms", "250")]) == 0.25
    assert server_pushback_s([("grpc-retry-pushback-ms", "1500")]) == 1.5
    assert server_pushback_s([("grpc-retry-pushback-ms", "-1")]) == float("inf")
    assert server_pushback_s([("grpc-retry-pushback-ms", "soon")]) == float("inf")


def test_a_pushback_replaces_the_backoff_and_a_long_one_is_not_waited_for() -> None:
    backoff = Backoff(random=lambda: 0.0)
    read = "/featurelens.v1.SaeService/ListSaes"
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED

    assert retry_delay(read, grpc.StatusCode.UNAVAILABLE, None, 1, backoff) == 1.0
    assert retry_delay(read, grpc.StatusCode.UNAVAILABLE, 0.2, 1, backoff) == 0.2
    assert retry_delay(read, exhausted, None, 0, backoff) is None
    assert retry_delay(read, exhausted, 3.0, 0, backoff) == 3.0
    assert retry_delay(read, exhausted, 600.0, 0, backoff) is None
    assert retry_delay(read, grpc.StatusCode.INVALID_ARGUMENT, 0.2, 0, backoff) is None
    assert (
        retry_delay("/featurelens.v1.SaeService/Train", grpc.StatusCode.UNAVAILABLE, None, 0, backoff) is None
    )
