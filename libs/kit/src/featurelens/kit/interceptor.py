"""Server interceptor: request id, one log line per call, domain errors → status codes.

Every call a featurelens server serves passes through here, so what every answer must respect is
enforced once, for every RPC of every service:

- bytes that are not a valid protobuf message are INVALID_ARGUMENT with a sentence that names the
  message type (grpcio alone answers UNKNOWN or INTERNAL before the service's code runs): the
  deserializer hands the handler an ``Undecodable`` in place of the request, and the wrapper (or,
  for a request stream, the wrapped request iterator) turns it into that status;
- every status detail is redacted (``featurelens.kit.redaction``) and bounded
  (``featurelens.kit.echo``), and so is the log line that repeats it;
- a server configured with API keys refuses a call without an accepted one with UNAUTHENTICATED
  (``featurelens.kit.auth``), logged like any refused call but never with the key;
- while the server drains for a shutdown (``featurelens.kit.inflight``), a new call is refused with
  UNAVAILABLE unless it carries the request id of a call in flight here (a peer's sub-call);
- every call is counted by its final status code, timed and counted in flight
  (``featurelens.kit.metrics``); the Progress of a streaming job's responses is counted by stage;
  and, when tracing is on, the call is a span, a child of the caller's (``featurelens.kit.tracing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc import aio

from featurelens.kit import metrics, tracing
from featurelens.kit.auth import ServerAuth
from featurelens.kit.context import current_request_id, reset_request_id, set_request_id
from featurelens.kit.errors import InvalidArgumentError, UnauthenticatedError, UnavailableError, status_for
from featurelens.kit.inflight import InFlightCalls
from featurelens.kit.redaction import status_detail
from featurelens.wire.metadata import REQUEST_ID_KEY, new_request_id

logger = logging.getLogger("featurelens.kit.requests")

T = TypeVar("T")

_QUIET_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

#: The sentence of a call refused because the server is shutting down.
SHUTTING_DOWN = "the server is shutting down and takes no new calls; retry shortly or on another instance"

Deserializer = Callable[[bytes], Any]


def _request_id(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return new_request_id()


class Undecodable:
    """Stands in for a request whose bytes are not a valid message of the RPC's request type."""

    def __init__(self, message_name: str, error: Exception) -> None:
        self.message_name = message_name
        self.error = error

    def sentence(self) -> str:
        reason = str(self.error)
        # protobuf's text repeats the type ("Error parsing message with type 'X': why"); keep the why.
        if reason.startswith("Error parsing message") and ": " in reason:
            reason = reason.split(": ", 1)[1]
        reason = reason or type(self.error).__name__
        return f"the request is not a valid {self.message_name} message: {reason}"


def _message_name(deserializer: Deserializer) -> str:
    # A generated handler's deserializer is the request class's FromString.
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


def tolerant(deserializer: Deserializer | None) -> Deserializer | None:
    """``deserializer`` returning an ``Undecodable`` instead of raising on bytes it cannot parse."""
    if deserializer is None:
        return None
    message_name = _message_name(deserializer)

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:  # DecodeError, or whatever a hand-written deserializer raises
            return Undecodable(message_name, error)

    return deserialize


def _checked(request: Any) -> Any:
    if isinstance(request, Undecodable):
        raise InvalidArgumentError(request.sentence())
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _checked(request)


def _aborted_code(context: aio.ServicerContext) -> str:
    """The status a handler gave ``context.abort`` (UNKNOWN when grpc does not say)."""
    try:
        code = context.code()
    except Exception:  # an older grpc.aio context has no code()
        return "UNKNOWN"
    if isinstance(code, grpc.StatusCode):
        return code.name
    # grpc.aio keeps the numeric value of the code it was given.
    return next((status.name for status in grpc.StatusCode if status.value[0] == code), "UNKNOWN")


