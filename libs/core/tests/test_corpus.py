"""Reading corpora: real arXiv rows in every format, malformed rows, strictness and clear errors."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurelens.corpus import (
    CorpusError,
    FieldMapping,
    Record,
    RowError,
    count_records,
    detect_format,
    read_corpus,
)


def _raw_lines(path: Path, count: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [next(handle) for _ in range(count)]


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines), encoding="utf-8")
    return path


def test_reads_the_first_real_astro_records_with_every_field(astro_records: list[Record]) -> None:
    assert len(astro_records) == 200
    assert len({record.id for record in astro_records}) == 200
    first = astro_records[0]
    assert first.id == "2504.11526"
    assert first.title.startswith("What goes around comes around")
    assert first.text.startswith("We conduct high-resolution wind-tunnel simulations")
    assert first.categories == ("astro-ph.GA",)
    assert first.date == "2025-04-17"
    assert all(any(c.startswith("astro-ph") for c in record.categories) for record in astro_records)


def test_embedding_text_joins_title_and_body_with_a_blank_line() -> None:
    assert Record(id="1", title="A title", text="The body.").embedding_text == "A title\n\nThe body."
    assert Record(id="2", title="", text="Only a body.").embedding_text == "Only a body."


def test_records_are_frozen() -> None:
    record = Record(id="1", title="t", text="x")
    with pytest.raises(AttributeError):
        record.id = "2"  # type: ignore[misc]


def test_count_records_counts_every_line_of_the_real_gzip_corpus(astro_path: Path) -> None:
    assert count_records(astro_path) == 11_636


def test_limit_stops_after_that_many_records(astro_path: Path) -> None:
    assert [record.id for record in read_corpus(astro_path, limit=3)] == [
        record.id for record in list(read_corpus(astro_path, limit=10))[:3]
    ]
    assert list(read_corpus(astro_path, limit=0)) == []


def test_malformed_rows_are_reported_with_their_line_numbers_and_the_rest_is_read(
    astro_path: Path, tmp_path: Path
) -> None:
    good = _raw_lines(astro_path, 3)
    without_id = json.loads(good[1])
    del without_id["id"]
    empty_abstract = dict(json.loads(good[1]), id="9999.00001", abstract="   ")
    numeric_title = dict(json.loads(good[1]), id="9999.00002", title=42)
    lines = [
        good[0],  # 1
        '{"id": "9999.00000", "title": "broken", ',  # 2: bad JSON
        json.dumps(without_id),  # 3
        json.dumps(empty_abstract),  # 4
        json.dumps(numeric_title),  # 5
        "[1, 2, 3]",  # 6: not an object
        "",  # 7: blank, ignored silently
        good[0],  # 8: duplicate id
        good[1],  # 9
        good[2],  # 10
    ]
    path = _write_lines(tmp_path / "broken.jsonl", lines)
    errors: list[RowError] = []

    records = list(read_corpus(path, on_error=errors.append))

    assert [record.id for record in records] == [json.loads(line)["id"] for line in good]
    assert [error.line_number for error in errors] == [2, 3, 4, 5, 6, 8]
    reasons = [error.reason for error in errors]
    assert "not valid JSON" in reasons[0]
    assert "no 'id' field" in reasons[1]
    assert "'abstract' is empty" in reasons[2]
    assert "'title' must be a string" in reasons[3]
    assert "JSON object" in reasons[4]
    assert "duplicate id '2504.11526'" in reasons[5]
    assert errors[0].raw_excerpt.startswith('{"id": "9999.00000"')
    assert all(len(error.raw_excerpt) <= 201 for error in errors)


def test_strict_mode_raises_a_corpus_error_naming_the_file_and_line(astro_path: Path, tmp_path: Path) -> None:
    good = _raw_lines(astro_path, 2)
    path = _write_lines(tmp_path / "strict.jsonl", [good[0], good[1], "not json at all"])

    with pytest.raises(CorpusError, match=r"strict\.jsonl, line 3: the line is not valid JSON") as caught:
        list(read_corpus(path, strict=True))

    assert caught.value.line_number == 3
    assert caught.value.path == path
    assert isinstance(caught.value, ValueError)


def test_skipped_rows_are_logged_when_no_callback_is_given(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write_lines(tmp_path / "c.jsonl", ['{"id": "a", "abstract": "text"}', '{"id": "b"}'])

    with caplog.at_level(logging.WARNING, logger="featurelens.corpus"):
        records = list(read_corpus(path))

    assert [record.id for record in records] == ["a"]
    assert "line 2" in caplog.text
    assert "'abstract'" in caplog.text


def test_gzip_and_plain_jsonl_read_the_same_records(astro_path: Path, tmp_path: Path) -> None:
    lines = _raw_lines(astro_path, 50)
    plain = _write_lines(tmp_path / "slice.jsonl", lines)
    compressed = tmp_path / "slice.jsonl.gz"
    with gzip.open(compressed, "wt", encoding="utf-8") as handle:
        handle.writelines(lines)

    assert list(read_corpus(compressed)) == list(read_corpus(plain))
    assert count_records(compressed) == count_records(plain) == 50


def _write_csv(path: Path, records: list[Record]) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:  # type: ignore[operator]
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "abstract", "categories", "date"])
        for record in records:
            # Some real category lists hold MSC codes with commas and spaces ("85A05, 85-08"), which a
            # separated string cannot carry; the JSON form of the list can.
            writer.writerow(
                [record.id, record.title, record.text, json.dumps(record.categories), record.date]
            )


@pytest.mark.parametrize("name", ["slice.csv", "slice.csv.gz"])
def test_csv_round_trip_keeps_every_field(astro_records: list[Record], tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _write_csv(path, astro_records)

    assert list(read_corpus(path)) == astro_records
    assert count_records(path) == len(astro_records)


def test_csv_categories_may_be_separated_by_commas_or_spaces(tmp_path: Path) -> None:
    path = tmp_path / "cats.csv"
    path.write_text(
        'id,abstract,categories\n1,one,"astro-ph.GA, astro-ph.CO"\n2,two,cs.CL cs.LG\n3,three,\n',
        encoding="utf-8",
    )

    assert [record.categories for record in read_corpus(path)] == [
        ("astro-ph.GA", "astro-ph.CO"),
        ("cs.CL", "cs.LG"),
        (),
    ]


def test_csv_line_numbers_count_physical_lines_of_quoted_multiline_cells(tmp_path: Path) -> None:
    path = tmp_path / "multiline.csv"
    path.write_text(
        'id,title,abstract\n1,"A title","first line\nsecond line"\n2,Title,\n3,Three,"Body"\n',
        encoding="utf-8",
    )
    errors: list[RowError] = []

    records = list(read_corpus(path, on_error=errors.append))

    assert [record.id for record in records] == ["1", "3"]
    assert records[0].text == "first line\nsecond line"
    assert records[0].categories == ()
    assert [(error.line_number, error.reason) for error in errors] == [(4, "field 'abstract' is empty")]


def test_csv_rows_with_the_wrong_number_of_cells_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("id,abstract\n1,one\n2,two,extra\n3,three\n", encoding="utf-8")
    errors: list[RowError] = []

    assert [record.id for record in read_corpus(path, on_error=errors.append)] == ["1", "3"]
    assert errors[0].line_number == 3
    assert "3 cells but the header has 2" in errors[0].reason


def test_a_csv_header_without_the_id_column_is_a_corpus_error(tmp_path: Path) -> None:
    path = tmp_path / "noid.csv"
    path.write_text("key,abstract\n1,one\n", encoding="utf-8")

    with pytest.raises(CorpusError, match="no column 'id'"):
        read_corpus(path).__next__()


def test_parquet_round_trip_reads_row_groups_in_batches(astro_records: list[Record], tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": [record.id for record in astro_records],
            "title": [record.title for record in astro_records],
            "abstract": [record.text for record in astro_records],
            "categories": [list(record.categories) for record in astro_records],
            "date": [dt.date.fromisoformat(record.date) for record in astro_records],
            "authors": [["someone"]] * len(astro_records),
        }
    )
    path = tmp_path / "slice.parquet"
    pq.write_table(table, path, row_group_size=64)

    assert list(read_corpus(path)) == astro_records
    assert count_records(path) == len(astro_records)
    assert [record.id for record in read_corpus(path, limit=70)] == [r.id for r in astro_records[:70]]


def test_parquet_rows_with_null_bodies_are_reported_by_row_number(tmp_path: Path) -> None:
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "abstract": ["one", None, "three"]}), path)
    errors: list[RowError] = []

    assert [record.id for record in read_corpus(path, on_error=errors.append)] == ["a", "c"]
    assert [(error.line_number, error.reason) for error in errors] == [(2, "the row has no 'abstract' field")]


def test_a_field_mapping_reads_other_field_names(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "other.jsonl",
        [json.dumps({"doc": 17, "heading": "H", "body": "B", "tags": "x, y z", "published": "2024-01-02"})],
    )
    fields = FieldMapping(id="doc", title="heading", text="body", categories="tags", date="published")

    assert list(read_corpus(path, fields=fields)) == [
        Record(id="17", title="H", text="B", categories=("x", "y", "z"), date="2024-01-02")
    ]


def test_a_missing_file_is_a_corpus_error_with_a_clear_sentence(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"nowhere\.jsonl does not exist"):
        read_corpus(tmp_path / "nowhere.jsonl")


def test_an_unknown_suffix_is_a_corpus_error_unless_the_format_is_given(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "corpus.txt", ['{"id": "a", "abstract": "text"}'])

    with pytest.raises(CorpusError, match="Cannot tell the format"):
        read_corpus(path)
    with pytest.raises(CorpusError, match="Unknown corpus format 'xml'"):
        read_corpus(path, format="xml")
    assert [record.id for record in read_corpus(path, format="jsonl")] == ["a"]


def test_detect_format_reads_compound_suffixes() -> None:
    assert detect_format("a/b.jsonl.gz") == "jsonl"
    assert detect_format("b.CSV.GZ") == "csv"
    assert detect_format("c.parquet") == "parquet"


# -- damaged files: a CorpusError naming the file and what is wrong, never a raw library error --


def _damaged_files(tmp_path: Path, astro_path: Path) -> dict[str, Path]:
    """A corrupt Parquet file, a truncated gzip JSONL file and a CSV with non-UTF-8 bytes."""
    parquet = tmp_path / "corrupt.parquet"
    parquet.write_bytes(b"PAR1" + b"\x00garbage" * 50 + b"PAR1")
    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(astro_path.read_bytes()[:50_000])
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"id,abstract\n1,caf\xe9 au lait\n2,fine\n")
    return {"parquet": parquet, "gzip": truncated, "csv": latin}


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("parquet", "is not a readable Parquet file"),
        ("gzip", "the compressed data is damaged"),
        ("csv", "is not valid UTF-8: line 2 holds byte 0xe9 at column 6"),
    ],
)
def test_counting_a_damaged_file_is_a_corpus_error_naming_the_file(
    tmp_path: Path, astro_path: Path, kind: str, problem: str
) -> None:
    path = _damaged_files(tmp_path, astro_path)[kind]
    with pytest.raises(CorpusError, match=problem) as raised:
        count_records(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("parquet", "is not a readable Parquet file"),
        ("gzip", "the compressed data is damaged"),
        ("csv", "is not valid UTF-8: line 2 holds byte 0xe9 at column 6"),
    ],
)
def test_reading_a_damaged_file_is_a_corpus_error_naming_the_file(
    tmp_path: Path, astro_path: Path, kind: str, problem: str
) -> None:
    path = _damaged_files(tmp_path, astro_path)[kind]
    with pytest.raises(CorpusError, match=problem) as raised:
        list(read_corpus(path))
    assert str(path) in str(raised.value)


def test_a_csv_with_a_malformed_row_is_still_counted_to_the_end(tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(b"id,abstract\n1,one\n2,t\x00wo\n3,three\n")
    assert count_records(path) == 3
