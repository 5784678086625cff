"""``featurelens up``: every installed service in one process on one port (the embedded mode), and
the HTTP gateway (the JSON API and the web explorer) on a port of its own.

The host itself (service discovery, settings, the server) lives in the kit,
``featurelens.kit.embedded``, and the gateway in ``featurelens.services.gateway``; this command
only gives them a command line and a console, and runs both in one event loop: the gateway stops
after the gRPC server has drained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from featurelens.cli.console import console, err_console, fail

if TYPE_CHECKING:
    from featurelens.kit import GrpcServer
    from featurelens.kit.embedded import EmbeddedHost
    from featurelens.services.gateway.server import Gateway

DEFAULT_HTTP_PORT = 8080


def up(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one.")] = 50051,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Folder for the services' local state.")
    ] = Path(".featurelens"),
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            help="Encoder backends to load: sentence-transformers, wordllama, openai "
            "(repeat or comma-separate; default: FEATURELENS_ENCODER_MODELS or sentence-transformers).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    http_port: Annotated[
        int,
        typer.Option(
            "--http-port", help="Port of the HTTP gateway (JSON API and web explorer); 0 turns it off."
        ),
    ] = DEFAULT_HTTP_PORT,
    api_keys_file: Annotated[
        Path | None,
        typer.Option(
            "--api-keys-file",
            help="Require one of these API keys (one a line, or sha256:<digest>) on every call but "
            "health checks; default: no key needed.",
        ),
    ] = None,
    metrics_port: Annotated[
        int,
        typer.Option(
            "--metrics-port",
            help="HTTP port of Prometheus /metrics for every service; 0 (default) turns it off. The "
            "gateway also serves /metrics on --http-port.",
        ),
    ] = 0,
) -> None:
    """Run every installed featurelens service in this process until Ctrl-C or SIGTERM."""
    try:
        from featurelens.kit import configure_logging
        from featurelens.kit.embedded import EmbeddedHostError, embedded_host, split_list
    except ModuleNotFoundError as error:
        raise fail(
            "`featurelens up` needs the server packages: pip install 'featurelens-client[server]'"
        ) from error

    try:
        embedded = embedded_host(
            host=host,
            port=port,
            data_dir=data_dir,
            models=split_list(models),
            api_keys_file=api_keys_file,
            metrics_port=metrics_port,
        )
    except EmbeddedHostError as error:
        raise fail(str(error)) from error
    configure_logging(log_level, "auto")
    if api_keys_file is not None and http_port and not _is_loopback(host):
        # The gateway checks no keys on HTTP, and would call the services with the host's key.
        raise fail(
            f"--api-keys-file with --host {host}: the HTTP gateway would let anyone who reaches it in "
            "without a key; pass --http-port 0, or bind a loopback address"
        )
    gateway = _gateway(embedded, http_port) if http_port else None
    names = ", ".join(embedded.names)
    err_console.print(
        f"starting {names} on {host}:{embedded.port} (loading models)...", highlight=False, soft_wrap=True
    )
    web = f"; HTTP API and explorer at http://{_url_host(host)}:{gateway.port}" if gateway else ""

    def announce(server: GrpcServer) -> None:
        console.print(
            f"featurelens is up at {server.address} ({names}){web}; Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )

    try:
        asyncio.run(_serve(embedded, gateway, announce))
    except KeyboardInterrupt:
        # Ctrl-C before the server took over the signal (while models were still loading).
        raise fail("interrupted", 130) from None
    except OSError as error:
        raise fail(str(error)) from error
    except Exception as error:
        raise fail(f"a service failed to start: {error}") from error
    console.print("featurelens stopped", highlight=False, soft_wrap=True)


def _gateway(embedded: EmbeddedHost, http_port: int) -> Gateway:
    """The HTTP gateway in front of the embedded host, its port bound now (so a taken port fails
    before the models load)."""
    from featurelens.kit.embedded import connect_host

    try:
        from featurelens.services.gateway.server import embedded_gateway
    except ModuleNotFoundError as error:
        raise fail(
            "the HTTP gateway is not installed: pip install featurelens-gateway, or pass --http-port 0"
        ) from error
    try:
        return embedded_gateway(
            f"{connect_host(embedded.host)}:{embedded.port}", embedded.host, http_port, embedded.peer_key
        )
    except OSError as error:
        raise fail(
            f"could not bind the HTTP gateway to {embedded.host}:{http_port} ({error.strerror or error}); "
            "choose another --http-port, or 0 to run without it"
        ) from error


def _is_loopback(host: str) -> bool:
    from featurelens.kit.auth import is_loopback

    return is_loopback(host)


def _url_host(host: str) -> str:
    from featurelens.kit.embedded import connect_host

    reachable = connect_host(host)
    return f"[{reachable}]" if ":" in reachable else reachable


async def _serve(
    embedded: EmbeddedHost, gateway: Gateway | None, announce: Callable[[GrpcServer], None]
) -> None:
    """The gRPC host until SIGTERM or SIGINT, with the gateway beside it in the same event loop."""
    if gateway is None:
        await embedded.serve(on_ready=announce)
        return
    gateway.start()
    try:
        await embedded.serve(on_ready=announce)
    finally:
        await gateway.stop()
