"""Run a labelling job: many features labelled concurrently, each result reported as it ends.

``run_job`` takes the features and a coroutine function that labels one of them (usually a
``functools.partial`` of ``label_feature``), keeps at most ``concurrency`` features in flight,
and yields a ``JobEvent`` per feature as it finishes, in finishing order:

- LABELLED with the outcome;
- FAILED with a sentence, when that feature could not be labelled (the job goes on);
- BUDGET once, when a call would have passed the budget: no new feature starts, the features in
  flight finish (or stop at the budget themselves and are left unlabelled), then the job ends.

The items are ints: feature ids for a labelling job, the families' positions in the request for
the family naming job (``label_one`` then returns that job's own result).

An exception that ``is_fatal`` accepts (the endpoint or a peer service is down, say) ends the
job by propagating; closing the iterator (the caller cancelled) cancels the features in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from featurelens.interp.budget import BudgetExhausted
from featurelens.interp.labelling import LabelOutcome

logger = logging.getLogger(__name__)

#: What labelling one item gives: a ``LabelOutcome`` for a feature; the family job's own result
#: for a family (its items are the families' positions in the request).
T = TypeVar("T")

LabelOne = Callable[[int], Awaitable[LabelOutcome]]


class EventKind(StrEnum):
    LABELLED = "labelled"
    FAILED = "failed"
    BUDGET = "budget"


@dataclass(frozen=True)
class JobEvent(Generic[T]):
    """One feature's end (or the budget stop, with ``feature`` -1)."""

    kind: EventKind
    feature: int
    outcome: T | None = None
    reason: str = ""


def _never_fatal(error: BaseException) -> bool:
    return False


async def run_job(
    features: Sequence[int],
    label_one: Callable[[int], Awaitable[T]],
    concurrency: int,
    is_fatal: Callable[[BaseException], bool] = _never_fatal,
) -> AsyncIterator[JobEvent[T]]:
    """Label ``features`` with at most ``concurrency`` in flight; see the module docstring."""
    if concurrency < 1:
        raise ValueError(f"concurrency is {concurrency}; use at least 1")
    pending = list(reversed(features))
    results: asyncio.Queue[JobEvent[T] | BaseException | None] = asyncio.Queue()
    stopping = asyncio.Event()

    async def worker() -> None:
        while pending and not stopping.is_set():
            feature = pending.pop()
            try:
                outcome = await label_one(feature)
            except BudgetExhausted as error:
                if not stopping.is_set():
                    stopping.set()
                    await results.put(JobEvent(EventKind.BUDGET, -1, reason=str(error)))
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if is_fatal(error):
                    stopping.set()
                    await results.put(error)
                    return
                logger.info("item %d of the job not labelled: %s", feature, error)
                await results.put(
                    JobEvent(EventKind.FAILED, feature, reason=str(error) or type(error).__name__)
                )
            else:
                await results.put(JobEvent(EventKind.LABELLED, feature, outcome))

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, max(1, len(features))))]

    async def all_done() -> None:
        await asyncio.gather(*workers, return_exceptions=True)
        await results.put(None)

    closer = asyncio.create_task(all_done())
    try:
        while True:
            item = await results.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        for task in workers:
            task.cancel()
        closer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*workers, closer, return_exceptions=True)
