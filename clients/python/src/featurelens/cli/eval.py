"""``featurelens eval``: the paper's findings measured on this stack, written as a report.

Each command writes ``report.json``, PNG figures and ``summary.md`` into ``--out`` (default
``.featurelens/eval/<UTC time>``) and prints the summary's headline lines. ``scaling`` trains SAEs
here, on local embeddings (like ``featurelens sae sweep``); the others call a running server
through the SDK, so they measure the product. ``all`` runs every part into one report.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

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
from featurelens.evaluation.llm_judge import LlmOptions
from featurelens.evaluation.report import Section, write_report
from featurelens.evaluation.runner import PARTS, QUICK_TRIALS, headlines, machine, run_all
from featurelens.evaluation.scaling import ScalingOptions

if TYPE_CHECKING:
    from featurelens.sae import SaeConfig, StepMetrics
    from featurelens.sae.sweep import SweepCallbacks, SweepRun

eval_app = typer.Typer(
    name="eval",
    help="Measure the paper's findings on this stack (scaling, labels, steering, families) and write "
    "a report: report.json, PNG figures and summary.md.",
    no_args_is_help=True,
)

OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Folder for the report; default .featurelens/eval/<UTC time>."),
]
QuickOption = Annotated[bool, typer.Option("--quick", help="A first look: a smaller grid, fewer trials.")]
CorpusOption = Annotated[str, typer.Option("--corpus", help="The indexed corpus to evaluate on.")]
CorpusPathOption = Annotated[
    Path | None,
    typer.Option("--corpus-path", help="The corpus file (JSONL / JSONL.gz): steering's held-out queries."),
]
SaeOption = Annotated[str | None, typer.Option("--sae", help="The SAE to evaluate; default: the server's.")]
EmbeddingsOption = Annotated[
    Path | None,
    typer.Option("--embeddings", help="Embedding store directory (or .npy) the scaling sweep trains on."),
]
SeedOption = Annotated[int, typer.Option("--seed", min=0, help="Seeds the sampling and the training.")]
DeviceOption = Annotated[str, typer.Option("--device", help="Torch device of the scaling sweep.")]
LlmJudgeOption = Annotated[
    bool,
    typer.Option(
        "--llm-judge",
        help="Also the paper's LLM judge and an LLM rewrite baseline, through the labelling server's "
        "LLM (it needs an endpoint: FEATURELENS_LLM_BASE_URL there, or --llm-base-url).",
    ),
]
LlmModelOption = Annotated[
    str | None,
    typer.Option("--llm-model", help="The judge's model; default: the server's interpreter model."),
]
LlmBaseUrlOption = Annotated[
    str | None,
    typer.Option("--llm-base-url", help="An OpenAI-compatible endpoint the labelling server allows."),
]
LlmBudgetOption = Annotated[
    float, typer.Option("--llm-budget", help="Most US dollars the run may spend on LLM calls.")
]


def _llm_options(judge: bool, model: str | None, base_url: str | None, budget: float) -> LlmOptions | None:
    """The LLM judge's settings, or None without --llm-judge (the other --llm-* options need it)."""
    if not judge:
        if model or base_url:
            raise fail("--llm-model and --llm-base-url go with --llm-judge.", 2)
        return None
    try:
        return LlmOptions(model=model, base_url=base_url, budget_usd=budget)
    except ValueError as error:
        raise fail(f"--llm-budget: {error}", 2) from error


def _out_folder(out: Path | None) -> Path:
    if out is not None:
        return out
    return Path(".featurelens") / "eval" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def _command() -> str:
    return "featurelens " + shlex.join(sys.argv[1:])


def _finish(folder: Path, sections: Sequence[Section], meta: dict[str, Any]) -> None:
    """Write the report and print its headlines and where it is."""
    write_report(folder, sections, meta)
    _print_headlines(folder, sections)


def _print_headlines(folder: Path, sections: Sequence[Section]) -> None:
    for line in headlines(sections):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"report: {folder / 'summary.md'}", highlight=False, soft_wrap=True)


