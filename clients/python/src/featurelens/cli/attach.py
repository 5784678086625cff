"""``featurelens attach`` / ``featurelens detach``: an SAE on a Qdrant collection of the user's own."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from featurelens.cli.console import (
    DEFAULT_ADDRESS,
    AddressOption,
    ApiKeyOption,
    TlsCaOption,
    connect,
    console,
    reporting_errors,
)
from featurelens.client.types import AttachPlan


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def _print_plan(plan: AttachPlan) -> None:
    vector = plan.dense_vector or "(the unnamed default vector)"
    _say(f"collection {plan.collection}: {plan.points:,} points, ids {plan.id_type}")
    _say(f"  encode {vector} with SAE {plan.sae_id}")
    _say(
        f"  add sparse vector {plan.sparse_vector}"
        + (" (new to the collection's config)" if plan.add_sparse_config else "")
    )
    _say(f"  add payload key {plan.payload_key}")
    _say(f"  points to write: {plan.points_to_write:,}")


def attach(
    collection: Annotated[str, typer.Argument(help="Your Qdrant collection.")],
    sae_id: Annotated[
        str | None, typer.Option("--sae", help="The SAE to attach; default: the server's.")
    ] = None,
    vector: Annotated[
        str,
        typer.Option("--vector", help="The collection's dense vector; empty: the unnamed default vector."),
    ] = "",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=0, max=4096, help="Points per batch; 0: 256.")
    ] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would change.")] = False,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Add an SAE's sparse vector and firing features to every point of your collection (resumable)."""
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        updates = client.search.attach_sae(
            collection, sae_id=sae_id, dense_vector=vector, batch_size=batch_size, dry_run=dry_run
        )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("attach", total=None)
            done = 0
            for update in updates:
                if update.plan is not None:
                    _print_plan(update.plan)
                bar.update(task, completed=update.progress.done, total=update.progress.total or None)
                done = update.progress.done
    _say("dry run: nothing changed" if dry_run else f"attached: {done:,} points written")


def detach(
    collection: Annotated[str, typer.Argument(help="Your Qdrant collection.")],
    sae_id: Annotated[str, typer.Option("--sae", help="The attached SAE.")],
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Remove an attached SAE's sparse vector and payload key from your collection."""
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        was_attached = client.search.detach_sae(collection, sae_id)
    _say("detached" if was_attached else f"SAE {sae_id} was not attached to {collection}; nothing to remove")
