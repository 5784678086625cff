"""The core's telemetry reports (``featurelens.telemetry``) as Prometheus metrics and spans.

``install_observer()`` is called once per process by the runner and the embedded host (and by
tests); from then on every timed dependency call is a ``featurelens_dependency_duration_seconds``
observation and, when tracing is on, a span named ``<dependency>.<operation>``; cache lookups
and LLM spend are counters (``featurelens.kit.metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from featurelens import telemetry
from featurelens.kit import metrics, tracing


class MetricsObserver:
    """Feeds the core's reports to the process's metrics and tracer."""

    def operation(
        self, dependency: str, name: str, attributes: dict[str, str]
    ) -> AbstractContextManager[None]:
        return self._timed(dependency, name, attributes)

    @contextmanager
    def _timed(self, dependency: str, name: str, attributes: dict[str, str]) -> Iterator[None]:
        histogram = metrics.DEPENDENCY_SECONDS.labels(dependency, name)
        started = time.perf_counter()
        try:
            with tracing.span(f"{dependency}.{name}", {"featurelens.dependency": dependency, **attributes}):
                yield
        finally:
            histogram.observe(time.perf_counter() - started)

    def cache_lookups(self, cache: str, hits: int, misses: int) -> None:
        if hits:
            metrics.CACHE_LOOKUPS.labels(cache, "hit").inc(hits)
        if misses:
            metrics.CACHE_LOOKUPS.labels(cache, "miss").inc(misses)

    def llm_usage(self, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        if prompt_tokens:
            metrics.LLM_TOKENS.labels(model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            metrics.LLM_TOKENS.labels(model, "completion").inc(completion_tokens)
        if cost_usd > 0:
            metrics.LLM_COST.labels(model).inc(cost_usd)


def install_observer() -> None:
    """Send the core's reports of this process to the metrics and the tracer (idempotent)."""
    if not isinstance(telemetry.observer(), MetricsObserver):
        telemetry.set_observer(MetricsObserver())
