"""Streaming corpus readers for JSONL, CSV (both optionally gzip-compressed) and Parquet."""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

from featurelens.corpus.records import CorpusError, FieldMapping, Record, RowError
from featurelens.corpus.rows import InvalidRowError, row_to_record

logger = logging.getLogger(__name__)

CorpusFormat = Literal["jsonl", "csv", "parquet"]
"""A corpus file format; gzip compression of JSONL and CSV is recognised from the file's first bytes."""

_FORMAT_NAMES: dict[str, CorpusFormat] = {
    "jsonl": "jsonl",
    "jsonl.gz": "jsonl",
    "ndjson": "jsonl",
    "ndjson.gz": "jsonl",
    "csv": "csv",
    "csv.gz": "csv",
    "parquet": "parquet",
    "pq": "parquet",
}
_GZIP_MAGIC = b"\x1f\x8b"
_EXCERPT_CHARS = 200
_PARQUET_BATCH_ROWS = 1024
_COUNT_CHUNK_BYTES = 1 << 20


class _RawRow(NamedTuple):
    """A source row before validation; `problem` is set when the row could not even be parsed."""

    line_number: int
    row: Mapping[str, Any] | None
    raw: object
    problem: str | None = None


def detect_format(path: Path | str, format: str | None = None) -> CorpusFormat:
    """The format of a corpus file: `format` when given, else from the file name's suffix.

    Raises `CorpusError` when neither names a known format.
    """
    path = Path(path)
    if format is not None:
        resolved = _FORMAT_NAMES.get(format.lower().lstrip("."))
        if resolved is None:
            raise CorpusError(
                f"Unknown corpus format {format!r}; use one of 'jsonl', 'csv' or 'parquet'.", path=path
            )
        return resolved
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    resolved = _FORMAT_NAMES.get(suffixes[-1].lstrip(".")) if suffixes else None
    if resolved is None:
        raise CorpusError(
            f"Cannot tell the format of corpus file {path} from its name; expected a .jsonl, .jsonl.gz, "
            ".csv, .csv.gz or .parquet suffix, or pass format='jsonl', 'csv' or 'parquet'.",
            path=path,
        )
    return resolved


def read_corpus(
    path: Path | str,
    *,
    fields: FieldMapping = FieldMapping(),
    strict: bool = False,
    on_error: Callable[[RowError], None] | None = None,
    limit: int | None = None,
    format: str | None = None,
) -> Iterator[Record]:
    """Stream the records of a corpus file, one validated `Record` at a time, in file order.

    Reads JSONL and CSV (plain or gzip-compressed) line by line and Parquet in row batches, so memory
    stays flat whatever the file size. The format comes from the suffix unless `format` is given.

    A malformed row (unparsable JSON, a missing id, an empty body, a field of the wrong type, an id
    seen before) is skipped and reported as a `RowError`: to `on_error` when given, else as a logged
    warning. With `strict=True` the first such row raises `CorpusError` naming the file and line.
    `limit` stops after that many records. A missing file, an unknown format or a header without the
    id or body column raises `CorpusError` at once.
    """
    path = Path(path)
    kind = detect_format(path, format)
    if not path.is_file():
        raise CorpusError(f"Corpus file {path} does not exist (or is not a file).", path=path)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be zero or positive, got {limit}")
    raw_rows = _RAW_ROW_READERS[kind](path, fields)
    return _validated_records(path, raw_rows, fields, strict=strict, on_error=on_error, limit=limit)


def count_records(path: Path | str, *, format: str | None = None) -> int:
    """A fast count of the rows of a corpus file, for progress totals.

    JSONL: the number of lines; CSV: the number of data rows; Parquet: the row count from the file's
    metadata. Malformed rows (and, for JSONL, blank lines) count too, so this is an upper bound on
    what `read_corpus` yields.
    """
    path = Path(path)
    kind = detect_format(path, format)
    if not path.is_file():
        raise CorpusError(f"Corpus file {path} does not exist (or is not a file).", path=path)
    if kind == "parquet":
        return _count_parquet_rows(path)
    if kind == "csv":
        return _count_csv_rows(path)
    return _count_lines(path)


