"""The shared store settings open the store they name; corpus names follow the store's rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurelens.kit import InvalidArgumentError
from featurelens.kit.names import corpus_name
from featurelens.kit.progress import Stopwatch
from featurelens.kit.stores import StoreSettings
from featurelens.store import EdgeDocumentStore


def test_edge_storage_opens_qdrant_in_process_in_the_edge_path(tmp_path: Path) -> None:
    settings = StoreSettings(storage="edge", edge_path=tmp_path / "qdrant")

    store = settings.open_store()
    try:
        assert isinstance(store, EdgeDocumentStore)
        assert store.list_collections() == []
    finally:
        store.close()


@pytest.mark.parametrize("name", ["astro", "arxiv_cs-2025", "A1"])
def test_a_valid_corpus_name_is_returned_as_is(name: str) -> None:
    assert corpus_name(name) == name


@pytest.mark.parametrize("name", ["", "bad name", "-leading", "features.x", "x" * 200])
def test_an_invalid_corpus_name_is_refused_with_a_sentence(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="corpus"):
        corpus_name(name)


def test_progress_reports_a_rate_and_an_eta_once_work_is_done() -> None:
    watch = Stopwatch()
    watch.started -= 2.0  # as if the stage began two seconds ago

    progress = watch.progress("label", 10, 30, "10 of 30")

    assert progress.rate_per_s == pytest.approx(5.0, rel=0.05)
    assert progress.eta_s == pytest.approx(4.0, rel=0.05)
    assert watch.progress("label", 0, 0, "").eta_s == -1.0
