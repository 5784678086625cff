"""`featurelens eval labels`: do the labels predict where their features fire?

The paper (O'Neill et al. 2024, Figure 3) scored each label by how well an LLM predictor, reading
only the label, predicted the feature's activations on held-out abstracts (Pearson r), and showed
the distributions per SAE size. This part reads the stored labels of each SAE through the SDK
(``client.labelling.list_labels``) and reports the distribution of every score the labels carry:
Pearson r and F1 (from the LLM predictor, or from the embedding scorer when the offline labeller
wrote them), AUROC and embedding AUROC (label embedding against document embeddings; no LLM).

A "clean" feature is one whose label separates the documents it fires on from random others
well: embedding AUROC ≥ 0.8, or, where an LLM predicted the activations, Pearson r ≥ 0.7.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featurelens.client import FeatureLabel, FeaturelensClient, NotFoundError
from featurelens.evaluation.report import Section

logger = logging.getLogger(__name__)

#: The scores a label may carry, in the order the tables list them.
METRICS = ("pearson_r", "f1", "auroc", "auroc_hard", "embedding_auroc", "embedding_auroc_hard")
METRIC_NAMES = {
    "pearson_r": "Pearson r",
    "f1": "F1",
    "auroc": "AUROC",
    "auroc_hard": "AUROC (hard negatives)",
    "embedding_auroc": "embedding AUROC",
    "embedding_auroc_hard": "embedding AUROC (hard negatives)",
}
#: A clean feature: its label's embedding AUROC is at least this...
CLEAN_EMBEDDING_AUROC = 0.8
#: ...or, for a label scored by an LLM predictor, its Pearson r is at least this.
CLEAN_PEARSON = 0.7
CLEAN_DEFINITION = (
    f"embedding AUROC ≥ {CLEAN_EMBEDDING_AUROC} (against random non-firing documents), or Pearson r ≥ "
    f"{CLEAN_PEARSON} where an LLM predicted the activations"
)
#: The paper's mean Pearson r per SAE, (k, latents) → mean (LLM predictor, GPT-4o-mini labels).
PAPER_MEAN_PEARSON = {
    "astro": {"(16, 3072)": 0.74, "(32, 6144)": 0.67, "(64, 9216)": 0.67},
    "cs": {"(16, 3072)": 0.56, "(32, 6144)": 0.52, "(64, 9216)": 0.48},
}
#: Labels fetched per page.
PAGE_SIZE = 1000
#: Bins of the histograms, over [-1, 1] for Pearson r and [0, 1] for the others.
BINS = 20


def fetch_labels(client: FeaturelensClient, sae_id: str) -> list[FeatureLabel]:
    """Every stored label of ``sae_id`` (none when the labelling service knows no such SAE)."""
    try:
        return list(client.labelling.list_labels(sae_id, page_size=PAGE_SIZE))
    except NotFoundError:
        logger.info("The labelling service has no labels for %s", sae_id)
        return []


def _values(labels: Sequence[FeatureLabel], metric: str) -> list[float]:
    values = []
    for label in labels:
        value = getattr(label, metric)
        if value is not None and math.isfinite(value):
            values.append(float(value))
    return values


def is_llm_scored(label: FeatureLabel) -> bool:
    """Whether an LLM predicted the activations that ``pearson_r`` and ``f1`` compare with the truth
    (the offline labeller's predictor is the embedding scorer)."""
    return label.predictor_model not in ("", "offline", "embedding") and label.prompt_version != "offline"


def is_clean(label: FeatureLabel) -> bool:
    """Whether the label meets ``CLEAN_DEFINITION``."""
    if label.embedding_auroc >= CLEAN_EMBEDDING_AUROC:
        return True
    return is_llm_scored(label) and label.pearson_r is not None and label.pearson_r >= CLEAN_PEARSON


def distribution(values: Sequence[float]) -> dict[str, Any]:
    """Count, mean, standard deviation and quartiles of ``values`` (NaN where undefined)."""
    if not values:
        return {"n": 0, "mean": math.nan, "std": math.nan, "q1": math.nan, "median": math.nan, "q3": math.nan}
    ordered = sorted(values)
    q1, median, q3 = (
        statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    )
    return {
        "n": len(ordered),
        "mean": statistics.fmean(ordered),
        "std": statistics.stdev(ordered) if len(ordered) > 1 else math.nan,
        "q1": q1,
        "median": median,
        "q3": q3,
    }


def label_statistics(labels: Sequence[FeatureLabel]) -> dict[str, Any]:
    """One SAE's label statistics: the distribution of each score its labels carry, the clean share.

    A score counts as carried when some label has it non-zero (the service writes 0 for a score it
    did not measure, and a real 0 on every label of an SAE would say nothing either), and the
    predictor's AUROCs only when an LLM predicted some activations.
    """
    carried = [m for m in METRICS if any(v != 0 for v in _values(labels, m))]
    if not any(is_llm_scored(label) for label in labels):
        # Without an LLM predictor the service fills the predictor's AUROCs with the embedding
        # scorer's: listing both would count one measurement twice.
        carried = [m for m in carried if m not in ("auroc", "auroc_hard")]
    clean = sum(is_clean(label) for label in labels)
    return {
        "labels": len(labels),
        "llm_scored": sum(is_llm_scored(label) for label in labels),
        "interpreters": sorted({label.interpreter_model for label in labels}),
        "predictors": sorted({label.predictor_model for label in labels}),
        "pearson_undefined": sum(label.pearson_r is None for label in labels),
        "metrics": {m: distribution(_values(labels, m)) for m in carried},
        "clean": clean,
        "clean_share": clean / len(labels) if labels else math.nan,
        "histograms": {m: histogram(_values(labels, m), m) for m in carried},
    }


def histogram(values: Sequence[float], metric: str) -> dict[str, list[float] | list[int]]:
    """Counts of ``values`` in BINS equal bins over the metric's range."""
    low = -1.0 if metric == "pearson_r" else 0.0
    width = (1.0 - low) / BINS
    counts = [0] * BINS
    for value in values:
        counts[min(max(int((value - low) // width), 0), BINS - 1)] += 1
    return {"edges": [low + i * width for i in range(BINS + 1)], "counts": counts}


def run_labels(client: FeaturelensClient, sae_ids: Sequence[str] | None) -> Section:
    """The labels section for ``sae_ids`` (None: every SAE the server lists)."""
    if sae_ids is None:
        sae_ids = [sae.sae_id for sae in client.sae.list_saes()]
    saes: dict[str, Any] = {}
    for sae_id in sae_ids:
        labels = fetch_labels(client, sae_id)
        logger.info("%d labels for %s", len(labels), sae_id)
        saes[sae_id] = label_statistics(labels)
        info = _sae_shape(client, sae_id)
        saes[sae_id] |= info
    data = {
        "saes": saes,
        "clean_definition": CLEAN_DEFINITION,
        "paper_mean_pearson": PAPER_MEAN_PEARSON,
    }
    figures = {}
    if any(s["labels"] for s in saes.values()):
        figures["label_scores"] = lambda path: draw_histograms(data, path)
    return Section(name="labels", data=data, markdown=labels_markdown(data), figures=figures)


def _sae_shape(client: FeaturelensClient, sae_id: str) -> dict[str, Any]:
    """The SAE's (k, latents), so a row can be set beside the paper's SAE of the same shape."""
    try:
        config = client.sae.get_sae(sae_id).config
    except NotFoundError:
        return {"k": None, "num_latents": None}
    return {"k": config.k, "num_latents": config.num_latents}


def _n(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def labels_markdown(data: Mapping[str, Any]) -> str:
    """The section's Markdown: a headline per SAE, a table of the score distributions, the paper's."""
    lines = ["## Labels: do they predict where their features fire?", ""]
    saes = data["saes"]
    for sae_id, stats in saes.items():
        if not stats["labels"]:
            lines += [
                f"**Labels of `{sae_id}`: none stored (label the SAE first: `featurelens label`).**",
                "",
            ]
            continue
        pearson = stats["metrics"].get("pearson_r", {}).get("mean")
        auroc = stats["metrics"].get("embedding_auroc", {}).get("mean")
        scorer = "LLM predictor" if stats["llm_scored"] == stats["labels"] else "embedding scorer"
        if 0 < stats["llm_scored"] < stats["labels"]:
            scorer = f"LLM predictor for {stats['llm_scored']:,}, embedding scorer for the rest"
        lines += [
            f"**Labels of `{sae_id}`{_shape(stats)}: {stats['labels']:,} labels, mean Pearson r "
            f"{_n(pearson)} ({scorer}), mean embedding AUROC {_n(auroc)}, "
            f"clean {stats['clean_share']:.0%}.**",
            "",
        ]
    lines += [
        "| SAE | score | n | mean | median | [q1, q3] |",
        "|---|---|---:|---:|---:|---|",
    ]
    for sae_id, stats in saes.items():
        for metric, dist in stats["metrics"].items():
            lines.append(
                f"| `{sae_id}` | {METRIC_NAMES[metric]} | {dist['n']:,} | {_n(dist['mean'])} | "
                f"{_n(dist['median'])} | [{_n(dist['q1'])}, {_n(dist['q3'])}] |"
            )
    paper = data["paper_mean_pearson"]
    lines += [
        "",
        f"Clean: {data['clean_definition']}.",
        "",
        "Paper, mean Pearson r (GPT-4o-mini predictor), (k, latents): astro "
        + ", ".join(f"{shape} {value}" for shape, value in paper["astro"].items())
        + "; cs "
        + ", ".join(f"{shape} {value}" for shape, value in paper["cs"].items())
        + ". A Pearson r from the embedding scorer (offline labels) is the cosine between the label's "
        "and each document's embedding correlated with the activation: it is not the paper's LLM "
        "prediction, so set only LLM-scored rows beside those numbers.",
    ]
    undefined = sum(s["pearson_undefined"] for s in saes.values())
    if undefined:
        lines += ["", f"{undefined:,} labels have no Pearson r (constant predictions or truth); left out."]
    return "\n".join(lines) + "\n"


def _shape(stats: Mapping[str, Any]) -> str:
    if stats.get("k") is None:
        return ""
    return f" (k {stats['k']}, {stats['num_latents']:,} latents)"


def draw_histograms(data: Mapping[str, Any], path: Path) -> None:
    """One panel per score (Pearson r, F1, embedding AUROC where carried), one step line per SAE:
    the distributions of the paper's Figure 3."""
    from matplotlib.figure import Figure

    shown = [m for m in ("pearson_r", "f1", "embedding_auroc", "auroc") if any(
        m in s["histograms"] for s in data["saes"].values())]  # fmt: skip
    figure = Figure(figsize=(4.2 * max(1, len(shown)), 3.6), dpi=100)
    panels = figure.subplots(1, max(1, len(shown)), squeeze=False)[0]
    for axes, metric in zip(panels, shown, strict=False):
        for sae_id, stats in data["saes"].items():
            hist = stats["histograms"].get(metric)
            if hist is None:
                continue
            axes.stairs(hist["counts"], hist["edges"], label=sae_id, linewidth=1.5)
        axes.set_xlabel(METRIC_NAMES[metric])
        axes.set_ylabel("features")
        axes.grid(alpha=0.3)
    panels[0].legend(fontsize=8)
    figure.suptitle("Label scores per SAE", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png")
