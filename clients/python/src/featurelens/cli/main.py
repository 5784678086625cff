"""The ``featurelens`` command: one typer app, each command (or command group) in its own module."""

from __future__ import annotations

import typer

from featurelens.cli.attach import attach, detach
from featurelens.cli.embed import embed
from featurelens.cli.eval import eval_app
from featurelens.cli.families import families_app
from featurelens.cli.features import features_app
from featurelens.cli.label import label
from featurelens.cli.sae import sae_app
from featurelens.cli.sae_match import match
from featurelens.cli.search import search
from featurelens.cli.status import health, models
from featurelens.cli.up import up

app = typer.Typer(
    name="featurelens",
    help="Sparse, labelled, steerable features of text embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(up)
app.command()(embed)
app.command()(health)
app.command()(models)
app.command()(search)
app.command()(label)
app.command()(attach)
app.command()(detach)
# `sae match` calls the family service, unlike the local training commands of sae.py.
sae_app.command("match")(match)
app.add_typer(sae_app, name="sae")
app.add_typer(features_app, name="features")
app.add_typer(families_app, name="families")
app.add_typer(eval_app, name="eval")


if __name__ == "__main__":
    app()
