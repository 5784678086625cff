"""Channels and calls: request ids, deadlines, retries and gRPC errors turned into SDK errors (internal).

The sync and asyncio clients share everything except how a call is made (and how it waits
between attempts), which lives here. A call's ``timeout`` bounds the whole call, its retries and
the waits between them included, as a gRPC deadline does; each attempt gets what is left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import grpc
from grpc import aio

from featurelens.client.attempts import Attempts
from featurelens.client.options import DEFAULT_TIMEOUT_S, NOT_GIVEN, CallOptions, NotGiven
from featurelens.client.security import ChannelSecurity
from featurelens.wire.metadata import REQUEST_ID_KEY, new_request_id

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# DEFAULT_TIMEOUT_S, REQUEST_ID_KEY and new_request_id lived here before; kept importable from here.
__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_TIMEOUT_S",
    "REQUEST_ID_KEY",
    "AsyncTransport",
    "SyncTransport",
    "channel_options",
    "new_request_id",
]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
StubT = TypeVar("StubT")


def channel_options(max_message_bytes: int) -> list[tuple[str, int | str]]:
    """Channel arguments matching the servers' message limits."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


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
    """One blocking channel to one address, and the options its calls get.

    Transports made by ``with_options`` share the channel; closing any of them closes it.
    """

    def __init__(
        self,
        address: str,
        channel: grpc.Channel,
        options: CallOptions,
        security: ChannelSecurity | None = None,
    ) -> None:
        self.address = address
        self.channel = channel
        self.options = options
        self.security = security if security is not None else ChannelSecurity()
        self._credentials = self.security.metadata()

    @classmethod
    def open(
        cls,
        address: str,
        *,
        options: CallOptions,
        max_message_bytes: int,
        security: ChannelSecurity | None = None,
    ) -> SyncTransport:
        security = security if security is not None else ChannelSecurity()
        channel = security.sync_channel(address, channel_options(max_message_bytes))
        return cls(address, channel, options, security)

    def with_options(self, options: CallOptions) -> SyncTransport:
        """A transport on the same channel whose calls get ``options``."""
        return SyncTransport(self.address, self.channel, options, self.security)

    def unary(
        self,
        method: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        rpc: str,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> ResponseT:
        """Make a unary call, retried as ``featurelens.client.retries`` says for ``rpc``."""
        attempts = Attempts(rpc, self.options, self.options.unary_timeout(timeout), self._credentials)
        while True:
            try:
                return method(request, timeout=attempts.timeout(), metadata=attempts.metadata())
            except grpc.RpcError as error:
                delay = attempts.next_delay(error)
                if delay is None:
                    raise attempts.error(error) from error
            time.sleep(delay)

    def server_stream(
        self,
        method: grpc.UnaryStreamMultiCallable[RequestT, ResponseT],
        request: RequestT,
        timeout_s: float | None,
        *,
        rpc: str | None = None,
    ) -> Iterator[ResponseT]:
        """Iterate the responses of a server-streaming call; cancels it when left early.

        A retried ``rpc`` is tried again only while no response has reached the caller.
        """
        attempts = Attempts(rpc, self.options, timeout_s, self._credentials)
        while True:
            call: Any = method(request, timeout=attempts.timeout(), metadata=attempts.metadata())
            received = False
            try:
                for response in call:
                    received = True
                    yield response
                return
            except grpc.RpcError as error:
                delay = None if received else attempts.next_delay(error)
                if delay is None:
                    raise attempts.error(error) from error
            finally:
                # A no-op once the call has ended; stops the server's work when the caller broke off.
                call.cancel()
            time.sleep(delay)

    def bidi_stream(
        self,
        method: grpc.StreamStreamMultiCallable[RequestT, ResponseT],
        requests: Iterable[RequestT],
        timeout_s: float | None,
    ) -> Iterator[ResponseT]:
        """Send requests as the server reads them and iterate its responses; never retried."""
        attempts = Attempts(None, self.options, timeout_s, self._credentials)
        feed = _Requests(requests)
        call: Any = method(feed.sync(), timeout=attempts.timeout(), metadata=attempts.metadata())
        try:
            yield from call
        except grpc.RpcError as error:
            if feed.error is not None:
                raise feed.error from None
            raise attempts.error(error) from error
        finally:
            call.cancel()

    def close(self) -> None:
        self.channel.close()


class _AioChannel:
    """An asyncio channel opened on first use inside the running event loop, and its stubs."""

    def __init__(self, address: str, max_message_bytes: int, security: ChannelSecurity) -> None:
        self.address = address
        self._max_message_bytes = max_message_bytes
        self.security = security
        self._channel: aio.Channel | None = None
        self._stubs: dict[str, Any] = {}

    @property
    def channel(self) -> aio.Channel:
        # An aio channel belongs to the loop it was made in, so it is made where it is first used.
        if self._channel is None:
            self._channel = self.security.aio_channel(self.address, channel_options(self._max_message_bytes))
        return self._channel

    def stub(self, name: str, factory: Callable[[aio.Channel], StubT]) -> StubT:
        if name not in self._stubs:
            self._stubs[name] = factory(self.channel)
        return self._stubs[name]

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None
            self._stubs.clear()


class AsyncTransport:
    """One asyncio channel to one address, and the options its calls get.

    The channel opens on first use inside the running event loop. Transports made by
    ``with_options`` share it; closing any of them closes it (using one again reopens it).
    Waits between attempts are ``asyncio.sleep``: the event loop keeps running.
    """

    def __init__(self, address: str, shared: _AioChannel, options: CallOptions) -> None:
        self.address = address
        self.options = options
        self._shared = shared
        self._credentials = shared.security.metadata()

    @classmethod
    def open(
        cls,
        address: str,
        *,
        options: CallOptions,
        max_message_bytes: int,
        security: ChannelSecurity | None = None,
    ) -> AsyncTransport:
        security = security if security is not None else ChannelSecurity()
        return cls(address, _AioChannel(address, max_message_bytes, security), options)

    def with_options(self, options: CallOptions) -> AsyncTransport:
        """A transport on the same channel whose calls get ``options``."""
        return AsyncTransport(self.address, self._shared, options)

    @property
    def channel(self) -> aio.Channel:
        return self._shared.channel

    def stub(self, name: str, factory: Callable[[aio.Channel], StubT]) -> StubT:
        """The stub ``name`` on this transport's channel, made once per channel."""
        return self._shared.stub(name, factory)

    async def unary(
        self,
        method: aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        rpc: str,
        timeout: float | NotGiven | None = NOT_GIVEN,
    ) -> ResponseT:
        """Make a unary call, retried as ``featurelens.client.retries`` says for ``rpc``."""
        attempts = Attempts(rpc, self.options, self.options.unary_timeout(timeout), self._credentials)
        while True:
            try:
                return await method(request, timeout=attempts.timeout(), metadata=attempts.metadata())
            except grpc.RpcError as error:
                delay = attempts.next_delay(error)
                if delay is None:
                    raise attempts.error(error) from error
            await asyncio.sleep(delay)

    async def server_stream(
        self,
        method: aio.UnaryStreamMultiCallable[RequestT, ResponseT],
        request: RequestT,
        timeout_s: float | None,
        *,
        rpc: str | None = None,
    ) -> AsyncIterator[ResponseT]:
        """Iterate the responses of a server-streaming call; cancels it when left early.

        A retried ``rpc`` is tried again only while no response has reached the caller.
        """
        attempts = Attempts(rpc, self.options, timeout_s, self._credentials)
        while True:
            call: Any = method(request, timeout=attempts.timeout(), metadata=attempts.metadata())
            received = False
            try:
                async for response in call:
                    received = True
                    yield response
                return
            except grpc.RpcError as error:
                delay = None if received else attempts.next_delay(error)
                if delay is None:
                    raise attempts.error(error) from error
            finally:
                call.cancel()
            await asyncio.sleep(delay)

    async def bidi_stream(
        self,
        method: aio.StreamStreamMultiCallable[RequestT, ResponseT],
        requests: Iterator[RequestT] | AsyncIterator[RequestT],
        timeout_s: float | None,
    ) -> AsyncIterator[ResponseT]:
        """Send requests as the server reads them and iterate its responses; never retried."""
        attempts = Attempts(None, self.options, timeout_s, self._credentials)
        feed = _Requests(requests)
        call: Any = method(feed.asynchronous(), timeout=attempts.timeout(), metadata=attempts.metadata())
        try:
            async for response in call:
                yield response
        except grpc.RpcError as error:
            if feed.error is not None:
                raise feed.error from None
            raise attempts.error(error) from error
        except asyncio.CancelledError:
            # grpc cancels the call when the request iterator fails; anything else is a real cancel.
            if feed.error is not None:
                raise feed.error from None
            raise
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._shared.close()
