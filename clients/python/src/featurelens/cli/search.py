"""``featurelens search``: search an indexed corpus, optionally steered, explained, with rank changes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated

import typer

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
from featurelens.cli.feature_views import number, quoted
from featurelens.cli.steering import (
    CLAMP_HELP,
    PER_MEMBER_HELP,
    STEER_HELP,
    SteerSpecError,
    parse_interventions,
)
from featurelens.client import FeatureContribution, Hit, SearchResult, SteeredFeature
from featurelens.client.types import SearchMode

#: Shared features shown per hit with --explain.
SHOWN_CONTRIBUTIONS = 3

_MODES: dict[str, SearchMode] = {"dense": "dense", "sparse": "sparse", "hybrid": "hybrid"}


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def search(
    query: Annotated[str, typer.Argument(help="The query text.")],
    corpus: Annotated[
        str,
        typer.Option(
            "--corpus", help="The indexed corpus to search, or a Qdrant collection an SAE is attached to."
        ),
    ],
    sae_id: Annotated[
        str | None,
        typer.Option(
            "--sae", help="SAE for sparse/hybrid search, steering and explanations; default: the server's."
        ),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="dense, sparse or hybrid.")] = "dense",
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=1000, help="Hits to show.")] = 10,
    steer: Annotated[list[str] | None, typer.Option("--steer", help=STEER_HELP)] = None,
    clamp: Annotated[list[str] | None, typer.Option("--clamp", help=CLAMP_HELP)] = None,
    per_member: Annotated[bool, typer.Option("--per-member", help=PER_MEMBER_HELP)] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Show the labelled features each hit shares with the query, and their families.",
        ),
    ] = False,
    rank_changes: Annotated[
        bool,
        typer.Option(
            "--rank-changes", help="With steering: show each hit's unsteered rank and the hits that fell out."
        ),
    ] = False,
    qdrant_filter: Annotated[
        str | None,
        typer.Option(
            "--qdrant-filter",
            help="Attached collections: a Qdrant filter as JSON on the collection's own payload, "
            'e.g. \'{"must": [{"key": "year", "range": {"gte": 2020}}]}\'.',
        ),
    ] = None,
    payload_field: Annotated[
        list[str] | None,
        typer.Option(
            "--payload-field", help="Attached collections: a payload key to show per hit (repeatable)."
        ),
    ] = None,
    dense_vector: Annotated[
        str | None,
        typer.Option(
            "--dense-vector",
            help="Attached collections: the dense vector to search; default: the one of the SAE's size.",
        ),
    ] = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Search a corpus or an attached Qdrant collection; --steer turns features (by id, family or
    phrase) up or down."""
    if mode not in _MODES:
        raise fail(f"--mode must be dense, sparse or hybrid; got {mode!r}.", 2)
    try:
        interventions = parse_interventions(steer or [], clamp or [], per_member=per_member)
    except SteerSpecError as error:
        raise fail(str(error), 2) from error
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        result = client.search.search(
            corpus,
            query,
            mode=_MODES[mode],
            sae_id=sae_id,
            top_k=top_k,
            explain=explain,
            interventions=interventions,
            with_rank_changes=rank_changes and bool(interventions),
            qdrant_filter=qdrant_filter,
            payload_fields=payload_field or (),
            dense_vector=dense_vector,
        )
    _print_result(result, explain=explain, rank_changes=rank_changes and bool(interventions))


def steered_line(steered: SteeredFeature) -> str:
    """One steered feature, and where it came from, as a line."""
    target = f"feature {steered.feature} {quoted(steered.label)}"
    if steered.phrase is not None:
        target = f"phrase {steered.phrase!r} -> {target} (match {number(steered.match_score)})"
    elif steered.family_id is not None:
        target = f"family {steered.family_id} -> {target}"
    how = f"clamp {steered.weight:.2f}" if steered.mode == "clamp" else f"weight {steered.weight:+.2f}"
    return f"{target}, {how}"


#: Members of one family listed after a search steered by it; the rest are counted.
SHOWN_FAMILY_MEMBERS = 5


def steered_lines(steered: Sequence[SteeredFeature]) -> list[str]:
    """The steered features as lines: each on its own, except that a family's members after the
    first ``SHOWN_FAMILY_MEMBERS`` are counted in one line under them (a family can hold hundreds)."""
    lines: list[str] = []
    members: dict[str, int] = {}
    more_line: dict[str, int] = {}  # family id -> index of its "more" line
    for item in steered:
        if item.family_id is None:
            lines.append(steered_line(item))
            continue
        members[item.family_id] = members.get(item.family_id, 0) + 1
        if members[item.family_id] <= SHOWN_FAMILY_MEMBERS:
            lines.append(steered_line(item))
        elif item.family_id not in more_line:
            more_line[item.family_id] = len(lines)
            lines.append("")
    for family_id, index in more_line.items():
        count = members[family_id]
        lines[index] = (
            f"family {family_id} -> {count - SHOWN_FAMILY_MEMBERS:,} more of its {count:,} features"
        )
    return lines


def _print_result(result: SearchResult, *, explain: bool, rank_changes: bool) -> None:
    if result.steered:
        _say(f"steered (cosine to the unsteered query {result.steer_cosine:.3f}):")
        for line in steered_lines(result.steered):
            _say(f"  {line}")
    if not result.hits:
        _say("no hits")
    for hit in result.hits:
        _say(_hit_line(hit, rank_changes))
        if explain:
            _say(f"      {_explanation(hit)}")
    if rank_changes and result.dropped:
        _say("fell out of the results:")
        for hit in result.dropped:
            _say(f"  was {hit.rank_before:>3}  {hit.document.id}  {hit.document.title}")
    _say(
        f"{len(result.hits)} hits in {result.took_ms:.1f} ms"
        + (f" (SAE {result.sae_id})" if result.sae_id else "")
    )


def _hit_line(hit: Hit, rank_changes: bool) -> str:
    line = f"{hit.rank:>3}. {hit.score:.3f}  {hit.document.id}  {hit.document.title}"
    if hit.document.payload:
        line += "  " + json.dumps(dict(hit.document.payload), ensure_ascii=False, sort_keys=True)
    if rank_changes:
        line += f"  (was {hit.rank_before})" if hit.rank_before else "  (new)"
    return line


def _explanation(hit: Hit) -> str:
    if not hit.explanation:
        return "shares no feature with the query"
    shared = [_contribution(c) for c in hit.explanation[:SHOWN_CONTRIBUTIONS]]
    more = len(hit.explanation) - SHOWN_CONTRIBUTIONS
    return "shared: " + ", ".join(shared) + (f" and {more} more" if more > 0 else "")


def _contribution(contribution: FeatureContribution) -> str:
    """One shared feature, its share of the score and, when it has any, its families."""
    families = f"; families {', '.join(contribution.family_ids)}" if contribution.family_ids else ""
    return (
        f"feature {contribution.feature} {quoted(contribution.label)} "
        f"({contribution.contribution:.2f}{families})"
    )
