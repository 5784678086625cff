"""Corpora.recent reuses what it read of a corpus for a short while; what this service changes
itself, it forgets at once."""

from __future__ import annotations

from pathlib import Path

from featurelens.services.search.corpora import Corpora
from featurelens.store import EdgeDocumentStore


async def test_recent_reuses_a_corpus_read_less_than_max_age_ago(tmp_path: Path) -> None:
    with EdgeDocumentStore(tmp_path / "qdrant") as store:
        store.ensure_collection("papers", 8, ["sae-a"])
        corpora = Corpora(store, max_age_s=60.0)
        first = await corpora.recent("papers")

        store.ensure_collection("papers", 8, ["sae-b"])  # as another replica would

        assert await corpora.recent("papers") is first
        assert (await corpora.get("papers")).sae_ids == ("sae-a", "sae-b")
        assert (await corpora.recent("papers")).sae_ids == ("sae-a", "sae-b")


async def test_recent_reads_again_once_the_corpus_is_forgotten_or_too_old(tmp_path: Path) -> None:
    with EdgeDocumentStore(tmp_path / "qdrant") as store:
        store.ensure_collection("papers", 8, ["sae-a"])
        cached = Corpora(store, max_age_s=60.0)
        uncached = Corpora(store, max_age_s=0.0)
        await cached.recent("papers")
        await uncached.recent("papers")

        store.ensure_collection("papers", 8, ["sae-b"])
        cached.forget("papers")

        assert (await cached.recent("papers")).sae_ids == ("sae-a", "sae-b")
        assert (await uncached.recent("papers")).sae_ids == ("sae-a", "sae-b")
