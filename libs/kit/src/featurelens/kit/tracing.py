"""OpenTelemetry tracing of a featurelens process: off unless an OTLP endpoint is configured.

Off, nothing here makes a span: the interceptor and the helpers check ``enabled()`` (a module
flag) and go on, so tracing costs a function call. On (``configure``, called by the runner and
the embedded host when ``FEATURELENS_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set),
spans go through a batching processor to an OTLP/HTTP exporter.

The kit keeps its own tracer provider and never sets OpenTelemetry's global one: a library that
installs a global provider does not turn featurelens tracing on, and tests install a provider
with an in-memory exporter (``install``) as often as they like.

Across services the trace context travels as W3C ``traceparent`` / ``tracestate`` gRPC metadata:
``inject`` adds it to a peer call (``featurelens.kit.peers``), ``server_span`` reads it back and
makes the served call's span a child of the caller's. Every span carries the request id
(``featurelens.request_id``) so a trace joins the log lines, and every attribute value is
redacted (``featurelens.kit.redaction``): no key or password reaches a trace.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from featurelens.kit.context import current_request_id
from featurelens.kit.redaction import redact

logger = logging.getLogger(__name__)

#: The span attribute holding the request id (the ``x-request-id`` of the logs).
REQUEST_ID_ATTRIBUTE = "featurelens.request_id"
#: Where OTLP/HTTP collectors take traces, below the endpoint's base URL.
TRACES_PATH = "/v1/traces"

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER_NAME = "featurelens"

_tracer: trace.Tracer | None = None
_provider: trace.TracerProvider | None = None
# The span of the task's work, as an OpenTelemetry context. Kept in the kit's own variable rather
# than OpenTelemetry's runtime context: grpc may close a stream's generator from another context,
# where a token cannot be reset, and this variable's reset is then skipped quietly (as the
# request id's is) instead of logging an error.
_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar("featurelens_span", default=None)


def enabled() -> bool:
    """Whether this process makes spans."""
    return _tracer is not None


def install(provider: trace.TracerProvider | None) -> None:
    """Make spans with ``provider`` from now on (None: make none). The caller owns the provider."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer(_TRACER_NAME)


def configure(service_name: str, endpoint: str) -> bool:
    """Export spans to the OTLP/HTTP collector at ``endpoint`` (its base URL, e.g.
    ``http://otel-collector:4318``); an empty endpoint leaves tracing off. True when turned on."""
    if not endpoint:
        return False
    # Imported here: a process that traces nothing loads neither the SDK nor the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    url = endpoint.rstrip("/")
    if not url.endswith(TRACES_PATH):
        url += TRACES_PATH
    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES; the service name given here wins.
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    install(provider)
    logger.info("tracing on: spans of %s go to %s", service_name, redact(url))
    return True


@contextmanager
def recorded() -> Iterator[Any]:
    """Spans into memory for the block (tests, or looking at a trace by hand): yields the SDK's
    ``InMemorySpanExporter``, whose ``get_finished_spans()`` lists them; tracing is off after."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    install(provider)
    try:
        yield exporter
    finally:
        install(None)
        provider.shutdown()


def shutdown() -> None:
    """Send the spans still queued and stop making spans (the runner calls this on exit)."""
    provider = _provider
    install(None)
    close = getattr(provider, "shutdown", None)
    if callable(close):
        close()


def _attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    found = {key: redact(value) for key, value in attributes.items()}
    request_id = current_request_id()
    if request_id is not None:
        found[REQUEST_ID_ATTRIBUTE] = redact(request_id)
    return found


@contextmanager
def span(name: str, attributes: Mapping[str, str] | None = None) -> Iterator[Span | None]:
    """A span around the block, a child of the current one (nothing, and None, when tracing is off).

    An exception leaving the block is recorded on the span and marks it as an error.
    """
    tracer = _tracer
    if tracer is None:
        yield None
        return
    parent = _current.get()
    current = tracer.start_span(name, context=parent, attributes=_attributes(attributes or {}))
    token = _current.set(trace.set_span_in_context(current, parent))
    try:
        yield current
    except BaseException as error:
        current.record_exception(error)
        current.set_status(Status(StatusCode.ERROR, type(error).__name__))
        raise
    finally:
        _current.reset(token)
        current.end()


def server_span(
    method: str, metadata: Iterable[tuple[str, str | bytes]] | None, *, in_process: bool = False
) -> Span | None:
    """The span of a served gRPC call, a child of the caller's when ``metadata`` carries its trace
    context, or (``in_process``: a peer in this process called the servicer directly) a child of
    the current span (None when tracing is off). The caller ends it with ``end_server_span``."""
    tracer = _tracer
    if tracer is None:
        return None
    if in_process:
        parent = _current.get() or Context()
    else:
        carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
        # Without a traceparent the call starts a new trace.
        parent = _PROPAGATOR.extract(carrier)
    service, _, rpc = method.lstrip("/").partition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc}
    return tracer.start_span(
        method.lstrip("/"), context=parent, kind=SpanKind.SERVER, attributes=_attributes(attributes)
    )


def end_server_span(current: Span | None, code: str) -> None:
    """End a served call's span with its final status code name ("OK", "NOT_FOUND" ...)."""
    if current is None:
        return
    current.set_attribute("rpc.grpc.status_code", code)
    if code != "OK":
        current.set_status(Status(StatusCode.ERROR, code))
    current.end()


def activate(current: Span | None) -> contextvars.Token[Context | None] | None:
    """Make ``current`` the span of this task's work (the spans it starts hang below it); returns
    a token for ``deactivate``."""
    if current is None:
        return None
    return _current.set(trace.set_span_in_context(current))


def deactivate(token: contextvars.Token[Context | None] | None) -> None:
    """Undo ``activate``; raises ValueError in another context than the one that activated."""
    if token is not None:
        _current.reset(token)


def inject() -> tuple[tuple[str, str], ...]:
    """The trace context of the current span as gRPC metadata pairs (none when tracing is off or
    no span is current)."""
    if _tracer is None:
        return ()
    current = _current.get()
    if current is None:
        return ()
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=current)
    return tuple(carrier.items())
