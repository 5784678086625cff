"""The storage port's error tree: every adapter raises these and nothing engine-specific."""

from __future__ import annotations


class StoreError(Exception):
    """Base of all storage errors; the message is a sentence a caller can show."""


class CollectionNotFoundError(StoreError, LookupError):
    """The named collection does not exist (or was dropped while the call ran)."""


class StoreUnavailableError(StoreError):
    """The engine cannot be reached, is closed, or its files are locked by another process."""


class InvalidQueryError(StoreError, ValueError):
    """The request is malformed: wrong dimension, NaN, unknown SAE, bad date, bad name."""
