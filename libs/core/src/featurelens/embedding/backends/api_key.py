"""Resolving an API key from a value or a secret file (the caller reads settings, not this module)."""

from __future__ import annotations

from pathlib import Path


def resolve_api_key(value: str | None, file: Path | str | None) -> str | None:
    """The API key given directly or read from `file` (a mounted secret), stripped; None when neither is set.

    Raises `ValueError` when both are set (which one was meant is unclear), when the file cannot be
    read, or when it is empty.
    """
    value = value.strip() if value else None
    if value and file:
        raise ValueError("Set either the API key or the API key file, not both.")
    if value:
        return value
    if not file:
        return None
    path = Path(file)
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"Cannot read the API key file {path}: {exc.strerror or exc}.") from exc
    if not key:
        raise ValueError(f"The API key file {path} is empty.")
    return key
