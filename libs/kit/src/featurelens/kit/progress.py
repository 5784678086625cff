"""Progress of a long job as a ``featurelens.v1.Progress`` message: one rule for rate and ETA."""

from __future__ import annotations

import time

from featurelens.v1 import common_pb2


class Stopwatch:
    """When a stage began; turns counts into a Progress message with rate and ETA."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def progress(self, stage: str, done: int, total: int, message: str) -> common_pb2.Progress:
        """``done`` of ``total`` units (total 0 = unknown): rate since the start, ETA or -1."""
        elapsed = self.elapsed_s
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = max(total - done, 0) / rate if total and rate > 0 else -1.0
        return common_pb2.Progress(
            stage=stage, done=done, total=total, rate_per_s=rate, eta_s=eta, message=message
        )
