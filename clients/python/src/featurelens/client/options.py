"""What a client applies to each call unless the call says otherwise: timeout, retries, backoff.

``timeout=None`` means "no bound", so a keyword that was left out needs a value of its own:
``NOT_GIVEN``, as in openai-python.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Final, final

from featurelens.client.retries import DEFAULT_MAX_RETRIES, Backoff

DEFAULT_TIMEOUT_S = 60.0
"""The bound on each unary call, seconds, unless the client or the call says otherwise."""


@final
class NotGiven:
    """The type of ``NOT_GIVEN``: a keyword that was left out, as opposed to one given as None."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()


def check_timeout(timeout: float | None) -> float | None:
    """A timeout in seconds, refused unless positive and finite (None: no bound)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be positive and finite seconds (or None), not {timeout}")
    return float(timeout)


def check_max_retries(max_retries: int) -> int:
    """A retry count, refused unless a non-negative int (0 turns retries off)."""
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise TypeError(f"max_retries must be an int (0 turns retries off), not {type(max_retries).__name__}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more, not {max_retries}")
    return max_retries


@dataclass(frozen=True)
class CallOptions:
    """A client's defaults: the bound on each unary call, how often and how patiently to retry."""

    timeout_s: float | None = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        check_timeout(self.timeout_s)
        check_max_retries(self.max_retries)

    def replace(
        self, *, timeout: float | NotGiven | None = NOT_GIVEN, max_retries: int | NotGiven = NOT_GIVEN
    ) -> CallOptions:
        """These options with ``timeout`` and ``max_retries`` replaced where given."""
        options = self
        if not isinstance(timeout, NotGiven):
            options = replace(options, timeout_s=timeout)
        if not isinstance(max_retries, NotGiven):
            options = replace(options, max_retries=max_retries)
        return options

    def unary_timeout(self, timeout: float | NotGiven | None) -> float | None:
        """A unary call's bound: its own ``timeout`` when given, else the client's."""
        return self.timeout_s if isinstance(timeout, NotGiven) else check_timeout(timeout)


def stream_timeout(timeout: float | NotGiven | None, timeout_s: float | NotGiven | None) -> float | None:
    """A stream's bound: ``timeout`` (or the older ``timeout_s``) when given, else none.

    Streams are not bound by the client's ``timeout_s``: indexing or training a corpus runs for
    as long as it needs unless the caller says otherwise.
    """
    if not isinstance(timeout_s, NotGiven):
        if not isinstance(timeout, NotGiven):
            raise TypeError("give timeout= or its older name timeout_s=, not both")
        warnings.warn("timeout_s= on a stream is deprecated; use timeout=", DeprecationWarning, stacklevel=3)
        timeout = timeout_s
    return None if isinstance(timeout, NotGiven) else check_timeout(timeout)
