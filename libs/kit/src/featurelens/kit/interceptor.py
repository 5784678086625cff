"""Server interceptor: request id, one log line per call, domain errors → status codes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from featurelens.kit.context import reset_request_id, set_request_id
from featurelens.kit.errors import status_for
from featurelens.wire.metadata import REQUEST_ID_KEY

logger = logging.getLogger("featurelens.kit.requests")

_QUIET_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _request_id(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex[:16]


class _CallTracker:
    """Logs a call once it ends and maps an escaping exception to a status."""

    def __init__(self, method: str, request_id: str) -> None:
        self.method = method
        self.request_id = request_id
        self.started = time.perf_counter()
        self.quiet = method.startswith(_QUIET_SERVICES)

    async def fail(self, context: aio.ServicerContext, error: BaseException) -> None:
        if isinstance(error, aio.AbortError):
            raise error
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            self.log("CANCELLED")
            raise error
        code = status_for(error)
        if code is None:
            logger.exception("%s failed with an unexpected error", self.method)
            details = f"internal error; quote request id {self.request_id} to the operator"
            await context.abort(grpc.StatusCode.INTERNAL, details)
        self.log(code.name, str(error))
        await context.abort(code, str(error) or code.name)

    def log(self, outcome: str, detail: str = "") -> None:
        # Probes and grpcurl's reflection would drown the service's own lines; their failures still log.
        if self.quiet and outcome in ("OK", "CANCELLED"):
            return
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        level = logging.INFO if outcome in ("OK", "CANCELLED") else logging.WARNING
        if detail:
            logger.log(level, "%s %s %.1fms: %s", self.method, outcome, elapsed_ms, detail)
        else:
            logger.log(level, "%s %s %.1fms", self.method, outcome, elapsed_ms)


class RequestInterceptor(aio.ServerInterceptor):
    """Wraps every handler with request-id binding, logging and error mapping."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        request_id = _request_id(handler_call_details)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, request_id),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method, request_id),
                handler.request_deserializer,
                handler.response_serializer,
            )
        streaming = handler.unary_stream or handler.stream_stream
        # A streaming handler either yields its responses (async generator) or writes them with
        # context.write() and returns a coroutine (the standard health Watch does), and each
        # needs its own kind of wrapper.
        if inspect.iscoroutinefunction(streaming):
            wrapped = self._wrap_unary(streaming, method, request_id)
        else:
            wrapped = self._wrap_stream(streaming, method, request_id)
        make_handler = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        return make_handler(wrapped, handler.request_deserializer, handler.response_serializer)

    @staticmethod
    def _wrap_unary(behavior: Any, method: str, request_id: str) -> Any:
        async def wrapper(request: Any, context: aio.ServicerContext) -> Any:
            token = set_request_id(request_id)
            tracker = _CallTracker(method, request_id)
            try:
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
                response = behavior(request, context)
                if inspect.isawaitable(response):
                    response = await response
            except BaseException as error:
                await tracker.fail(context, error)
                raise
            else:
                tracker.log("OK")
                return response
            finally:
                reset_request_id(token)

        return wrapper

    @staticmethod
    def _wrap_stream(behavior: Any, method: str, request_id: str) -> Any:
        async def wrapper(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            token = set_request_id(request_id)
            tracker = _CallTracker(method, request_id)
            try:
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
                async for response in behavior(request, context):
                    yield response
            except BaseException as error:
                await tracker.fail(context, error)
                raise
            else:
                tracker.log("OK")
            finally:
                # grpc may close the generator after the client went away from another context,
                # where the token cannot be reset; that context never saw the id, so skip it.
                with contextlib.suppress(ValueError):
                    reset_request_id(token)

        return wrapper
