"""Micro-batching of Encode calls: many small requests, one forward pass.

Requests for one SAE queue up; a worker task takes the first, then more until it has
``max_rows`` rows or ``window_s`` has passed, runs one encode on the inference executor (torch
releases the GIL, so the event loop keeps serving) and hands each caller its rows. While a pass
runs, new requests gather in the queue and go together in the next one.

The window is only waited when callers have recently overlapped (a request arrived while another
was still being served): a lone client calling one vector at a time would otherwise pay the
window on every call for nothing (benchmarks/sae_encode.py on a busy 2-core host: p50 4.7 ms
with the window always on, 1.2-1.6 ms adaptive), while concurrent clients gain from it (8
one-vector clients: about 4 calls per forward pass instead of 2.5 without a window).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

#: How long one overlap of callers keeps the batching window on.
OVERLAP_MEMORY_S = 0.5

#: A blocking encode: (n, d_in) float32 rows → ((n, k) float32 values, (n, k) int64 indices).
EncodeFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class BatcherStats:
    """Counters since the batcher was created."""

    requests: int = 0
    rows: int = 0
    #: Encodes run; fewer than ``requests`` when calls were batched together.
    forward_passes: int = 0
    largest_pass_rows: int = 0
    #: Requests that arrived while another one was being served.
    overlapping_requests: int = 0


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[tuple[np.ndarray, np.ndarray]] = field(repr=False)


class EncodeBatcher:
    """Collects concurrent encode requests for one SAE into shared forward passes.

    ``encode`` runs on ``executor`` (the service uses one inference thread for all SAEs, so passes
    never compete for the cores). A request of ``max_rows`` rows or more runs on its own.
    """

    def __init__(
        self,
        encode: EncodeFn,
        executor: Executor,
        *,
        max_rows: int = 1024,
        window_s: float = 0.001,
        name: str = "",
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        self._encode = encode
        self._executor = executor
        self.max_rows = max_rows
        self.window_s = window_s
        self.name = name
        self.stats = BatcherStats()
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._carry: _Pending | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._in_flight = 0
        self._last_overlap = float("-inf")

    async def encode(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (values, indices) of ``rows`` (n, d_in), computed in a shared pass where possible."""
        if self._closed:
            raise RuntimeError(f"the encode batcher of {self.name} is closed")
        self.stats.requests += 1
        self.stats.rows += len(rows)
        loop = asyncio.get_running_loop()
        if self._in_flight:
            self.stats.overlapping_requests += 1
            self._last_overlap = loop.time()
        self._in_flight += 1
        try:
            if len(rows) >= self.max_rows:
                self._count_pass(len(rows))
                return await loop.run_in_executor(self._executor, self._encode, rows)
            if self._worker is None:
                self._worker = asyncio.create_task(self._run(), name=f"encode-batcher-{self.name}")
            pending = _Pending(rows, loop.create_future())
            self._queue.put_nowait(pending)
            return await pending.future
        finally:
            self._in_flight -= 1

    async def close(self) -> None:
        """Finish the queued requests, then stop the worker."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._queue.put_nowait(None)
            await self._worker

    def _count_pass(self, rows: int) -> None:
        self.stats.forward_passes += 1
        self.stats.largest_pass_rows = max(self.stats.largest_pass_rows, rows)

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            if batch is None:
                return
            live = [pending for pending in batch if not pending.future.done()]
            if live:
                await self._run_pass(live)

    async def _collect(self) -> list[_Pending] | None:
        """The next batch: the first waiting request and whatever joins it within the window."""
        first = self._carry if self._carry is not None else await self._queue.get()
        self._carry = None
        if first is None:
            return None
        batch, rows = [first], len(first.rows)
        loop = asyncio.get_running_loop()
        concurrent = loop.time() - self._last_overlap < OVERLAP_MEMORY_S
        deadline = loop.time() + (self.window_s if concurrent else 0.0)
        while rows < self.max_rows:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is None:
                self._queue.put_nowait(None)  # stop after this batch
                break
            if rows + len(item.rows) > self.max_rows:
                self._carry = item  # does not fit: it opens the next batch
                break
            batch.append(item)
            rows += len(item.rows)
        return batch

    async def _run_pass(self, batch: list[_Pending]) -> None:
        rows = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
        self._count_pass(len(rows))
        loop = asyncio.get_running_loop()
        try:
            values, indices = await loop.run_in_executor(self._executor, self._encode, rows)
        except Exception as error:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        start = 0
        for pending in batch:
            stop = start + len(pending.rows)
            if not pending.future.done():  # a caller that gave up (cancelled) is skipped
                pending.future.set_result((values[start:stop], indices[start:stop]))
            start = stop
