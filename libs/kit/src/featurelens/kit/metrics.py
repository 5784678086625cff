"""The Prometheus metrics of a featurelens process, and the HTTP server that serves ``/metrics``.

Every metric is defined here, once, on prometheus-client's default registry (one per process: the
embedded host's five services share it, told apart by the ``service`` label). Label values are
always from a small set (service and RPC names, status codes, stage and operation names,
configured model names); never a document id, a query's text, a key or a collection name.

What records them: the server interceptor (requests, latency, in flight, job progress), the
core's telemetry hooks through ``featurelens.kit.observer`` (caches, LLM spend, dependency
latency) and the gateway's middleware (HTTP requests). This module imports no core, so the
gateway may use it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

#: Seconds: from a cached lookup (~1 ms) to a long streaming job (minutes).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

# -- gRPC calls (featurelens.kit.interceptor) ------------------------------------------------------

REQUESTS = Counter(
    "featurelens_requests",
    "gRPC calls served, by service, RPC and final status code.",
    ["service", "rpc", "code"],
)
REQUEST_SECONDS = Histogram(
    "featurelens_request_duration_seconds",
    "Time from a gRPC call's arrival to its final status, by service and RPC.",
    ["service", "rpc"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "featurelens_requests_in_flight",
    "gRPC calls being served now, by service and RPC (streams count until they end).",
    ["service", "rpc"],
)

# -- long jobs: the Progress messages of streaming RPCs (index, train, label, build families) ------

JOB_ITEMS = Counter(
    "featurelens_job_items",
    "Units of work that long jobs reported done (documents, steps, features, families), by RPC and stage.",
    ["service", "rpc", "stage"],
)
JOB_DONE = Gauge(
    "featurelens_job_done",
    "Units done in the latest progress report of a job, by RPC and stage (the last job to report wins).",
    ["service", "rpc", "stage"],
)
JOB_TOTAL = Gauge(
    "featurelens_job_total",
    "Units to do in the latest progress report of a job, by RPC and stage (0: unknown).",
    ["service", "rpc", "stage"],
)

# -- what the core reports (featurelens.telemetry, through featurelens.kit.observer) -------------

CACHE_LOOKUPS = Counter(
    "featurelens_cache_lookups",
    "Lookups in a cache (embedding: rows of the encoder's cache; llm: the LLM answer cache), by result.",
    ["cache", "result"],
)
LLM_TOKENS = Counter(
    "featurelens_llm_tokens",
    "Tokens of answered LLM calls (cache hits spend none), by model and kind (prompt, completion).",
    ["model", "kind"],
)
LLM_COST = Counter(
    "featurelens_llm_cost_usd",
    "US dollars spent on LLM calls, by model (priced with the service's price table).",
    ["model"],
)
DEPENDENCY_SECONDS = Histogram(
    "featurelens_dependency_duration_seconds",
    "Time of calls to a dependency (qdrant, redis, llm), by operation.",
    ["dependency", "operation"],
    buckets=LATENCY_BUCKETS,
)

# -- the gateway's HTTP requests -------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "featurelens_http_requests",
    "HTTP requests the gateway answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "featurelens_http_request_duration_seconds",
    "Time from an HTTP request's arrival to its response, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)


class MetricsServer:
    """``/metrics`` on its own HTTP port, in a daemon thread (prometheus-client's WSGI server).

    ``port`` 0 picks a free one; ``start`` returns the port bound. ``stop`` closes the socket, so
    the port is free again once it returns.
    """

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.host = host
        self.requested_port = port
        self.registry = registry
        self.port = 0
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        if self._server is not None:
            raise RuntimeError("a MetricsServer can be started once")
        try:
            server, thread = start_http_server(self.requested_port, addr=self.host, registry=self.registry)
        except OSError as error:
            raise OSError(
                f"could not serve metrics on {self.host}:{self.requested_port} ({error}): the port is in "
                "use or the address is not available here; choose another METRICS_PORT (0 turns it off)"
            ) from error
        self._server, self._thread = server, thread
        self.port = int(server.server_port)
        logger.info("serving Prometheus metrics at http://%s:%d/metrics", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._server is None:
            return
        server, thread = self._server, self._thread
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)


def sample(name: str, labels: dict[str, str] | None = None, registry: Any = REGISTRY) -> float:
    """The current value of one sample (0.0 when it has not been recorded yet): for tests and tools."""
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)
