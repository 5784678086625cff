"""The record model of a corpus and the errors that reading one can raise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Record:
    """One document of a corpus, as the rest of featurelens sees it."""

    id: str
    """Unique identifier of the document within its corpus (an arXiv id for the shipped corpora)."""
    title: str
    """Title; empty when the source has none."""
    text: str
    """The document body (for arXiv corpora: the abstract). Never empty."""
    categories: tuple[str, ...] = ()
    """Category labels in source order (for arXiv: the category list, primary first)."""
    date: str = ""
    """Date as written in the source (YYYY-MM-DD for arXiv); empty when unknown."""

    @property
    def embedding_text(self) -> str:
        """The text to embed: title and body separated by a blank line, as the paper embedded them.

        When the title is empty this is the body alone.
        """
        if self.title:
            return f"{self.title}\n\n{self.text}"
        return self.text


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """Which source field (JSON key, CSV column, Parquet column) holds each part of a `Record`.

    The defaults match the shipped arXiv corpora.
    """

    id: str = "id"
    """Field with the document id (a string, or an integer that is turned into one). Required."""
    title: str = "title"
    """Field with the title. Optional: a missing or null title reads as an empty string."""
    text: str = "abstract"
    """Field with the document body. Required and non-empty."""
    categories: str = "categories"
    """Field with the categories: a list of strings, or one string separated by commas and/or spaces
    (as CSV files hold them). Optional."""
    date: str = "date"
    """Field with the date: a string (or a date, from Parquet). Optional."""

    def source_fields(self) -> tuple[str, ...]:
        """The source field names in the order id, title, text, categories, date."""
        return (self.id, self.title, self.text, self.categories, self.date)


class RowError(NamedTuple):
    """A malformed row that was skipped: where it is, what was wrong, and the start of its raw text."""

    line_number: int
    """1-based line of the file where the row starts (JSONL, CSV) or 1-based row number (Parquet)."""
    reason: str
    """One sentence saying what was wrong."""
    raw_excerpt: str
    """The first characters of the raw row, for the log."""


class CorpusError(ValueError):
    """A corpus cannot be read: missing file, unknown format, bad header, or (strict mode) a bad row."""

    def __init__(self, message: str, *, path: Path | str | None = None, line_number: int | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.line_number = line_number
