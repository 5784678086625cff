"""The calls a server is serving, by request id, so that a shutdown can drain them.

When a server stops it first stops taking new calls, then waits for the calls in flight. A call
may depend on calls back to the same server: in ``featurelens up`` search calls the encoder and
sae servicers over the process's own port. Those sub-calls carry the request id of the call that
made them (``featurelens.kit.peers`` passes it on), so while draining the server still admits a
call whose request id is in flight here, and refuses every other new call.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter


class InFlightCalls:
    """Request ids of the calls in flight on one server, and whether it has begun to drain."""

    def __init__(self) -> None:
        self._calls: Counter[str] = Counter()
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_arrival = time.monotonic()

    @property
    def draining(self) -> bool:
        return self._draining

    def __len__(self) -> int:
        return sum(self._calls.values())

    def admit(self, request_id: str) -> bool:
        """Count a call in; False (and nothing counted) when draining and its id is not in flight."""
        self._last_arrival = time.monotonic()
        if self._draining and self._calls[request_id] == 0:
            return False
        self._calls[request_id] += 1
        self._idle.clear()
        return True

    def release(self, request_id: str) -> None:
        """Count a call out (once per ``admit`` that returned True)."""
        self._calls[request_id] -= 1
        if self._calls[request_id] <= 0:
            del self._calls[request_id]
        if not self._calls:
            self._idle.set()

    def drain(self) -> None:
        """From now on admit only calls whose request id is in flight."""
        self._draining = True

    def seconds_since_arrival(self) -> float:
        """Seconds since the last call arrived, admitted or refused."""
        return time.monotonic() - self._last_arrival

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no call is in flight; False when ``timeout_s`` passed first."""
        if self._idle.is_set():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), max(timeout_s, 0.0))
        except TimeoutError:
            return False
        return True
