"""The consoles every command prints to, and how a failed call is reported."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from featurelens.client import APIConnectionError, FeaturelensClient, FeaturelensError, TlsConfig

console = Console()
"""Results and summaries (stdout)."""
err_console = Console(stderr=True)
"""Errors and warnings (stderr)."""

DEFAULT_ADDRESS = "127.0.0.1:50051"

AddressOption = Annotated[
    str,
    typer.Option(
        "--address",
        envvar="FEATURELENS_ADDRESS",
        help="host:port of the featurelens server (or of the service's own port).",
    ),
]


ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="FEATURELENS_API_KEY",
        show_default=False,
        help="API key of a server that requires one (prefer the environment variable: a command "
        "line is visible to other users of the machine).",
    ),
]

TlsCaOption = Annotated[
    Path | None,
    typer.Option(
        "--tls-ca",
        envvar="FEATURELENS_TLS_CA_FILE",
        help="PEM CA bundle: connect over TLS, verifying the server with it (client certificate for "
        "mutual TLS: FEATURELENS_TLS_CERT_FILE and FEATURELENS_TLS_KEY_FILE).",
    ),
]


def connect(address: str, api_key: str | None, tls_ca: Path | None, **options: Any) -> FeaturelensClient:
    """A client of the server at ``address`` with the command's key and TLS options (the
    environment fills what they leave out)."""
    tls = None
    if tls_ca is not None:
        tls = dataclasses.replace(TlsConfig.from_env() or TlsConfig(), ca_file=tls_ca)
    try:
        return FeaturelensClient(address, api_key=api_key, tls=tls, **options)
    except ValueError as error:
        raise fail(str(error)) from error


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error line and return the Exit to raise with."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def reporting_errors(address: str) -> Iterator[None]:
    """Turn an SDK error into one readable line and exit status 1."""
    try:
        yield
    except APIConnectionError as error:
        # Only when nothing answered: a server that answered UNAVAILABLE said why, shown below.
        raise fail(
            f"cannot reach featurelens at {address} ({error.details}); is `featurelens up` running?"
        ) from error
    except FeaturelensError as error:
        suffix = f" (request id {error.request_id})" if error.request_id else ""
        raise fail(f"{error.code.name}: {error.details}{suffix}") from error
