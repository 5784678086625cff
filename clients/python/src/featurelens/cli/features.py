"""``featurelens features``: find, show and list labelled features through the labelling service, and
a feature's neighbours through the family service."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from featurelens.cli.console import (
    DEFAULT_ADDRESS,
    AddressOption,
    ApiKeyOption,
    TlsCaOption,
    connect,
    console,
    fail,
    reporting_errors,
)
from featurelens.cli.feature_views import labels_table, number, quoted
from featurelens.client import ActivatedDocument, FeatureLabel
from featurelens.client.types import NeighbourKind

features_app = typer.Typer(
    name="features",
    help="Find labelled features by meaning, show one feature's label and scores, list an SAE's labels, "
    "show a feature's neighbours.",
    no_args_is_help=True,
)

#: Top documents shown by `features show --corpus`.
SHOWN_DOCUMENTS = 5

_KINDS: dict[str, NeighbourKind] = {"cooccurrence": "cooccurrence", "decoder": "decoder"}


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


@features_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help='What the feature is about, e.g. "dark matter halos".')],
    sae_id: Annotated[
        str | None, typer.Option("--sae", help="The SAE whose features to search; default: the server's.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=1000, help="Features to show.")] = 10,
    substring: Annotated[
        bool,
        typer.Option(
            "--substring", help="Also (and first) show labels that contain the text, ignoring case."
        ),
    ] = False,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Find the labelled features whose labels are closest in meaning to a phrase."""
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        matches = client.labelling.search_features(sae_id, query, top_k=top_k, substring=substring)
    if not matches:
        _say(f"no labelled feature matches {query!r}; `featurelens label` labels an SAE's features")
        return
    table = Table(title=f"features of {matches[0].label.sae_id} matching {query!r}", title_justify="left")
    table.add_column("feature", justify="right")
    table.add_column("label", overflow="fold")
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("r", justify="right", no_wrap=True)
    for match in matches:
        score = f"{number(match.score)} (substring)" if match.substring_match else number(match.score)
        table.add_row(str(match.label.feature), match.label.label, score, number(match.label.pearson_r))
    console.print(table)


@features_app.command("show")
def show(
    sae_id: Annotated[str, typer.Argument(help="The SAE.")],
    feature: Annotated[int, typer.Argument(min=0, help="The latent id.")],
    corpus: Annotated[
        str | None,
        typer.Option("--corpus", help="Also show the titles of the feature's top documents in this corpus."),
    ] = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Show one feature's label, every score, the models, prompt version, cost and example documents."""
    documents: list[ActivatedDocument] = []
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        label = client.labelling.get_label(sae_id, feature)
        if corpus is not None:
            documents = client.search.top_documents(corpus, feature, sae_id=sae_id, n=SHOWN_DOCUMENTS)
    console.print(_label_card(label))
    if corpus is not None:
        _say(f"top documents of feature {feature} in {corpus}:")
        for rank, doc in enumerate(documents, start=1):
            _say(f"  {rank}. {doc.activation:.3f}  {doc.document.id}  {doc.document.title}")
        if not documents:
            _say("  (none: the feature fires on no document of this corpus)")


def _label_card(label: FeatureLabel) -> Table:
    table = Table(
        title=f"feature {label.feature} of {label.sae_id}: {quoted(label.label)}",
        show_header=False,
        title_justify="left",
    )
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    r = number(label.pearson_r, 3) if label.pearson_r is not None else "undefined"
    written = datetime.fromtimestamp(label.created_unix, UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        ("pearson r", r),
        ("F1", number(label.f1, 3)),
        ("AUROC", f"{number(label.auroc, 3)} (hard negatives {number(label.auroc_hard, 3)})"),
        ("balanced accuracy", number(label.balanced_accuracy, 3)),
        (
            "embedding AUROC",
            f"{number(label.embedding_auroc, 3)} (hard negatives {number(label.embedding_auroc_hard, 3)})",
        ),
        ("density", f"{100 * label.density:.2f}% of documents"),
        ("scored documents", f"{label.scored_documents:,} ({label.parse_failures:,} predictions unparsed)"),
        ("interpreter", label.interpreter_model or "-"),
        ("predictor", label.predictor_model or "-"),
        ("prompt version", label.prompt_version or "-"),
        ("cost", f"${label.cost_usd:,.4f} ({label.tokens:,} tokens)"),
        ("written", written if label.created_unix else "-"),
        ("example ids", ", ".join(label.example_ids) or "-"),
    ]
    if label.score_note:
        rows.append(("note", label.score_note))
    for name, value in rows:
        table.add_row(name, value)
    return table


@features_app.command("list")
def list_labels(
    sae_id: Annotated[str, typer.Argument(help="The SAE.")],
    min_r: Annotated[
        float | None,
        typer.Option("--min-r", min=-1.0, max=1.0, help="Only labels whose Pearson r is at least this."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Labels to show, best first.")] = 20,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """List the labels of an SAE, best score first."""
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        page = client.labelling.list_labels(sae_id, min_pearson_r=min_r, page_size=min(limit, 100))
        # One more than shown tells whether there are more.
        labels = list(itertools.islice(page, limit + 1))
    if not labels:
        where = f" with r >= {min_r:g}" if min_r is not None else ""
        _say(f"{sae_id} has no labels{where}; `featurelens label {sae_id} --corpus C` writes them")
        return
    console.print(labels_table(labels[:limit], title=f"labels of {sae_id}, best first"))
    if len(labels) > limit:
        _say(f"showing the first {limit:,}; --limit shows more")


@features_app.command("neighbours")
def neighbours(
    feature: Annotated[int, typer.Argument(min=0, help="The latent id.")],
    sae_id: Annotated[
        str | None, typer.Option("--sae", help="The SAE of the feature; default: the server's.")
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="cooccurrence: features that fire on the same documents (normalised co-occurrence "
            "over the corpus the families were built from); decoder: features whose decoder "
            "directions are closest (cosine).",
        ),
    ] = "cooccurrence",
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=1000, help="Neighbours to show.")] = 10,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Show the features most related to one feature, by co-occurrence or by decoder cosine."""
    if kind not in _KINDS:
        raise fail(f"--kind must be cooccurrence or decoder; got {kind!r}.", 2)
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        found = client.families.feature_neighbours(feature, sae_id, kind=_KINDS[kind], top_k=top_k)
    if not found:
        _say(f"feature {feature} has no neighbours by {kind}")
        return
    score = "co-occurrence" if kind == "cooccurrence" else "cosine"
    table = Table(title=f"neighbours of feature {feature} by {score}", title_justify="left")
    table.add_column("feature", justify="right")
    table.add_column("label", overflow="fold")
    table.add_column(score, justify="right", no_wrap=True)
    for neighbour in found:
        table.add_row(str(neighbour.feature), neighbour.label or "(unlabelled)", number(neighbour.score, 3))
    console.print(table)
