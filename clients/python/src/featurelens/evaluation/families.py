"""`featurelens eval families`: the feature families' statistics beside the paper's.

The paper (O'Neill et al. 2024, section 5) built families from how features co-occur and reported,
for its astro SAE of 9,216 latents, 610 families with a median of 6.5 children. The co-occurrence
statistics (parent–child, child–child, the block-diagonal score against a permuted control) come
only with a build, so this part builds the families through the family service when it is given
the corpus (seconds; a rebuild keeps the family ids), and reads the shape of every family
(``list_families``) either way.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from featurelens.client import FamilyBuildResult, FeaturelensClient
from featurelens.evaluation.report import Section

logger = logging.getLogger(__name__)

#: The paper's figures for its astro-ph SAE of 9,216 latents (k 64).
PAPER = {"families": 610, "median_children": 6.5, "sae": "astro, k 64, 9,216 latents"}
PAGE_SIZE = 1000


def build(client: FeaturelensClient, sae_id: str | None, corpus: str) -> FamilyBuildResult:
    """Build (or rebuild) the SAE's families over ``corpus``; the build's result."""
    result = None
    for update in client.families.build_families(corpus, sae_id=sae_id):
        result = update.result or result
    if result is None:
        raise RuntimeError("the family service ended the build without its result")
    return result


def run_families(client: FeaturelensClient, sae_id: str | None, *, corpus: str | None = None) -> Section:
    """The families section of ``sae_id`` (None: the server's default SAE); with ``corpus``, the
    families are built first, which also measures their co-occurrence statistics."""
    built = build(client, sae_id, corpus) if corpus else None
    families = list(client.families.list_families(sae_id, page_size=PAGE_SIZE))
    children = [family.children for family in families]
    members: set[int] = set()
    for family in families:
        members.update(family.features)
    data: dict[str, Any] = {
        "sae_id": families[0].sae_id if families else sae_id,
        "corpus": corpus or (families[0].corpus if families else None),
        "families": len(families),
        "top_level": sum(family.nested_in is None for family in families),
        "nested": sum(family.nested_in is not None for family in families),
        "labelled": sum(bool(family.label) for family in families),
        "median_children": statistics.median(children) if children else math.nan,
        "mean_children": statistics.fmean(children) if children else math.nan,
        "max_children": max(children, default=0),
        "depths": {str(d): n for d, n in sorted(Counter(f.depth for f in families).items())},
        "features_in_families": len(members),
        "children": children,
        "build": asdict(built.statistics) | {"llm_calls": built.llm_calls, "cost_usd": built.cost_usd}
        if built
        else None,
        "paper": PAPER,
    }
    figures = {"family_children": lambda path: draw_children(data, path)} if families else {}
    return Section(name="families", data=data, markdown=families_markdown(data), figures=figures)


def _n(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def families_markdown(data: Mapping[str, Any]) -> str:
    """The section's Markdown: a headline and the statistics table beside the paper's."""
    paper = data["paper"]
    build = data["build"]
    lines = [
        "## Feature families",
        "",
        f"**Families of `{data['sae_id']}`: {data['families']:,} families, median "
        f"{_n(data['median_children'])} children (paper: {paper['families']} families, median "
        f"{paper['median_children']}, {paper['sae']}).**",
        "",
        "| statistic | ours | paper |",
        "|---|---:|---:|",
        f"| families | {data['families']:,} | {paper['families']} |",
        f"| median children | {_n(data['median_children'])} | {paper['median_children']} |",
        f"| mean children | {_n(data['mean_children'])} | – |",
        f"| most children | {data['max_children']:,} | – |",
        f"| top-level / nested | {data['top_level']:,} / {data['nested']:,} | – |",
        f"| labelled | {data['labelled']:,} | – |",
        f"| features in a family | {data['features_in_families']:,} | – |",
    ]
    if build:
        lines += [
            f"| parent–child co-occurrence (mean) | {_n(build['parent_child'], 3)} | – |",
            f"| child–child co-occurrence (mean) | {_n(build['child_child'], 3)} | – |",
            f"| block-diagonal score / permuted control | {_n(build['block_score'], 3)} / "
            f"{_n(build['block_control'], 3)} | – |",
        ]
    depths = ", ".join(f"depth {d}: {n}" for d, n in data["depths"].items())
    lines += ["", f"Tree depths: {depths or 'none'}."]
    if build:
        lines += [
            "",
            f"Built over corpus `{data['corpus']}` for this report ({build['llm_calls']} LLM calls, "
            f"${build['cost_usd']:.4f} for the family labels).",
        ]
    else:
        lines += ["", "Read from the stored families; the co-occurrence statistics come only with a build."]
    lines += [
        "",
        "The number of families scales with the SAE and the corpus: the paper's SAE had three times "
        "our demo's latents and twenty times its abstracts, so compare the median size more than the count.",
    ]
    return "\n".join(lines) + "\n"


def draw_children(data: Mapping[str, Any], path: Path) -> None:
    """Histogram of the number of children per family, the paper's median marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.6, 3.6), dpi=100)
    axes = figure.add_subplot()
    children = data["children"]
    axes.hist(children, bins=range(0, max(children) + 2), color="tab:blue", alpha=0.75)
    axes.axvline(data["median_children"], color="tab:blue", linestyle="-", label="our median")
    axes.axvline(data["paper"]["median_children"], color="grey", linestyle=":", label="paper's median")
    axes.set_xlabel("children per family")
    axes.set_ylabel("families")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")
