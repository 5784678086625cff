"""Turning one raw source row (a mapping of field name to value) into a validated `Record`."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from featurelens.corpus.records import FieldMapping, Record

# Categories in CSV cells are written "astro-ph.GA, astro-ph.CO" or "astro-ph.GA astro-ph.CO".
_CATEGORY_SEPARATORS = re.compile(r"[,\s]+")


class InvalidRowError(ValueError):
    """Raised by `row_to_record` with a one-sentence reason when a row is malformed."""


def row_to_record(row: Mapping[str, Any], fields: FieldMapping) -> Record:
    """Validate a raw row and build its `Record`; raise `InvalidRowError` saying what is wrong."""
    return Record(
        id=_read_id(row, fields.id),
        title=_read_optional_text(row, fields.title),
        text=_read_body(row, fields.text),
        categories=_read_categories(row, fields.categories),
        date=_read_date(row, fields.date),
    )


def _read_id(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None:
        raise InvalidRowError(f"the row has no {name!r} field")
    # bool is an int subclass, but a boolean id is surely a mistake.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidRowError(f"field {name!r} must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise InvalidRowError(f"field {name!r} is empty")
    # Ids are stored one per line in embedding stores; a line break would corrupt them.
    if "\n" in value or "\r" in value:
        raise InvalidRowError(f"field {name!r} contains a line break")
    return value


def _read_optional_text(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRowError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value.strip()


def _read_body(row: Mapping[str, Any], name: str) -> str:
    if row.get(name) is None:
        raise InvalidRowError(f"the row has no {name!r} field")
    text = _read_optional_text(row, name)
    if not text:
        raise InvalidRowError(f"field {name!r} is empty")
    return text


def _read_categories(row: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = row.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        stripped = value.strip()
        # A CSV written from lists may hold the JSON form of the list.
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise InvalidRowError(f"field {name!r} looks like a JSON list but does not parse") from exc
        else:
            return tuple(part for part in _CATEGORY_SEPARATORS.split(stripped) if part)
    if isinstance(value, list | tuple):
        if not all(isinstance(item, str) for item in value):
            raise InvalidRowError(f"field {name!r} must hold only strings")
        return tuple(item.strip() for item in value if item.strip())
    raise InvalidRowError(f"field {name!r} must be a list or a string, got {type(value).__name__}")


def _read_date(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None:
        return ""
    # Parquet date and timestamp columns arrive as date / datetime objects.
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise InvalidRowError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value.strip()
