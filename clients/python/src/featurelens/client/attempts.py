"""The attempts of one call: its request id, its deadline, and whether to try once more (internal).

Kept apart from the transports so that the sync and asyncio ones make the same decisions and
differ only in how they call and how they wait.
"""

from __future__ import annotations

import time

import grpc

from featurelens.client.errors import FeaturelensError, from_rpc_error, status_of
from featurelens.client.options import CallOptions
from featurelens.client.request_ids import call_request_id
from featurelens.client.retries import retry_delay, server_pushback_s, trailing_metadata_of
from featurelens.wire.metadata import REQUEST_ID_KEY

RETRY_COUNT_KEY = "x-retry-count"
"""Sent with each attempt: how many retries came before it (0 on the first), as openai-python does."""

# grpc and Python read the clock at slightly different moments; a deadline this close counts as passed.
_DEADLINE_SLACK_S = 0.001


class Attempts:
    """The attempts of one call: its request id, its deadline, and whether to try once more.

    One request id serves every attempt (as openai-python keeps one idempotency key per call), so
    the services' log lines of a retried call join up; ``x-retry-count`` tells the attempts apart.
    ``credentials`` (the API key's metadata) go with every attempt.
    ``rpc`` is the wire name looked up in ``featurelens.client.retries`` (made by its ``rpc_path``,
    which checks it); None: try once.
    """

    def __init__(
        self,
        rpc: str | None,
        options: CallOptions,
        timeout_s: float | None,
        credentials: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.rpc = rpc
        self._credentials = credentials
        self.options = options
        self.request_id = call_request_id()
        self.retries = 0
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((REQUEST_ID_KEY, self.request_id), (RETRY_COUNT_KEY, str(self.retries)), *self._credentials)

    def timeout(self) -> float | None:
        """What is left of the call's time for the next attempt (None: no bound)."""
        if self._deadline is None:
            return None
        return max(self._deadline - time.monotonic(), _DEADLINE_SLACK_S)

    def error(self, error: grpc.RpcError) -> FeaturelensError:
        """The SDK error for the attempt that failed last."""
        passed = self._deadline is not None and time.monotonic() >= self._deadline - _DEADLINE_SLACK_S
        return from_rpc_error(error, self.request_id, deadline_passed=passed)

    def next_delay(self, error: grpc.RpcError) -> float | None:
        """How long to wait before trying again after ``error``; None when the call should fail now."""
        if self.rpc is None or self.retries >= self.options.max_retries:
            return None
        code, _ = status_of(error)
        pushback = server_pushback_s(trailing_metadata_of(error))
        delay = retry_delay(self.rpc, code, pushback, self.retries, self.options.backoff)
        if delay is None:
            return None
        if self._deadline is not None and time.monotonic() + delay >= self._deadline:
            # The wait would use up the call's time; report the failure while there is time to act on it.
            return None
        self.retries += 1
        return delay
