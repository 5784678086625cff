"""``featurelens label``: label the features of an SAE through the labelling service.

Resumable: features that already have a label are skipped (``--overwrite`` relabels them), so
running the same command again after an interruption, or after the budget stopped it, labels
only what is missing. Answers of the LLM are cached by the service, so a rerun costs nothing for
what was asked before.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

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
from featurelens.cli.feature_views import best_first, labels_table
from featurelens.client import FeatureLabel, LabelProgress

#: Failures reported one by one as they happen before the rest are only counted.
SHOWN_FAILURES = 5
#: Labels shown at the end, best first.
SHOWN_LABELS = 5


def parse_features(value: str) -> list[int]:
    """Latent ids from "1,2,3"; exit 2 with a sentence naming --features otherwise."""
    try:
        features = [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        features = []
    if not features or any(f < 0 for f in features):
        raise fail(f"--features takes comma-separated latent ids (0 or more) like 1,2,3; got {value!r}.", 2)
    return features


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[cost]} · {task.fields[calls]} LLM calls · {task.fields[hits]} cache hits"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def label(
    sae_id: Annotated[str, typer.Argument(help="The SAE whose features to label.")],
    corpus: Annotated[
        str, typer.Option("--corpus", help="Indexed corpus whose documents show the features.")
    ],
    features: Annotated[
        str | None, typer.Option("--features", help="Comma-separated latent ids; default: every live one.")
    ] = None,
    llm_base_url: Annotated[
        str | None,
        typer.Option(
            "--llm-base-url",
            help="OpenAI-compatible endpoint for this job (one the server allows); "
            "default: the server's. The API key is always the server's own.",
        ),
    ] = None,
    interpreter: Annotated[
        str | None,
        typer.Option(
            "--interpreter",
            help="Model that writes the labels; default: the server's (the offline labeller, "
            "no LLM, in `featurelens up`).",
        ),
    ] = None,
    predictor: Annotated[
        str | None,
        typer.Option(
            "--predictor", help="Model that predicts activations to score them; default: the server's."
        ),
    ] = None,
    budget_usd: Annotated[
        float | None,
        typer.Option(
            "--budget-usd",
            min=0.0,
            help="Most US dollars this job may spend on LLM calls; default: the server's budget. "
            "The job stops cleanly before a call would pass it.",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Relabel features that already have a label.")
    ] = False,
    domain: Annotated[
        str | None,
        typer.Option(
            "--domain",
            help='What the corpus is, told to the models, e.g. "astrophysics arXiv abstracts".',
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seeds the choice of documents.")] = 0,
    top_documents: Annotated[
        int | None,
        typer.Option(
            "--top-documents",
            min=1,
            help="Top-activating documents shown to the interpreter; default 10 for an LLM, 20 offline.",
        ),
    ] = None,
    scoring_documents: Annotated[
        int | None,
        typer.Option(
            "--scoring-documents",
            min=4,
            help="Held-out documents scored per label (half firing, a quarter random and a quarter hard "
            "negatives; a multiple of 4); default 40.",
        ),
    ] = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Label the features of an SAE and score each label; shows progress, cost and cache hits."""
    chosen = parse_features(features) if features is not None else []
    labels: list[FeatureLabel] = []
    last: LabelProgress | None = None
    reported_failures = 0
    started = time.perf_counter()
    with reporting_errors(address), connect(address, api_key, tls_ca) as client, _progress_bar() as bar:
        task = bar.add_task(f"labelling {sae_id}", total=None, cost="$0.0000", calls="0", hits="0")
        events = client.labelling.label_features(
            sae_id,
            corpus,
            features=chosen,
            interpreter_model=interpreter,
            predictor_model=predictor,
            top_documents=top_documents,
            scoring_documents=scoring_documents,
            overwrite=overwrite,
            seed=seed,
            domain=domain,
            llm_base_url=llm_base_url,
            budget_usd=budget_usd,
        )
        try:
            for event in events:
                if event.label is not None:
                    labels.append(event.label)
                if event.failed > (last.failed if last else 0) and reported_failures < SHOWN_FAILURES:
                    reported_failures += 1
                    bar.console.print(
                        f"[yellow]feature {event.failed_feature} failed:[/] {event.failure_reason}",
                        highlight=False,
                        soft_wrap=True,
                    )
                last = event
                bar.update(
                    task,
                    completed=event.progress.done,
                    total=event.progress.total or None,
                    cost=f"${event.cost_usd:,.4f}",
                    calls=f"{event.llm_calls:,}",
                    hits=f"{event.cache_hits:,}",
                )
        except KeyboardInterrupt:
            bar.stop()
            raise fail(
                f"interrupted; the {len(labels):,} labels finished are kept: run the same command to go on",
                130,
            ) from None
    _print_summary(sae_id, labels, last, budget_usd, time.perf_counter() - started)


def _print_summary(
    sae_id: str,
    labels: list[FeatureLabel],
    last: LabelProgress | None,
    budget_usd: float | None,
    seconds: float,
) -> None:
    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    skipped = last.skipped if last else 0
    failed = last.failed if last else 0
    parts = [f"labelled {len(labels):,} features of {sae_id} in {seconds:.1f} s"]
    parts.append(
        f"{skipped:,} skipped (already labelled; --overwrite relabels them)" if skipped else "0 skipped"
    )
    parts.append(f"{failed:,} failed")
    say("; ".join(parts))
    if last is not None and last.failed_feature is not None:
        say(f"[yellow]last failure: feature {last.failed_feature}: {last.failure_reason}[/]")
    if last is not None:
        say(
            f"LLM calls: {last.llm_calls:,}; cache hits: {last.cache_hits:,}; "
            f"tokens: {last.tokens_used:,}; cost: ${last.cost_usd:,.4f}"
        )
        if last.budget_exhausted:
            budget = f"the budget of ${budget_usd:g}" if budget_usd else "the server's budget"
            say(
                f"[bold yellow]budget reached:[/] the job stopped because the next LLM call would have "
                f"passed {budget}; the labels finished are kept. Run again (with a larger --budget-usd) "
                "to label the rest."
            )
    if labels:
        shown = best_first(labels)[:SHOWN_LABELS]
        console.print(labels_table(shown, title=f"best {len(shown)} of the new labels"))
