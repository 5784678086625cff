"""Serving the gateway with uvicorn: on its own (``__main__``) or in another program's event loop
(``featurelens up``), stopped by that program rather than by signals of its own."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from pydantic import SecretStr

from featurelens.services.gateway.app import create_app
from featurelens.services.gateway.settings import GatewaySettings


def uvicorn_config(settings: GatewaySettings) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # The kit's logging (configured by the caller) writes every line; uvicorn adds none of its own.
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(int(settings.grace_period_s), 1),
        server_header=False,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0 picks a free port); OSError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host: ``stop()`` ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        self.should_exit = True


class Gateway:
    """The gateway served on a socket bound beforehand, in the running event loop."""

    def __init__(self, settings: GatewaySettings, sock: socket.socket) -> None:
        self.settings = settings
        self.socket = sock
        self.server = EmbeddedServer(uvicorn_config(settings))
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.socket]), name="gateway")

    async def wait_started(self) -> None:
        """Until the server accepts connections (raises what stopped it when it could not start)."""
        while not self.server.started:
            if self._task is not None and self._task.done():
                self._task.result()
                raise RuntimeError("the gateway stopped before it started")
            await asyncio.sleep(0.01)

    async def server_task(self) -> None:
        """Until the server has stopped (after ``stop``, or when it failed)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        """Let in-flight requests finish (up to the grace period), then close."""
        self.server.stop()
        if self._task is not None:
            await self._task
        self.socket.close()


def embedded_gateway(grpc_address: str, host: str, port: int, api_key: str | None = None) -> Gateway:
    """The gateway of ``featurelens up``: every service at the embedded host's one address, bound
    now on host:port (OSError when the port is taken), served once ``start`` is called in the
    host's event loop; ``api_key``: the host's key when it requires keys. ``FEATURELENS_GATEWAY_*``
    variables set everything else."""
    settings = GatewaySettings(
        host=host,
        port=port,
        encoder_address=grpc_address,
        sae_address=grpc_address,
        search_address=grpc_address,
        labelling_address=grpc_address,
        family_address=grpc_address,
        api_key=SecretStr(api_key) if api_key else None,
    )
    return Gateway(settings, bind(host, port))
