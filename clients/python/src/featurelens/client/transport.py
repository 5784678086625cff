"""Channels and calls: request ids, timeouts and gRPC errors turned into SDK errors (internal).

The sync and asyncio clients share everything except how a call is made, which lives here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import grpc
from grpc import aio

from featurelens.client.errors import from_rpc_error

REQUEST_ID_KEY = "x-request-id"
DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
StubT = TypeVar("StubT")


def new_request_id() -> str:
    """A fresh id for one call, sent as ``x-request-id`` and kept on any error."""
    return uuid.uuid4().hex[:16]


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel arguments matching the servers' message limits."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def _metadata(request_id: str) -> tuple[tuple[str, str], ...]:
    return ((REQUEST_ID_KEY, request_id),)


class _Requests(Generic[RequestT]):
    """Feeds a call its requests and keeps the error that stopped them.

    grpc consumes request iterators on its own thread or task and reports their failure as a
    bare UNKNOWN status (sync) or a cancellation (asyncio); the caller should see their error.
    """

    def __init__(self, requests: Iterable[RequestT] | AsyncIterator[RequestT]) -> None:
        self._requests = requests
        self.error: Exception | None = None

    def sync(self) -> Iterator[RequestT]:
        assert isinstance(self._requests, Iterable)
        try:
            yield from self._requests
        except Exception as error:
            self.error = error
            raise

    async def asynchronous(self) -> AsyncIterator[RequestT]:
        try:
            if isinstance(self._requests, AsyncIterator):
                async for request in self._requests:
                    yield request
            else:
                for request in self._requests:
                    yield request
        except Exception as error:
            self.error = error
            raise


class SyncTransport:
    """One blocking channel to one address."""

    def __init__(self, address: str, *, timeout_s: float | None, max_message_bytes: int) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.channel = grpc.insecure_channel(address, options=channel_options(max_message_bytes))

    def unary(
        self, method: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT], request: RequestT
    ) -> ResponseT:
        """Make a unary call with the client's timeout."""
        request_id = new_request_id()
        try:
            return method(request, timeout=self.timeout_s, metadata=_metadata(request_id))
        except grpc.RpcError as error:
            raise from_rpc_error(error, request_id) from error

    def server_stream(
        self,
        method: grpc.UnaryStreamMultiCallable[RequestT, ResponseT],
        request: RequestT,
        timeout_s: float | None,
    ) -> Iterator[ResponseT]:
        """Iterate the responses of a server-streaming call; cancels it when left early."""
        request_id = new_request_id()
        call: Any = method(request, timeout=timeout_s, metadata=_metadata(request_id))
        yield from self._drain(call, request_id, None)

    def bidi_stream(
        self,
        method: grpc.StreamStreamMultiCallable[RequestT, ResponseT],
        requests: Iterable[RequestT],
        timeout_s: float | None,
    ) -> Iterator[ResponseT]:
        """Send requests as the server reads them and iterate its responses."""
        request_id = new_request_id()
        feed = _Requests(requests)
        call: Any = method(feed.sync(), timeout=timeout_s, metadata=_metadata(request_id))
        yield from self._drain(call, request_id, feed)

    @staticmethod
    def _drain(call: Any, request_id: str, feed: _Requests[Any] | None) -> Iterator[Any]:
        try:
            yield from call
        except grpc.RpcError as error:
            if feed is not None and feed.error is not None:
                raise feed.error from None
            raise from_rpc_error(error, request_id) from error
        finally:
            # A no-op once the call has ended; stops the server's work when the caller broke off.
            call.cancel()

    def close(self) -> None:
        self.channel.close()


class AsyncTransport:
    """One asyncio channel to one address, opened on first use inside the running event loop."""

    def __init__(self, address: str, *, timeout_s: float | None, max_message_bytes: int) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._max_message_bytes = max_message_bytes
        self._channel: aio.Channel | None = None
        self._stubs: dict[str, Any] = {}

    @property
    def channel(self) -> aio.Channel:
        # An aio channel belongs to the loop it was made in, so it is made where it is first used.
        if self._channel is None:
            self._channel = aio.insecure_channel(
                self.address, options=channel_options(self._max_message_bytes)
            )
        return self._channel

    def stub(self, name: str, factory: Callable[[aio.Channel], StubT]) -> StubT:
        """The stub ``name`` on this transport's channel, made once per channel."""
        if name not in self._stubs:
            self._stubs[name] = factory(self.channel)
        return self._stubs[name]

    async def unary(
        self, method: aio.UnaryUnaryMultiCallable[RequestT, ResponseT], request: RequestT
    ) -> ResponseT:
        """Make a unary call with the client's timeout."""
        request_id = new_request_id()
        try:
            return await method(request, timeout=self.timeout_s, metadata=_metadata(request_id))
        except grpc.RpcError as error:
            raise from_rpc_error(error, request_id) from error

    async def server_stream(
        self,
        method: aio.UnaryStreamMultiCallable[RequestT, ResponseT],
        request: RequestT,
        timeout_s: float | None,
    ) -> AsyncIterator[ResponseT]:
        """Iterate the responses of a server-streaming call; cancels it when left early."""
        request_id = new_request_id()
        call: Any = method(request, timeout=timeout_s, metadata=_metadata(request_id))
        async for response in self._drain(call, request_id, None):
            yield response

    async def bidi_stream(
        self,
        method: aio.StreamStreamMultiCallable[RequestT, ResponseT],
        requests: Iterator[RequestT] | AsyncIterator[RequestT],
        timeout_s: float | None,
    ) -> AsyncIterator[ResponseT]:
        """Send requests as the server reads them and iterate its responses."""
        request_id = new_request_id()
        feed = _Requests(requests)
        call: Any = method(feed.asynchronous(), timeout=timeout_s, metadata=_metadata(request_id))
        async for response in self._drain(call, request_id, feed):
            yield response

    @staticmethod
    async def _drain(call: Any, request_id: str, feed: _Requests[Any] | None) -> AsyncIterator[Any]:
        try:
            async for response in call:
                yield response
        except grpc.RpcError as error:
            if feed is not None and feed.error is not None:
                raise feed.error from None
            raise from_rpc_error(error, request_id) from error
        except asyncio.CancelledError:
            # grpc cancels the call when the request iterator fails; anything else is a real cancel.
            if feed is not None and feed.error is not None:
                raise feed.error from None
            raise
        finally:
            call.cancel()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None
            self._stubs.clear()