def _meta(**extra: Any) -> dict[str, Any]:
    return {
        "command": _command(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **extra,
    }


@contextmanager
def _working(what: str) -> Iterator[None]:
    """A spinner on stderr while a part runs (the services report no finer progress to this side)."""
    with err_console.status(f"{what}..."):
        yield


def _parse_sizes(value: str | None, option: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        sizes = tuple(int(part) for part in value.replace(" ", "").split(",") if part)
    except ValueError:
        sizes = ()
    if not sizes or any(size < 1 for size in sizes):
        raise fail(f"{option} takes comma-separated positive whole numbers like 768,1536; got {value!r}.", 2)
    return sizes


def _scaling_options(
    embeddings: Path, quick: bool, latents: str | None, ks: str | None, seed: int, device: str
) -> ScalingOptions:
    base = ScalingOptions.quick(embeddings) if quick else ScalingOptions(embeddings)
    try:
        return ScalingOptions(
            embeddings,
            latents=_parse_sizes(latents, "--latents") or base.latents,
            ks=_parse_sizes(ks, "--k") or base.ks,
            epochs=base.epochs,
            seed=seed,
            device=device,
        )
    except ValueError as error:
        raise fail(str(error), 2) from error


@contextmanager
def _sweep_progress() -> Iterator[SweepCallbacks]:
    """Rich progress bars for the sweep: one for the grid, one for the run in progress."""
    from featurelens.sae.sweep import SweepCallbacks

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=err_console,
    )
    with bar:
        grid = bar.add_task("scaling sweep", total=None, note="")
        current: list[TaskID] = []

        def start(index: int, total: int, config: SaeConfig) -> None:
            bar.update(grid, total=total, completed=index)
            current.append(bar.add_task(f"  latents {config.num_latents} k {config.k}", total=None, note=""))

        def step(index: int, metrics: StepMetrics) -> None:
            note = f"NMSE {metrics.nmse:.3f} dead {metrics.dead_fraction:.1%}"
            bar.update(current[-1], completed=metrics.step, total=metrics.total_steps, note=note)

        def end(index: int, run: SweepRun) -> None:
            bar.update(grid, completed=index + 1)
            val = "–" if run.val_nmse is None else f"{run.val_nmse:.3f}"
            bar.update(current[-1], note=f"train NMSE {run.train_nmse:.3f}, held-out {val}")

        yield SweepCallbacks(on_run_start=start, on_step=step, on_run_end=end, step_every=5)


def _run_scaling(options: ScalingOptions) -> Section:
    from featurelens.evaluation.scaling import run_scaling

    try:
        with _sweep_progress() as callbacks:
            return run_scaling(options, callbacks)
    except ModuleNotFoundError as error:
        raise fail("`eval scaling` trains SAEs here: pip install 'featurelens-client[server]'") from error
    except ValueError as error:
        raise fail(str(error), 2) from error


@eval_app.command("scaling")
def scaling(
    embeddings: Annotated[
        Path, typer.Option("--embeddings", help="Embedding store directory (or .npy) to train the grid on.")
    ],
    out: OutOption = None,
    quick: QuickOption = False,
    latents: Annotated[
        str | None, typer.Option("--latents", help="Latents of the grid, e.g. 768,1536.")
    ] = None,
    ks: Annotated[str | None, typer.Option("--k", help="k of the grid, e.g. 16,32.")] = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
) -> None:
    """Train a grid of SAEs here and fit NMSE against latents, held-out beside training."""
    options = _scaling_options(embeddings, quick, latents, ks, seed, device)
    section = _run_scaling(options)
    _finish(_out_folder(out), [section], _meta(embeddings=str(embeddings), quick=quick))


@eval_app.command("labels")
def labels(
    sae_ids: Annotated[
        list[str] | None,
        typer.Option("--sae", help="An SAE whose labels to read (repeat for several); default: every SAE."),
    ] = None,
    out: OutOption = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """The distributions of the label scores per SAE and the share of clean features."""
    from featurelens.evaluation.labels import run_labels

    with reporting_errors(address), connect(address, api_key, tls_ca) as client, _working("reading labels"):
        section = run_labels(client, sae_ids or None)
    _finish(_out_folder(out), [section], _meta(sae_ids=sae_ids or "every SAE"))


@eval_app.command("families")
def families(
    sae_id: SaeOption = None,
    corpus: Annotated[
        str | None,
        typer.Option(
            "--corpus",
            help="Build the families over this indexed corpus first (gives the "
            "co-occurrence statistics); default: read the stored families only.",
        ),
    ] = None,
    out: OutOption = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """The family statistics table beside the paper's."""
    from featurelens.evaluation.families import run_families

    with reporting_errors(address), connect(address, api_key, tls_ca) as client, _working("families"):
        section = run_families(client, sae_id, corpus=corpus)
    _finish(_out_folder(out), [section], _meta(sae_id=sae_id, corpus=corpus))


@eval_app.command("steering")
def steering(
    corpus_path: Annotated[
        Path,
        typer.Option("--corpus-path", help="The corpus file (JSONL / JSONL.gz) of the held-out queries."),
    ],
    corpus: CorpusOption = "astro",
    sae_id: SaeOption = None,
    trials: Annotated[int | None, typer.Option("--trials", min=1, help="Trials per direction.")] = None,
    quick: QuickOption = False,
    seed: SeedOption = 0,
    llm_judge: LlmJudgeOption = False,
    llm_model: LlmModelOption = None,
    llm_base_url: LlmBaseUrlOption = None,
    llm_budget: LlmBudgetOption = 2.0,
    out: OutOption = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Steering accuracy against cos(q, q′), SAE steering beside query rewriting (objective judge;
    the paper's LLM judge too with --llm-judge)."""
    try:
        from featurelens.evaluation.llm_judge import LlmJudgeError
        from featurelens.evaluation.steering import SteeringOptions, run_steering
    except ImportError as error:
        raise fail(f"the steering evaluation is not installed here: {error}") from error
    try:
        llm = _llm_options(llm_judge, llm_model, llm_base_url, llm_budget)
        options = SteeringOptions(corpus=corpus, corpus_path=corpus_path, sae_id=sae_id, seed=seed, llm=llm)
        if trials or quick:
            options = dataclasses.replace(options, trials=trials or QUICK_TRIALS)
    except ValueError as error:
        raise fail(str(error), 2) from error
    with reporting_errors(address), connect(address, api_key, tls_ca) as client, _working("steering trials"):
        try:
            section = run_steering(client, options)
        except LlmJudgeError as error:
            raise fail(str(error)) from error
    _finish(_out_folder(out), [section], _meta(sae_id=sae_id, corpus=corpus, quick=quick))


@eval_app.command("all")
def all_parts(
    corpus: CorpusOption = "astro",
    corpus_path: CorpusPathOption = None,
    embeddings: EmbeddingsOption = None,
    sae_id: SaeOption = None,
    quick: QuickOption = False,
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", help=f"A part to leave out (repeat for several): {', '.join(PARTS)}."),
    ] = None,
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    llm_judge: LlmJudgeOption = False,
    llm_model: LlmModelOption = None,
    llm_base_url: LlmBaseUrlOption = None,
    llm_budget: LlmBudgetOption = 2.0,
    out: OutOption = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
) -> None:
    """Every part into one report; scaling needs --embeddings, steering --corpus-path."""
    llm = _llm_options(llm_judge, llm_model, llm_base_url, llm_budget)
    unknown = sorted(set(skip or ()) - set(PARTS))
    if unknown:
        raise fail(f"--skip takes {', '.join(PARTS)}; got {', '.join(unknown)}.", 2)
    scaling_options = _scaling_options(embeddings, quick, None, None, seed, device) if embeddings else None
    folder = _out_folder(out)
    with reporting_errors(address), connect(address, api_key, tls_ca) as client, ExitStack() as stack:
        callbacks = None
        if scaling_options is not None and "scaling" not in (skip or ()):
            callbacks = stack.enter_context(_sweep_progress())
        outcome = run_all(
            client,
            folder,
            corpus=corpus,
            corpus_path=corpus_path,
            sae_id=sae_id,
            scaling=scaling_options,
            quick=quick,
            skip=skip or (),
            command=_command(),
            seed=seed,
            llm=llm,
            scaling_callbacks=callbacks,
            on_part=lambda name: err_console.print(f"eval: {name}", highlight=False),
        )
    _print_headlines(folder, outcome.sections)
    if outcome.failed:
        raise fail(f"parts failed: {', '.join(outcome.failed)} (their reasons are in the report)")
