"""What the core reports about its work, for a host to turn into metrics and traces.

The core depends on no metrics or tracing library (DESIGN.md: side effects are injected). It
reports through the functions of this module, which do nothing until a host installs an
``Observer`` with ``set_observer`` (the service kit installs one that feeds Prometheus and
OpenTelemetry). Label values must stay few: an operation's name, a cache's name, a model's name,
never a document id, a query's text or a secret.

- ``operation(dependency, name, **attributes)``: a timed call to a dependency (``"qdrant"``,
  ``"redis"``, ``"llm"``), as a context manager around the call;
- ``cache_lookups(cache, hits, misses)``: lookups in a cache (``"embedding"``, ``"llm"``);
- ``llm_usage(model, prompt_tokens, completion_tokens, cost_usd)``: what an answered LLM call cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

__all__ = ["Observer", "cache_lookups", "llm_usage", "observer", "operation", "set_observer"]


class Observer(Protocol):
    """Receives the core's reports (see the module docstring)."""

    def operation(
        self, dependency: str, name: str, attributes: dict[str, str]
    ) -> AbstractContextManager[None]: ...

    def cache_lookups(self, cache: str, hits: int, misses: int) -> None: ...

    def llm_usage(self, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None: ...


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class _Silent:
    """The observer until a host installs one: reports cost a function call and nothing more."""

    def operation(
        self, dependency: str, name: str, attributes: dict[str, str]
    ) -> AbstractContextManager[None]:
        return _nothing()

    def cache_lookups(self, cache: str, hits: int, misses: int) -> None:
        return None

    def llm_usage(self, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        return None


_SILENT = _Silent()
_observer: Observer = _SILENT


def set_observer(new: Observer | None) -> None:
    """Send the reports of this process to ``new`` from now on (None: nowhere)."""
    global _observer
    _observer = _SILENT if new is None else new


def observer() -> Observer:
    """The observer reports go to now."""
    return _observer


def operation(dependency: str, name: str, **attributes: str) -> AbstractContextManager[None]:
    """Time the call to ``dependency`` made inside the block (``name``: what it does, e.g. "query")."""
    return _observer.operation(dependency, name, attributes)


def cache_lookups(cache: str, hits: int, misses: int) -> None:
    """``hits`` and ``misses`` of lookups in ``cache`` (either may be 0)."""
    if hits or misses:
        _observer.cache_lookups(cache, hits, misses)


def llm_usage(model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
    """Tokens and dollars spent by one answered call to ``model`` (cache hits spend nothing)."""
    _observer.llm_usage(model, prompt_tokens, completion_tokens, cost_usd)
