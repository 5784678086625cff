"""``featurelens embed``: a corpus file into an embedding store, through the encoder service.

Resumable: rows already in the store are skipped, so running the same command again after an
interruption embeds only what is missing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

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

if TYPE_CHECKING:
    from featurelens.corpus import RowError

#: Malformed rows reported one by one before the rest are only counted.
SHOWN_ROW_ERRORS = 5


class RateColumn(ProgressColumn):
    """Rows per second, as rich estimates it from recent updates."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- rows/s" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")


def embed(
    corpus: Annotated[Path, typer.Argument(help="Corpus file: JSONL, JSONL.gz, CSV or Parquet.")],
    out: Annotated[Path, typer.Option("--out", help="Embedding store folder (created or resumed).")],
    model: Annotated[
        str | None, typer.Option(help="Encoder model id or backend; default: the server's.")
    ] = None,
    address: AddressOption = DEFAULT_ADDRESS,
    api_key: ApiKeyOption = None,
    tls_ca: TlsCaOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Embed at most this many records.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per Embed call.")] = 256,
    strict: Annotated[
        bool, typer.Option(help="Stop at the first malformed row instead of skipping it.")
    ] = False,
) -> None:
    """Embed a corpus with the running encoder service into an embedding store."""
    try:
        from featurelens.corpus import CorpusError, count_records, read_corpus
        from featurelens.embedding.ingest import embed_corpus
        from featurelens.embedding.store import EmbeddingStore, EmbeddingStoreError
    except ModuleNotFoundError as error:
        raise fail(
            "`featurelens embed` needs featurelens-core: pip install 'featurelens-client[server]'"
        ) from error

    row_errors: list[RowError] = []

    def on_row_error(row_error: RowError) -> None:
        row_errors.append(row_error)
        if len(row_errors) <= SHOWN_ROW_ERRORS:
            err_console.print(
                f"[yellow]skipped line {row_error.line_number}:[/] {row_error.reason}",
                highlight=False,
                soft_wrap=True,
            )

    try:
        total = count_records(corpus)
        records = read_corpus(corpus, strict=strict, on_error=on_row_error, limit=limit)
    except CorpusError as error:
        raise fail(str(error), code=2) from error
    if limit is not None:
        total = min(total, limit)

    truncated = 0
    started = time.perf_counter()
    with reporting_errors(address), connect(address, api_key, tls_ca) as client:
        # One tiny call settles which model answers (an alias or the default) and its dimension.
        probe = client.encoder.embed(["featurelens"], model=model)
        model_id, dim = probe.model_id, probe.dim

        def embed_texts(texts: list[str]) -> np.ndarray:
            nonlocal truncated
            result = client.encoder.embed(texts, model=model_id)
            truncated += sum(result.truncated)
            return result.vectors

        try:
            store = EmbeddingStore.open_or_create(out, model_id, dim, source_path=str(corpus))
        except EmbeddingStoreError as error:
            raise fail(str(error), code=2) from error

        with store, _progress_bar() as bar:
            task = bar.add_task(f"embedding with {model_id}", total=total)
            try:
                result = embed_corpus(
                    records,
                    store,
                    embed_texts,
                    batch_size=batch_size,
                    progress=lambda processed, _embedded: bar.update(task, completed=processed),
                )
            except CorpusError as error:
                raise fail(
                    f"{error} (rows embedded so far are kept; fix the file and run again)", 2
                ) from error
            except KeyboardInterrupt:
                bar.stop()
                raise fail(
                    f"interrupted; {len(store):,} rows are safely in {out}: run the same command to resume",
                    130,
                ) from None
            rows_in_store = len(store)

    elapsed = time.perf_counter() - started
    rate = result.embedded / elapsed if elapsed > 0 else 0.0
    console.print(
        f"embedded {result.embedded:,} rows with {model_id} (dim {dim}) in {elapsed:.1f} s "
        f"({rate:,.0f} rows/s); {result.skipped:,} were already there; "
        f"{out} now holds {rows_in_store:,} rows",
        highlight=False,
        soft_wrap=True,
    )
    if row_errors:
        console.print(
            f"[yellow]{len(row_errors):,} malformed rows skipped[/]", highlight=False, soft_wrap=True
        )
    if truncated:
        console.print(
            f"[yellow]{truncated:,} texts were cut to the model's input limit[/]",
            highlight=False,
            soft_wrap=True,
        )


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
