"""The storage port's error tree: every adapter raises these and nothing engine-specific.

Adapters run their engine calls inside ``translated`` so no engine exception crosses the port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StoreError(Exception):
    """Base of all storage errors; the message is a sentence a caller can show."""


class CollectionNotFoundError(StoreError, LookupError):
    """The named collection does not exist (or was dropped while the call ran)."""


class StoreUnavailableError(StoreError):
    """The engine cannot be reached, is closed, or its files are locked by another process."""


class InvalidQueryError(StoreError, ValueError):
    """The request is malformed: wrong dimension, NaN, unknown SAE, bad date, bad name."""


@contextmanager
def translated(name: str, translate: Callable[[Exception, str], StoreError]) -> Iterator[None]:
    """Run engine calls on collection ``name`` so that only port errors leave them.

    Port errors pass unchanged (an adapter may raise them itself inside the block); anything
    else is handed to the adapter's ``translate``, which knows its engine's exceptions.
    """
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        raise translate(error, name) from error