def _validated_records(
    path: Path,
    raw_rows: Iterator[_RawRow],
    fields: FieldMapping,
    *,
    strict: bool,
    on_error: Callable[[RowError], None] | None,
    limit: int | None,
) -> Iterator[Record]:
    if limit == 0:
        return
    seen_ids: set[str] = set()
    produced = 0
    skipped = 0
    for raw_row in raw_rows:
        problem = raw_row.problem
        record: Record | None = None
        if problem is None and raw_row.row is not None:
            try:
                record = row_to_record(raw_row.row, fields)
            except InvalidRowError as exc:
                problem = str(exc)
        if record is not None and record.id in seen_ids:
            problem = f"duplicate id {record.id!r}; the first row with this id was kept"
            record = None
        if record is None:
            skipped += 1
            error = RowError(raw_row.line_number, problem or "the row is empty", _excerpt(raw_row.raw))
            _report(path, error, strict=strict, on_error=on_error)
            continue
        seen_ids.add(record.id)
        yield record
        produced += 1
        if limit is not None and produced >= limit:
            break
    if skipped:
        logger.info("Read %d records from %s and skipped %d malformed rows.", produced, path, skipped)


def _report(
    path: Path, error: RowError, *, strict: bool, on_error: Callable[[RowError], None] | None
) -> None:
    if strict:
        raise CorpusError(
            f"{path}, line {error.line_number}: {error.reason} (row starts: {error.raw_excerpt!r})",
            path=path,
            line_number=error.line_number,
        )
    if on_error is not None:
        on_error(error)
    else:
        logger.warning("Skipped %s, line %d: %s", path, error.line_number, error.reason)


def _excerpt(raw: object) -> str:
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", errors="replace")
    elif isinstance(raw, str):
        text = raw
    else:
        text = repr(raw)
    text = text.strip()
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"


def _open_binary(path: Path) -> io.BufferedReader | gzip.GzipFile:
    """Open a file for reading bytes, decompressing it when it starts with the gzip magic number."""
    with path.open("rb") as probe:
        is_gzip = probe.read(2) == _GZIP_MAGIC
    if is_gzip:
        return gzip.open(path, "rb")
    return path.open("rb")


def _open_text(path: Path) -> io.TextIOWrapper:
    # utf-8-sig drops the byte-order mark that spreadsheet exports put first; newline="" is what csv wants.
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", newline="")


def _jsonl_rows(path: Path, fields: FieldMapping) -> Iterator[_RawRow]:
    with _open_binary(path) as handle:
        line_number = 0
        try:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    parsed = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield _RawRow(line_number, None, line, f"the line is not valid JSON ({exc.msg})")
                    continue
                except UnicodeDecodeError:
                    yield _RawRow(line_number, None, line, "the line is not valid UTF-8")
                    continue
                if not isinstance(parsed, dict):
                    kind = type(parsed).__name__
                    yield _RawRow(line_number, None, line, f"expected a JSON object, got a JSON {kind}")
                    continue
                yield _RawRow(line_number, parsed, line)
        except (EOFError, OSError, zlib.error) as exc:
            raise _damaged(path, line_number, exc) from exc


def _csv_rows(path: Path, fields: FieldMapping) -> Iterator[_RawRow]:
    with _open_text(path) as text:
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise _not_utf8(path) from exc
        header = [name.strip() for name in header]
        _require_columns(path, header, fields, what="CSV header")
        last_line = reader.line_num
        while True:
            start_line = last_line + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                last_line = reader.line_num
                yield _RawRow(start_line, None, "", f"the row is not valid CSV ({exc})")
                continue
            except UnicodeDecodeError as exc:
                raise _not_utf8(path) from exc
            last_line = reader.line_num
            if not cells:
                continue
            if len(cells) != len(header):
                problem = f"the row has {len(cells)} cells but the header has {len(header)}"
                yield _RawRow(start_line, None, ",".join(cells), problem)
                continue
            yield _RawRow(start_line, dict(zip(header, cells, strict=True)), ",".join(cells))


