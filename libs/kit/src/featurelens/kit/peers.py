"""Calls from one featurelens service to another: channel, deadline, errors that name the peer.

A service that calls another (search calls encoder and sae; labelling and family call search)
holds one ``Peer`` per dependency and awaits its generated stub calls through ``Peer.call``:

    stub = encoder_pb2_grpc.EncoderServiceStub(encoder.channel)
    reply = await encoder.call(stub.Embed(request, timeout=encoder.timeout_s))

A peer that cannot be reached becomes UNAVAILABLE naming it and its address; one that does not
answer in time, DEADLINE_EXCEEDED; what it refuses keeps its code, with the peer's sentence.
Every call carries the id of the request being served as ``x-request-id``, so the log lines of
one user request can be joined across services, and (when tracing is on) the W3C trace context of
the span being served, so its trace continues in the peer (``featurelens.kit.tracing``).

Every call also carries this service's credentials (``featurelens.kit.auth.PeerSecurity``: the key
of ``peer_api_key_file``, TLS verified against ``peer_tls_ca_file``). They are the process's, set
once by the runner or the embedded host with ``set_peer_security`` before any servicer is built,
so that every service's peers carry them without each service passing them along; a ``Peer``
given ``security=`` uses its own.

In the embedded mode (one process, one port) the host registers its servicers as served in
process at its own address (``serve_in_process``); a peer at that address hands them out
(``Peer.in_process``) so that a hot call can skip the loopback gRPC hop (~1 ms per call on 2
cores). ``Peer.call_in_process`` awaits such a call with the same deadline and turns what it
raises into the same error a gRPC call would have given: one rule for both routes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

import grpc
from grpc import aio

from featurelens.kit import tracing
from featurelens.kit.auth import PeerSecurity
from featurelens.kit.context import current_request_id
from featurelens.kit.errors import (
    DeadlineExceededError,
    ServiceError,
    UnavailableError,
    error_for_status,
    status_for,
)
from featurelens.kit.interceptor import served_in_process
from featurelens.kit.redaction import status_detail
from featurelens.kit.server import channel_options
from featurelens.wire.metadata import REQUEST_ID_KEY

logger = logging.getLogger(__name__)

T = TypeVar("T")

_process_security = PeerSecurity()
#: Servicers served in this process, by (the address they are served at, full service name).
_in_process: dict[tuple[str, str], object] = {}


def set_peer_security(security: PeerSecurity) -> None:
    """The credentials every ``Peer`` of this process uses from now on, unless given its own."""
    global _process_security
    _process_security = security


def serve_in_process(address: str, servicers: Iterable[Any]) -> None:
    """Make ``servicers`` (each with ``service_names``) callable in process by peers at ``address``."""
    for servicer in servicers:
        for service_name in getattr(servicer, "service_names", ()):
            _in_process[(address, service_name)] = servicer


def stop_serving_in_process(address: str) -> None:
    """Forget the servicers registered at ``address`` (the server there stopped)."""
    for key in [key for key in _in_process if key[0] == address]:
        del _in_process[key]


def peer_security() -> PeerSecurity:
    """The credentials of this process's peer calls (none until ``set_peer_security``)."""
    return _process_security


def _with_call_metadata(
    details: aio.ClientCallDetails, extra: tuple[tuple[str, str], ...]
) -> aio.ClientCallDetails:
    """The call's details with the current request id (unless the caller set one itself),
    ``extra`` (the credentials) and, when tracing is on, the current span's trace context added."""
    request_id = current_request_id()
    metadata = aio.Metadata(*details.metadata) if details.metadata is not None else aio.Metadata()
    added = False
    if request_id is not None and REQUEST_ID_KEY not in metadata:
        metadata.add(REQUEST_ID_KEY, request_id)
        added = True
    for key, value in (*extra, *tracing.inject()):
        if key not in metadata:
            metadata.add(key, value)
            added = True
    if not added:
        return details
    return aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


# grpc.aio files an interceptor under the first of the four kinds it is an instance of, so each
# kind of call needs its own class.
class _Metadata:
    def __init__(self, extra: tuple[tuple[str, str], ...]) -> None:
        self.extra = extra


class _UnaryUnary(_Metadata, aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_call_metadata(client_call_details, self.extra), request)


class _UnaryStream(_Metadata, aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_call_metadata(client_call_details, self.extra), request)