class _CallTracker:
    """Logs a call once it ends, maps an escaping exception to a status, and records the call's
    metrics and span (``finish`` settles them once, whichever way the call ended)."""

    def __init__(
        self, method: str, request_id: str, metadata: Any = None, *, in_process: bool = False
    ) -> None:
        self.method = method
        self.request_id = request_id
        self.started = time.perf_counter()
        self.quiet = method.startswith(_QUIET_SERVICES)
        #: The final status code's name; stays UNKNOWN only if the call ended in a way not foreseen.
        self.code = "UNKNOWN"
        service, _, rpc = method.lstrip("/").partition("/")
        self.labels = (service, rpc)
        self.in_flight = metrics.IN_FLIGHT.labels(service, rpc)
        self.in_flight.inc()
        self.span = tracing.server_span(method, metadata, in_process=in_process)
        self._span_token = tracing.activate(self.span)
        #: Units done of each stage, as the job's last Progress said (for the items counter).
        self._stage_done: dict[str, int] = {}
        self._finished = False

    async def fail(self, context: aio.ServicerContext, error: BaseException) -> None:
        if isinstance(error, aio.AbortError):
            self.code = _aborted_code(context)
            raise error
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            self.code = "CANCELLED"
            self.log("CANCELLED")
            raise error
        code = status_for(error)
        if code is None:
            self.code = "INTERNAL"
            logger.exception("%s failed with an unexpected error", self.method)
            details = f"internal error; quote request id {self.request_id} to the operator"
            await context.abort(grpc.StatusCode.INTERNAL, details)
        # A sentence may quote a client's value or a dependency's answer: never a secret, never
        # more than gRPC's metadata limit lets through.
        details = status_detail(str(error)) or code.name
        self.code = code.name
        self.log(code.name, details)
        await context.abort(code, details)

    def succeeded(self) -> None:
        self.code = "OK"
        self.log("OK")

    def progress(self, response: Any) -> None:
        """Count the Progress a streaming job's response carries (every job's response has one as
        its field ``progress``; other streams' responses have none)."""
        has_field = getattr(response, "HasField", None)
        try:
            if has_field is None or not has_field("progress"):
                return
        except ValueError:  # a message without a ``progress`` field
            return
        report = response.progress
        stage = report.stage or "job"
        service, rpc = self.labels
        done = max(int(report.done), 0)
        advanced = done - self._stage_done.get(stage, 0)
        if advanced > 0:
            metrics.JOB_ITEMS.labels(service, rpc, stage).inc(advanced)
        self._stage_done[stage] = done
        metrics.JOB_DONE.labels(service, rpc, stage).set(done)
        metrics.JOB_TOTAL.labels(service, rpc, stage).set(max(int(report.total), 0))

    def finish(self) -> None:
        """Record the call's metrics and end its span, once."""
        if self._finished:
            return
        self._finished = True
        service, rpc = self.labels
        self.in_flight.dec()
        metrics.REQUESTS.labels(service, rpc, self.code).inc()
        metrics.REQUEST_SECONDS.labels(service, rpc).observe(time.perf_counter() - self.started)
        # grpc may close a stream's generator from another context, where the token cannot be
        # reset; that context never saw the span, so there is nothing to undo there.
        with contextlib.suppress(ValueError):
            tracing.deactivate(self._span_token)
        tracing.end_server_span(self.span, self.code)

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


async def served_in_process(method: str, call: Awaitable[T]) -> T:
    """Await a handler that a peer in this process calls directly (``Peer.call_in_process``) as
    this interceptor serves a call: its request line under the caller's request id, its metrics
    and its span, with the status its error maps to. The error itself is raised as it is."""
    request_id = current_request_id() or new_request_id()
    token = set_request_id(request_id)
    tracker = _CallTracker(method, request_id, in_process=True)
    try:
        response = await call
    except (asyncio.CancelledError, GeneratorExit):
        tracker.code = "CANCELLED"
        tracker.log("CANCELLED")
        raise
    except BaseException as error:
        code = status_for(error)
        if code is None:
            tracker.code = "INTERNAL"
            logger.exception("%s failed with an unexpected error", method)
        else:
            tracker.code = code.name
            tracker.log(code.name, status_detail(str(error)) or code.name)
        raise
    else:
        tracker.succeeded()
        return response
    finally:
        tracker.finish()
        reset_request_id(token)


