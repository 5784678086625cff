"""Warnings about lookups that are a courtesy (labels, families in explanations), rate-limited.

When a peer that only adds names to a response is down, every search would otherwise log the same
line; one warning a minute per cause says it as clearly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: Seconds between two warnings about the same cause.
WARNING_INTERVAL_S = 60.0


class ThrottledWarning:
    """Logs ``prefix + message + suffix`` at WARNING, at most once per ``WARNING_INTERVAL_S`` per cause."""

    def __init__(
        self, logger: logging.Logger, prefix: str, suffix: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.prefix = prefix
        self.suffix = suffix
        self._clock = clock
        self._warned_at: dict[str, float] = {}

    def warn(self, cause: str, message: str, *args: object) -> None:
        now = self._clock()
        last = self._warned_at.get(cause)
        if last is not None and now - last < WARNING_INTERVAL_S:
            return
        self._warned_at[cause] = now
        self.logger.warning(self.prefix + message + self.suffix, *args)
