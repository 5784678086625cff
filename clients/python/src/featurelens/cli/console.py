"""The consoles every command prints to, and how a failed call is reported."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from featurelens.client import APIConnectionError, FeaturelensError

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