def _parquet_rows(path: Path, fields: FieldMapping) -> Iterator[_RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise CorpusError(f"{path} is not a readable Parquet file ({exc}).", path=path) from exc
    with parquet:
        names = list(parquet.schema_arrow.names)
        _require_columns(path, names, fields, what="Parquet schema")
        columns = list(dict.fromkeys(name for name in fields.source_fields() if name in names))
        row_number = 0
        batches = parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as exc:
                raise CorpusError(
                    f"{path} cannot be read past row {row_number}: the Parquet data is damaged ({exc}).",
                    path=path,
                    line_number=row_number + 1,
                ) from exc
            for row in batch.to_pylist():
                row_number += 1
                yield _RawRow(row_number, row, row)


def _require_columns(path: Path, names: list[str], fields: FieldMapping, *, what: str) -> None:
    missing = [name for name in (fields.id, fields.text) if name not in names]
    if missing:
        raise CorpusError(
            f"The {what} of {path} has no column {missing[0]!r} (columns: {', '.join(names)}); "
            "pass a FieldMapping that names the id and body columns.",
            path=path,
        )


def _count_parquet_rows(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as parquet:
            return int(parquet.metadata.num_rows)
    except (pa.ArrowException, OSError) as exc:
        raise CorpusError(f"{path} is not a readable Parquet file ({exc}).", path=path) from exc


def _count_csv_rows(path: Path) -> int:
    rows = 0
    with _open_text(path) as text:
        reader = csv.reader(text)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                # A malformed row counts; read_corpus reports it with its line number.
                rows += 1
                continue
            except UnicodeDecodeError as exc:
                raise _not_utf8(path) from exc
            except (EOFError, OSError, zlib.error) as exc:
                raise _damaged(path, reader.line_num, exc) from exc
            rows += 1 if row else 0
    return max(rows - 1, 0)


def _count_lines(path: Path) -> int:
    count = 0
    last_byte = b"\n"
    with _open_binary(path) as handle:
        # Counting newlines in large chunks is much faster than iterating over lines.
        try:
            while chunk := handle.read(_COUNT_CHUNK_BYTES):
                count += chunk.count(b"\n")
                last_byte = chunk[-1:]
        except (EOFError, OSError, zlib.error) as exc:
            raise _damaged(path, count, exc) from exc
    # A last line without a final newline is a line too.
    return count + (0 if last_byte == b"\n" else 1)


def _not_utf8(path: Path) -> CorpusError:
    """The error for a text file with bytes that are not UTF-8, naming the first such line.

    Text is decoded in chunks, so the reader's position says little; the file is scanned again
    (only on this error) for the first line that does not decode.
    """
    with _open_binary(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return CorpusError(
                    f"{path} is not valid UTF-8: line {line_number} holds byte 0x{line[exc.start]:02x} at "
                    f"column {exc.start + 1}; save the file as UTF-8.",
                    path=path,
                    line_number=line_number,
                )
    return CorpusError(f"{path} is not valid UTF-8; save the file as UTF-8.", path=path)


def _damaged(path: Path, lines_read: int, exc: BaseException) -> CorpusError:
    """The error for a compressed file that ends early or holds damaged data."""
    return CorpusError(
        f"{path} cannot be read past line {lines_read}: the compressed data is damaged ({exc}).",
        path=path,
        line_number=lines_read + 1,
    )


_RAW_ROW_READERS: dict[CorpusFormat, Callable[[Path, FieldMapping], Iterator[_RawRow]]] = {
    "jsonl": _jsonl_rows,
    "csv": _csv_rows,
    "parquet": _parquet_rows,
}
