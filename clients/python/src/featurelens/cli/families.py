"""``featurelens families``: build an SAE's feature families, list them and draw one as a tree.

A family is a tree of features that fire together: a general parent (dense) over more specific
children (sparse). ``build`` computes them through the family service from how the SAE's features
co-occur over an indexed corpus, and names them from their members' labels (label the features
first: ``featurelens label``).
"""

from __future__ import annotations

import itertools
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from featurelens.cli.console import (
    DEFAULT_ADDRESS,
    AddressOption,
    ApiKeyOption,
    TlsCaOption,
    connect,
    console,
    err_console,
    fail,
    reporting_errors,
)
from featurelens.cli.feature_views import number, quoted
from featurelens.client import Family, FamilyBuildResult, FamilyMember

families_app = typer.Typer(
    name="families",
    help="Build an SAE's feature families (trees of co-occurring features), list them, draw one.",
    no_args_is_help=True,
)

SaeOption = Annotated[
    str | None, typer.Option("--sae", help="The SAE whose families these are; default: the server's.")
]


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}%"


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


@families_app.command("build")
def build(
    corpus: Annotated[
        str,
        typer.Option("--corpus", help="Indexed corpus over which the features' co-occurrence is counted."),
    ],
    sae_id: SaeOption = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            max=1.0,
            help="Least normalised co-occurrence of two features for an edge of the tree, in (0, 1]; "
            "default 0.1.",
        ),
    ] = None,
    min_children: Annotated[
        int | None,
        typer.Option("--min-children", min=1, help="Families with fewer children are dropped; default 4."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "--interpreter",
            help="Model that names the families; default: the labelling service's (the offline "
            "labeller, from the members' labels, when no LLM is configured).",
        ),
    ] = None,
    budget_usd: Annotated[
        float | None,
        typer.Option(
            "--budget-usd",
            "--budget",
            min=0.0,
            help="Most US dollars the family labels may spend on LLM calls; default: the server's budget.",
        ),
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option("--domain", help='What the corpus is, told to the LLM, e.g. "astro-ph abstracts".'),
    ] = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Build the families of an SAE from an indexed corpus; shows progress, then their statistics."""
    if threshold is not None and threshold <= 0:
        raise fail(f"--threshold is a normalised co-occurrence in (0, 1]; got {threshold:g}.", 2)
    result: FamilyBuildResult | None = None
    with reporting_errors(address), connect(address, api_key, tls_ca) as client, _progress_bar() as bar:
        task = bar.add_task(f"building families of {sae_id or 'the default SAE'}", total=None, stage="")
        events = client.families.build_families(
            corpus,
            sae_id=sae_id,
            threshold=threshold,
            min_children=min_children,
            interpreter_model=model,
            budget_usd=budget_usd,
            domain=domain,
        )
        try:
            for event in events:
                bar.update(
                    task,
                    completed=event.progress.done,
                    total=event.progress.total or None,
                    stage=event.progress.message or event.progress.stage,
                )
                if event.result is not None:
                    result = event.result
        except KeyboardInterrupt:
            bar.stop()
            raise fail("interrupted; run the same command to build the families again", 130) from None
    if result is None:
        raise fail("the family service ended the build without reporting what it built")
    console.print(_summary_table(result, sae_id, corpus))
    if result.families_built:
        _say(f"`featurelens families list{_sae_flag(sae_id)}` lists them; `families show ID` draws one")


def _sae_flag(sae_id: str | None) -> str:
    return f" --sae {sae_id}" if sae_id else ""


def _summary_table(result: FamilyBuildResult, sae_id: str | None, corpus: str) -> Table:
    stats = result.statistics
    table = Table(
        title=f"families of {sae_id or 'the default SAE'} from {corpus}",
        show_header=False,
        title_justify="left",
    )
    table.add_column("statistic", style="bold", no_wrap=True)
    table.add_column("value")
    rows = [
        ("families", f"{result.families_built:,}"),
        ("children", f"median {stats.median_children:g}, mean {stats.mean_children:.2f}"),
        ("features in families", f"{stats.features_in_families:,}"),
        (
            "co-occurrence",
            f"parent–child {number(stats.parent_child, 3)} vs child–child {number(stats.child_child, 3)}",
        ),
        (
            "block score",
            f"{number(stats.block_score, 3)} vs {number(stats.block_control, 3)} with the families shuffled",
        ),
        ("LLM calls", f"{result.llm_calls:,} (${result.cost_usd:,.4f})"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@families_app.command("list")
def list_families(
    sae_id: SaeOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Families to show, largest first.")] = 20,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """List the families of an SAE, largest first."""
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        page = client.families.list_families(sae_id, page_size=min(limit, 100))
        # One more than shown tells whether there are more.
        families = list(itertools.islice(page, limit + 1))
    if not families:
        _say(f"no families yet; `featurelens families build --corpus C{_sae_flag(sae_id)}` builds them")
        return
    table = Table(title=f"families of {families[0].sae_id}, largest first", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("label", overflow="fold")
    table.add_column("parent", justify="right")
    table.add_column("children", justify="right")
    table.add_column("density", justify="right", no_wrap=True)
    for family in families[:limit]:
        table.add_row(
            family.family_id,
            family.label or "(unlabelled)",
            str(family.parent_feature),
            str(family.children),
            _percent(family.root_density),
        )
    console.print(table)
    if len(families) > limit:
        _say(f"showing the first {limit:,}; --limit shows more")


@families_app.command("show")
def show(
    family_id: Annotated[str, typer.Argument(help='The family id, e.g. "f2370-p0".')],
    sae_id: SaeOption = None,
    depth: Annotated[
        int | None,
        typer.Option(min=1, help="Draw this many levels below the parent; deeper members are counted."),
    ] = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Draw one family as a tree: each member's feature id, label, density and label score."""
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        family = client.families.get_family(family_id, sae_id)
    _say(_header(family))
    console.print(family_tree(family, max_depth=depth))