class _Admission:
    """A call's place among the calls in flight (health and reflection are never counted)."""

    def __init__(self, calls: InFlightCalls, tracker: _CallTracker) -> None:
        self.calls = calls
        self.request_id = tracker.request_id
        self.counted = False
        if not tracker.quiet:
            self.counted = calls.admit(self.request_id)
            if not self.counted:
                raise UnavailableError(SHUTTING_DOWN)

    def release(self) -> None:
        if self.counted:
            self.counted = False
            self.calls.release(self.request_id)


class RequestInterceptor(aio.ServerInterceptor):
    """Wraps every handler with request-id binding, logging, error mapping, authentication and
    drain admission."""

    def __init__(self, calls: InFlightCalls | None = None, auth: ServerAuth | None = None) -> None:
        self.calls = calls if calls is not None else InFlightCalls()
        self.auth = auth if auth is not None else ServerAuth()

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
        metadata = handler_call_details.invocation_metadata
        refusal = self.auth.refusal(method, metadata)
        deserializer = tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, request_id, refusal=refusal, metadata=metadata),
                deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(
                    handler.stream_unary,
                    method,
                    request_id,
                    refusal=refusal,
                    request_streaming=True,
                    metadata=metadata,
                ),
                deserializer,
                handler.response_serializer,
            )
        streaming = handler.unary_stream or handler.stream_stream
        request_streaming = not handler.unary_stream
        # A streaming handler either yields its responses (async generator) or writes them with
        # context.write() and returns a coroutine (the standard health Watch does), and each
        # needs its own kind of wrapper.
        wrap = self._wrap_unary if inspect.iscoroutinefunction(streaming) else self._wrap_stream
        wrapped = wrap(
            streaming,
            method,
            request_id,
            refusal=refusal,
            request_streaming=request_streaming,
            metadata=metadata,
        )
        make_handler = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        return make_handler(wrapped, deserializer, handler.response_serializer)

    def _wrap_unary(
        self,
        behavior: Any,
        method: str,
        request_id: str,
        *,
        refusal: str | None = None,
        request_streaming: bool = False,
        metadata: Any = None,
    ) -> Any:
        calls = self.calls

        async def wrapper(request: Any, context: aio.ServicerContext) -> Any:
            token = set_request_id(request_id)
            tracker = _CallTracker(method, request_id, metadata)
            admission: _Admission | None = None
            try:
                if refusal is not None:
                    raise UnauthenticatedError(refusal)
                admission = _Admission(calls, tracker)
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
                request = _checked_stream(request) if request_streaming else _checked(request)
                response = behavior(request, context)
                if inspect.isawaitable(response):
                    response = await response
            except BaseException as error:
                await tracker.fail(context, error)
                raise
            else:
                tracker.succeeded()
                return response
            finally:
                if admission is not None:
                    admission.release()
                tracker.finish()
                reset_request_id(token)

        return wrapper

    def _wrap_stream(
        self,
        behavior: Any,
        method: str,
        request_id: str,
        *,
        refusal: str | None = None,
        request_streaming: bool = False,
        metadata: Any = None,
    ) -> Any:
        calls = self.calls

        async def wrapper(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            token = set_request_id(request_id)
            tracker = _CallTracker(method, request_id, metadata)
            admission: _Admission | None = None
            try:
                if refusal is not None:
                    raise UnauthenticatedError(refusal)
                admission = _Admission(calls, tracker)
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
                request = _checked_stream(request) if request_streaming else _checked(request)
                async for response in behavior(request, context):
                    tracker.progress(response)
                    yield response
            except BaseException as error:
                await tracker.fail(context, error)
                raise
            else:
                tracker.succeeded()
            finally:
                if admission is not None:
                    admission.release()
                tracker.finish()
                # grpc may close the generator after the client went away from another context,
                # where the token cannot be reset; that context never saw the id, so skip it.
                with contextlib.suppress(ValueError):
                    reset_request_id(token)

        return wrapper