class _StreamUnary(_Metadata, aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(_with_call_metadata(client_call_details, self.extra), request_iterator)


class _StreamStream(_Metadata, aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(_with_call_metadata(client_call_details, self.extra), request_iterator)


def request_id_interceptors(extra: tuple[tuple[str, str], ...] = ()) -> list[aio.ClientInterceptor]:
    """Client interceptors that send the id of the request being served as ``x-request-id``, and
    ``extra`` metadata (the credentials) with every call."""
    interceptors: list[object] = [
        _UnaryUnary(extra),
        _UnaryStream(extra),
        _StreamUnary(extra),
        _StreamStream(extra),
    ]
    # grpc-stubs leave the union of the four kinds of interceptor to the caller to cast.
    return cast("list[aio.ClientInterceptor]", interceptors)


def peer_channel(
    address: str, max_message_bytes: int = 64 * 1024 * 1024, security: PeerSecurity | None = None
) -> aio.Channel:
    """An aio channel to another featurelens service that passes the request id on and carries
    ``security`` (None: the process's, ``set_peer_security``)."""
    security = security if security is not None else _process_security
    options = channel_options(max_message_bytes)
    interceptors = request_id_interceptors(security.metadata())
    credentials = security.channel_credentials()
    if credentials is None:
        return aio.insecure_channel(address, options=options, interceptors=interceptors)
    return aio.secure_channel(address, credentials, options=options, interceptors=interceptors)


class Peer:
    """One service this service calls: its name, address, deadline and channel.

    The channel opens on first use, inside the running event loop (an aio channel belongs to the
    loop it was made in, and a service builds its peers before the loop starts). ``address`` may
    be changed before that, or after ``close()``: the next call opens a channel to the new one.
    """

    def __init__(
        self,
        name: str,
        address: str,
        timeout_s: float,
        *,
        max_message_bytes: int = 64 * 1024 * 1024,
        security: PeerSecurity | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes
        #: None: the process's credentials when the channel opens (``set_peer_security``).
        self.security = security
        self._channel: aio.Channel | None = None

    @property
    def channel(self) -> aio.Channel:
        if self._channel is None:
            self._channel = peer_channel(self.address, self.max_message_bytes, self.security)
        return self._channel

    @property
    def where(self) -> str:
        """The peer as the error sentences name it: "the encoder service at host:port"."""
        return f"the {self.name} service at {self.address}"

    async def call(self, call: Awaitable[T]) -> T:
        """Await a stub call; a failed status becomes the service error that says what happened."""
        try:
            return await call
        except aio.AioRpcError as error:
            raise self.error(error) from None

    def in_process(self, service_name: str) -> Any | None:
        """The servicer of ``service_name`` when this process serves it at this peer's address."""
        return _in_process.get((self.address, service_name))

    async def call_in_process(self, method: str, call: Awaitable[T]) -> T:
        """Await a call of a servicer from ``in_process`` as ``call`` awaits its gRPC twin: served
        as the server's interceptor serves ``method`` (its request line, metrics and span), with
        the same deadline, and what the servicer raises mapped as its status code would be (the
        interceptor's table and this peer's ``error``, composed)."""
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                return await served_in_process(method, call)
        except TimeoutError:
            if not deadline.expired():
                raise self._in_process_error(TimeoutError()) from None
            raise DeadlineExceededError(f"{self.where} did not answer within {self.timeout_s:g} s") from None
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as error:
            raise self._in_process_error(error) from None

    def _in_process_error(self, error: Exception) -> ServiceError:
        code = status_for(error)
        if code is None:  # served_in_process logged it; the caller sees what gRPC would show
            request_id = current_request_id() or "-"
            details = f"internal error; quote request id {request_id} to the operator"
            return self.status_error(grpc.StatusCode.INTERNAL, details)
        return self.status_error(code, status_detail(str(error)) or code.name)

    def error(self, error: aio.AioRpcError) -> ServiceError:
        """The service error this service reports when the peer answered ``error``."""
        code = error.code()
        return self.status_error(code, error.details() or code.name)

    def status_error(self, code: grpc.StatusCode, details: str) -> ServiceError:
        """The service error this service reports when the peer answered ``code`` with ``details``."""
        if code == grpc.StatusCode.UNAVAILABLE:
            logger.warning("%s is unavailable: %s", self.where, details)
            return UnavailableError(f"{self.where} is unavailable ({details})")
        if code == grpc.StatusCode.UNAUTHENTICATED:
            # This service's own credentials are wrong, not its caller's: an operator must act.
            logger.warning("%s refused this service's API key: %s", self.where, details)
            return UnavailableError(
                f"{self.where} refused this service's credentials ({details}); its operator must set "
                "the PEER_API_KEY_FILE setting to a key that service accepts"
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceededError(f"{self.where} did not answer within {self.timeout_s:g} s")
        # What a peer refuses for a reason the caller can act on keeps its code; the rest
        # (INTERNAL, UNIMPLEMENTED, CANCELLED ...) means the peer cannot do its part right now.
        kept = error_for_status(code)
        if kept is not None:
            return kept(f"the {self.name} service refused the call: {details}")
        logger.warning("%s failed with %s: %s", self.where, code.name, details)
        return UnavailableError(f"{self.where} failed ({code.name}: {details})")

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
