"""``featurelens up``: every installed service in one process on one port (the embedded mode).

The host itself (service discovery, settings, the server) lives in the kit,
``featurelens.kit.embedded``; this command only gives it a command line and a console.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from featurelens.cli.console import console, err_console, fail

if TYPE_CHECKING:
    from featurelens.kit import GrpcServer


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
        embedded = embedded_host(host=host, port=port, data_dir=data_dir, models=split_list(models))
    except EmbeddedHostError as error:
        raise fail(str(error)) from error
    configure_logging(log_level, "auto")
    names = ", ".join(embedded.names)
    err_console.print(
        f"starting {names} on {host}:{embedded.port} (loading models)...", highlight=False, soft_wrap=True
    )

    def announce(server: GrpcServer) -> None:
        console.print(
            f"featurelens is up at {server.address} ({names}); Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )

    try:
        asyncio.run(embedded.serve(on_ready=announce))
    except KeyboardInterrupt:
        # Ctrl-C before the server took over the signal (while models were still loading).
        raise fail("interrupted", 130) from None
    except OSError as error:
        raise fail(str(error)) from error
    except Exception as error:
        raise fail(f"a service failed to start: {error}") from error
    console.print("featurelens stopped", highlight=False, soft_wrap=True)
