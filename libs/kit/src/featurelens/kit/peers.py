"""Calls from one featurelens service to another: channel, deadline, errors that name the peer.

A service that calls another (search calls encoder and sae; labelling and family call search)
holds one ``Peer`` per dependency and awaits its generated stub calls through ``Peer.call``:

    stub = encoder_pb2_grpc.EncoderServiceStub(encoder.channel)
    reply = await encoder.call(stub.Embed(request, timeout=encoder.timeout_s))

A peer that cannot be reached becomes UNAVAILABLE naming it and its address; one that does not
answer in time, DEADLINE_EXCEEDED; what it refuses keeps its code, with the peer's sentence.
Every call carries the id of the request being served as ``x-request-id``, so the log lines of
one user request can be joined across services.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
from grpc import aio

from featurelens.kit.context import current_request_id
from featurelens.kit.errors import (
    DeadlineExceededError,
    ServiceError,
    UnavailableError,
    error_for_status,
)
from featurelens.kit.server import channel_options
from featurelens.wire.metadata import REQUEST_ID_KEY

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _with_request_id(details: aio.ClientCallDetails) -> aio.ClientCallDetails:
    """The call's details with the current request id added, unless the caller set one itself."""
    request_id = current_request_id()
    if request_id is None:
        return details
    metadata = aio.Metadata(*details.metadata) if details.metadata is not None else aio.Metadata()
    if REQUEST_ID_KEY in metadata:
        return details
    metadata.add(REQUEST_ID_KEY, request_id)
    return aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


# grpc.aio files an interceptor under the first of the four kinds it is an instance of, so each
# kind of call needs its own class.
class _UnaryUnary(aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_request_id(client_call_details), request)


class _UnaryStream(aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_request_id(client_call_details), request)


class _StreamUnary(aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(_with_request_id(client_call_details), request_iterator)


class _StreamStream(aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(_with_request_id(client_call_details), request_iterator)


def request_id_interceptors() -> list[aio.ClientInterceptor]:
    """Client interceptors that send the id of the request being served as ``x-request-id``."""
    interceptors: list[object] = [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
    # grpc-stubs leave the union of the four kinds of interceptor to the caller to cast.
    return cast("list[aio.ClientInterceptor]", interceptors)


def peer_channel(address: str, max_message_bytes: int = 64 * 1024 * 1024) -> aio.Channel:
    """An aio channel to another featurelens service that passes the request id on."""
    return aio.insecure_channel(
        address, options=channel_options(max_message_bytes), interceptors=request_id_interceptors()
    )


class Peer:
    """One service this service calls: its name, address, deadline and channel.

    The channel opens on first use, inside the running event loop (an aio channel belongs to the
    loop it was made in, and a service builds its peers before the loop starts). ``address`` may
    be changed before that, or after ``close()``: the next call opens a channel to the new one.
    """

    def __init__(
        self, name: str, address: str, timeout_s: float, *, max_message_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.name = name
        self.address = address
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes
        self._channel: aio.Channel | None = None

    @property
    def channel(self) -> aio.Channel:
        if self._channel is None:
            self._channel = peer_channel(self.address, self.max_message_bytes)
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

    def error(self, error: aio.AioRpcError) -> ServiceError:
        """The service error this service reports when the peer answered ``error``."""
        code = error.code()
        details = error.details() or code.name
        if code == grpc.StatusCode.UNAVAILABLE:
            logger.warning("%s is unavailable: %s", self.where, details)
            return UnavailableError(f"{self.where} is unavailable ({details})")
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
