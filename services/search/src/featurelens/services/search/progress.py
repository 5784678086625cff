"""Progress of an indexing job, as IndexDocumentsResponse messages."""

from __future__ import annotations

from collections.abc import Sequence

from featurelens.kit.progress import Stopwatch
from featurelens.v1 import search_pb2


class IndexProgress:
    """Counts of one job (documents indexed, skipped because unchanged, failed, repeated ids) and its rate.

    ``indexed`` counts what was stored (unchanged documents included); a document that a later one
    of the same batch replaces is counted in ``duplicates`` instead, so the three counts add up to
    the documents read, and three documents of one id in a batch are one indexed, two duplicates.
    """

    def __init__(self, total: int = 0) -> None:
        self.total = total
        self.indexed = 0
        self.unchanged = 0
        self.failed = 0
        self.duplicates = 0
        self._watch = Stopwatch()

    @property
    def done(self) -> int:
        """Documents dealt with so far, whatever the outcome."""
        return self.indexed + self.failed + self.duplicates

    @property
    def elapsed_s(self) -> float:
        return self._watch.elapsed_s

    def message(self, stage: str, line: str = "") -> search_pb2.IndexDocumentsResponse:
        """The job's state now, with a human-readable line."""
        if not line:
            elapsed = self.elapsed_s
            rate = self.done / elapsed if elapsed > 0 else 0.0
            of_total = f" of {self.total:,}" if self.total else ""
            line = f"{self.done:,}{of_total} documents, {rate:,.0f}/s"
            if self.unchanged:
                line += f", {self.unchanged:,} unchanged"
            if self.duplicates:
                line += f", {self.duplicates:,} repeated ids"
            if self.failed:
                line += f", {self.failed:,} failed"
        return search_pb2.IndexDocumentsResponse(
            progress=self._watch.progress(stage, self.done, self.total, line),
            indexed=self.indexed,
            failed=self.failed,
            duplicates=self.duplicates,
        )

    def failure(
        self, doc_ids: Sequence[str], reason: str, count: int | None = None
    ) -> search_pb2.IndexDocumentsResponse:
        """Counts ``count`` (default: one per id) documents as failed and reports them with the reason."""
        failed = len(doc_ids) if count is None else count
        self.failed += failed
        response = self.message("index", f"{failed:,} documents failed: {reason}")
        response.failed_ids.extend(doc_ids)
        response.failure_reason = reason
        return response