def _header(family: Family) -> str:
    parts = [
        f"family {family.family_id} {quoted(family.label)} of {family.sae_id}: "
        f"{len(family.features)} features (parent {family.parent_feature} and {family.children} below it)",
        f"depth {family.depth}",
        f"built from {family.corpus}" if family.corpus else "",
        f"nested in {family.nested_in}" if family.nested_in else "",
    ]
    return ", ".join(part for part in parts if part)


def _member_text(member: FamilyMember) -> Text:
    text = Text()
    text.append(str(member.feature), style="bold")
    text.append(f" {quoted(member.label)}", style="" if member.label else "dim")
    text.append(f"  density {_percent(member.density)}", style="cyan")
    score = number(member.label_score) if member.label else "-"
    text.append(f"  score {score}", style="green")
    return text


def family_tree(family: Family, max_depth: int | None = None) -> Tree:
    """The family's members as a rich Tree: the parent at the top, children under their parents in
    the order the server gave them. With ``max_depth``, members deeper than that many levels below
    the parent are not drawn; a line under the last drawn level says how many there are."""
    children: dict[int | None, list[FamilyMember]] = {}
    for member in family.members:
        children.setdefault(member.parent, []).append(member)
    seen: set[int] = set()

    def below(member: FamilyMember) -> int:
        """Members under ``member``, marking them seen (they are accounted for, not lost)."""
        count = 0
        for child in children.get(member.feature, []):
            if child.feature not in seen:
                seen.add(child.feature)
                count += 1 + below(child)
        return count

    def grow(node: Tree, member: FamilyMember, level: int) -> None:
        seen.add(member.feature)
        if max_depth is not None and level >= max_depth:
            hidden = below(member)
            if hidden:
                node.add(Text(f"… {hidden:,} more below", style="dim"))
            return
        for child in children.get(member.feature, []):
            if child.feature not in seen:
                grow(node.add(_member_text(child)), child, level + 1)

    roots = children.get(None, [])
    if len(roots) == 1:
        top = Tree(_member_text(roots[0]), guide_style="dim")
        grow(top, roots[0], 0)
    else:
        top = Tree(Text(family.family_id, style="bold"), guide_style="dim")
    # Members the tree did not reach (a malformed answer) are shown at the top rather than lost.
    for member in family.members:
        if member.feature not in seen:
            grow(top.add(_member_text(member)), member, 1)
    return top
