"""``featurelens health`` and ``featurelens models``: what a server hosts and serves."""

from __future__ import annotations

import typer
from rich.table import Table

from featurelens.cli.console import (
    DEFAULT_ADDRESS,
    AddressOption,
    ApiKeyOption,
    TlsCaOption,
    connect,
    console,
    reporting_errors,
)
from featurelens.client import SERVICE_NAMES

_STYLES = {"SERVING": "green", "NOT_SERVING": "yellow", "SERVICE_UNKNOWN": "dim", "UNKNOWN": "red"}
_SHOWN = {"SERVICE_UNKNOWN": "not hosted"}


def health(
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Show the health of the server and of each service; exit 1 unless the server is SERVING."""
    with reporting_errors(address), connect(address, api_key, tls_ca, timeout_s=5.0) as client:
        overall = client.health()
        rows = [(name, client.health(name)) for name in SERVICE_NAMES]
    console.print(f"featurelens at {address}", highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("service")
    table.add_column("status")
    for name, status in [("server", overall), *rows]:
        style = _STYLES.get(status, "")
        table.add_row(name, f"[{style}]{_SHOWN.get(status, status)}[/]")
    console.print(table)
    if overall != "SERVING":
        raise typer.Exit(1)


def models(
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """List the embedding models the encoder serves."""
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        served = client.encoder.list_models()
    table = Table(title="encoder models")
    for column in ("id", "backend", "dim", "max input tokens", "default"):
        table.add_column(column)
    for model in served:
        table.add_row(
            model.id,
            model.backend,
            str(model.dim),
            str(model.max_input_tokens or "-"),
            "yes" if model.is_default else "",
        )
    console.print(table)
