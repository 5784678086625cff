"""The grpc.aio server lifecycle, written once for every service.

One ``GrpcServer`` hosts one or more servicers (the embedded mode hosts all five on one port).
Health starts NOT_SERVING for every service; each servicer's ``start()`` loads and warms what
it needs, and only then does its health turn SERVING (the overall "" status once all are).

SIGTERM/SIGINT → NOT_SERVING → drain → ``server.stop`` → each servicer's ``close()``. Draining
refuses new calls with UNAVAILABLE but keeps the port open and admits the calls that carry the
request id of a call in flight (``featurelens.kit.inflight``): in ``featurelens up`` search calls
the encoder and sae servicers through this same server, and an in-flight Search or IndexDocuments
needs those calls to finish. Once no call is in flight, or the grace period has passed, the
server stops (cancelling what is left).

With ``metrics_port`` the server also serves Prometheus metrics over HTTP
(``featurelens.kit.metrics``), started once the gRPC port is bound and stopped after the servicers
are closed, so the port is free again when ``stop`` returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from featurelens.kit.auth import ServerAuth, ServerTls, is_loopback
from featurelens.kit.inflight import InFlightCalls
from featurelens.kit.interceptor import RequestInterceptor
from featurelens.kit.metrics import MetricsServer

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
#: How long no new call must arrive before a draining server stops (see ``GrpcServer._drain``).
_DRAIN_QUIET_S = 0.25


@runtime_checkable
class Servicer(Protocol):
    """What a service implementation offers the server."""

    #: Full service names it registers, e.g. ("featurelens.v1.EncoderService",).
    service_names: Sequence[str]

    def add_to_server(self, server: aio.Server) -> None:
        """Register the generated servicer(s) on the server."""

    async def start(self) -> None:
        """Load and warm up what the service needs; health turns SERVING when this returns."""

    async def close(self) -> None:
        """Release resources after the server stopped."""


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel arguments for a server (and for clients that talk to it)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]


class GrpcServer:
    """A grpc.aio server with health, reflection, request logging and graceful shutdown."""

    def __init__(
        self,
        servicers: Sequence[Servicer],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        grace_period_s: float = 10.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        auth: ServerAuth | None = None,
        tls: ServerTls | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.servicers = list(servicers)
        #: Which calls are admitted (every call when it holds no keys) and the TLS it serves.
        self.auth = auth if auth is not None else ServerAuth()
        self.tls = tls
        self.host = host
        self.requested_port = port
        self.grace_period_s = grace_period_s
        # grpc-stubs' health.pyi predates the asyncio servicer, hence the ignore.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.max_message_bytes = max_message_bytes
        # Made in start(): a grpc.aio server belongs to the event loop it is created in, and
        # __main__ builds the GrpcServer before asyncio.run() starts the loop that serves it.
        self._server: aio.Server | None = None
        self._stopped = asyncio.Event()
        self._warmup: asyncio.Task[None] | None = None
        #: The calls being served, by request id; stop() drains them.
        self.calls = InFlightCalls()
        self.port = 0
        #: ``/metrics`` on its own HTTP port (None: not served; a port of 0 picks a free one).
        self.metrics = None if metrics_port is None else MetricsServer(host, metrics_port)

    @property
    def address(self) -> str:
        """host:port the server listens on (valid after ``start``)."""
        return f"{self.host}:{self.port}"

    @property
    def service_names(self) -> list[str]:
        return [name for s in self.servicers for name in s.service_names]

    async def start(self) -> int:
        """Bind, start serving (health NOT_SERVING) and begin warming up; returns the port."""
        if self._server is not None:
            raise RuntimeError("a GrpcServer can be started once")
        server = self._server = aio.server(
            interceptors=[RequestInterceptor(self.calls, self.auth)],
            options=server_options(self.max_message_bytes),
        )
        for servicer in self.servicers:
            servicer.add_to_server(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, NOT_SERVING)
        bind = f"{self.host}:{self.requested_port}"
        try:
            if self.tls is None:
                self.port = server.add_insecure_port(bind)
            else:
                self.port = server.add_secure_port(bind, self.tls.credentials())
        except RuntimeError as error:
            # grpc reports a failed bind as a bare RuntimeError; say what to do about it.
            raise OSError(
                f"could not bind {self.host}:{self.requested_port}: the port is in use or the "
                "address is not available here; choose another port (0 picks a free one)"
            ) from error
        await server.start()
        if self.metrics is not None:
            try:
                self.metrics.start()
            except OSError:
                await server.stop(0)
                raise
        self._log_listening()
        self._warmup = asyncio.create_task(self._start_servicers())
        return self.port

    def _log_listening(self) -> None:
        transport = "plaintext" if self.tls is None else "TLS"
        if self.tls is not None and self.tls.client_ca is not None:
            transport = "mutual TLS"
        keys = "no API key needed" if self.auth.keys is None else f"{len(self.auth.keys)} API keys accepted"
        names = ", ".join(self.service_names)
        logger.info("listening on %s (%s; %s, %s)", self.address, names, transport, keys)
        if self.auth.keys is None and not is_loopback(self.host):
            logger.warning(
                "no API keys are configured, so every client that reaches %s may call every RPC: set "
                "<SERVICE>_API_KEYS_FILE (see the README's Security section) before exposing this port",
                self.address,
            )

    async def _start_servicers(self) -> None:
        for servicer in self.servicers:
            try:
                await servicer.start()
            except Exception:
                logger.exception("starting %s failed; health stays NOT_SERVING", type(servicer).__name__)
                raise
            for name in servicer.service_names:
                await self.health.set(name, SERVING)
        await self.health.set("", SERVING)
        logger.info("ready: %s", ", ".join(self.service_names))

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every servicer has started; re-raises a start failure."""
        assert self._warmup is not None, "start() first"
        await asyncio.wait_for(asyncio.shield(self._warmup), timeout)

    async def _drain(self, deadline: float) -> None:
        """Wait until no call is in flight and none has arrived for a moment, or the deadline.

        Calls that reached the transport before the drain began are still being handed to the
        interceptor, which refuses them with UNAVAILABLE (retryable); stopping the server before
        they are would cancel them instead, a status no client retries.
        """
        while True:
            if not await self.calls.wait_idle(deadline - time.monotonic()):
                logger.warning(
                    "%d calls still in flight at the end of the grace period; cancelling them",
                    len(self.calls),
                )
                return
            quiet = self.calls.seconds_since_arrival()
            if quiet >= _DRAIN_QUIET_S or time.monotonic() >= deadline:
                return
            await asyncio.sleep(min(_DRAIN_QUIET_S - quiet, max(deadline - time.monotonic(), 0.0)))

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, refuse new calls, let in-flight calls (and the calls they make back to this
        server) finish within the grace period, stop the server, then close servicers."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.grace_period_s if grace is None else grace
        deadline = time.monotonic() + grace
        logger.info("stopping: draining %d in-flight calls for up to %.1fs", len(self.calls), grace)
        # Refuse before health says so: a client that saw NOT_SERVING must not get in.
        self.calls.drain()
        await self.health.enter_graceful_shutdown()
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
        if self._server is not None:
            await self._drain(deadline)
            # What remains of the grace lets the last responses go out.
            await self._server.stop(max(deadline - time.monotonic(), 0.0))
        for servicer in self.servicers:
            try:
                await servicer.close()
            except Exception:
                logger.exception("closing %s failed", type(servicer).__name__)
        if self.metrics is not None:
            self.metrics.stop()
        logger.info("stopped")

    async def serve_until_signalled(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully (the services' ``__main__`` uses this).

        ``on_ready`` is called once every servicer has started (health SERVING). When a servicer
        fails to start, the server stops and that error is raised here.
        """
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, stop_requested.set)
        try:
            await self.start()
            warmup = self._warmup
            assert warmup is not None
            waiter = asyncio.create_task(stop_requested.wait())
            done, _ = await asyncio.wait({warmup, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if warmup in done:
                error = warmup.exception()
                if error is not None:
                    waiter.cancel()
                    await self.stop(0)
                    raise error
                if on_ready is not None:
                    on_ready()
            await waiter
            await self.stop()
        finally:
            # Back to the default handlers, so a later Ctrl-C in the same process still works.
            for sig in signals:
                loop.remove_signal_handler(sig)


def channel_options(max_message_bytes: int = 64 * 1024 * 1024) -> list[tuple[str, int]]:
    """Client channel arguments matching the servers' message limits."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
    ]
