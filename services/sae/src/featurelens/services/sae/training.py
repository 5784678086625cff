"""One training run in a worker thread, its progress as an async stream.

``train_sae`` blocks for minutes to hours, so it runs in its own thread; its callbacks hand
progress to the event loop with ``loop.call_soon_threadsafe``, throttled to one step report per
``progress_interval_s`` (epoch ends and the last step always go through). ``cancel()`` makes the
library stop before its next step; the run's staging folder is removed when it did not finish.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurelens.sae import (
    EpochMetrics,
    SaeConfig,
    StepMetrics,
    TrainCallbacks,
    TrainConfig,
    TrainResult,
    train_sae,
)

logger = logging.getLogger(__name__)

#: Steps between the library's progress callbacks (the job throttles further by time).
STEP_EVERY = 5


@dataclass(frozen=True)
class _Finished:
    """Put on the queue last, once the thread is done."""


Event = StepMetrics | EpochMetrics


class TrainingJob:
    """``train_sae`` on ``embeddings`` in a thread, writing its checkpoint into ``checkpoint_dir``."""

    def __init__(
        self,
        embeddings: np.ndarray,
        sae_cfg: SaeConfig,
        train_cfg: TrainConfig,
        *,
        checkpoint_dir: Path,
        embedding_model: str | None,
        progress_interval_s: float = 0.5,
    ) -> None:
        self.embeddings = embeddings
        self.sae_cfg = sae_cfg
        self.train_cfg = train_cfg
        self.checkpoint_dir = checkpoint_dir
        self.embedding_model = embedding_model
        self.progress_interval_s = progress_interval_s
        self.stop_requested = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sae-train", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Event | _Finished] = asyncio.Queue()
        self._last_step_report = float("-inf")
        self._result: TrainResult | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def start(self) -> None:
        """Start the thread; call from the event loop that will read ``events()``."""
        self._loop = asyncio.get_running_loop()
        self.thread.start()

    def cancel(self) -> None:
        """Ask the run to stop before its next step (returns at once)."""
        if not self.stop_requested.is_set():
            logger.info("training run into %s: stop requested", self.checkpoint_dir.name)
        self.stop_requested.set()

    async def events(self) -> AsyncIterator[Event]:
        """Progress reports until the thread ends."""
        while True:
            item = await self._queue.get()
            if isinstance(item, _Finished):
                return
            yield item

    def result(self) -> TrainResult:
        """The finished run's result (after ``events()`` ended); re-raises the thread's error."""
        if self._error is not None:
            raise self._error
        assert self._result is not None, "the run has not finished"
        return self._result

    # -- in the worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        finished = False
        try:
            self._result = train_sae(
                self.embeddings,
                self.sae_cfg,
                self.train_cfg,
                callbacks=TrainCallbacks(
                    on_step=self._on_step, on_epoch_end=self._push, step_every=STEP_EVERY
                ),
                checkpoint_dir=self.checkpoint_dir,
                should_stop=self.stop_requested.is_set,
                embedding_model=self.embedding_model,
            )
            finished = not self._result.cancelled
        except BaseException as error:  # handed to the caller, who maps it to a status
            self._error = error
        finally:
            if not finished:
                shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
            self._push(_Finished())

    def _on_step(self, metrics: StepMetrics) -> None:
        now = time.monotonic()
        if now - self._last_step_report >= self.progress_interval_s or metrics.step >= metrics.total_steps:
            self._last_step_report = now
            self._push(metrics)

    def _push(self, item: Event | _Finished) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            # The event loop has closed (the server is gone): nobody is listening any more.
            self.stop_requested.set()
