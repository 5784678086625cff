"""kill -9 of ``featurelens up`` in the middle of an indexing job, then a restart on the same data
folder and a rerun of the same job: every document exactly once, none with a stale sparse vector
(issue 13, point 3). Two host starts (about 10 s each on two cores): marked slow."""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_host import astro_records, host, kill9, prepare_data
from stored_state import check_corpus

from featurelens.client import FeaturelensClient, FeaturelensError

DOCS = 1500
BATCH = 50
CORPUS = "crash"


@pytest.mark.slow
def test_a_rerun_after_kill_9_mid_indexing_stores_every_document_once_with_fresh_sparse_vectors(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    sae_id = prepare_data(data)
    records = astro_records(DOCS)
    log = tmp_path / "host.log"

    with host(data, log) as first:
        client = FeaturelensClient(first.address)
        seen: list[int] = []

        def index_until_killed() -> None:
            for progress in client.search.index_documents(CORPUS, records, batch_size=BATCH, timeout=300):
                seen.append(progress.indexed)
                if progress.indexed >= 400:
                    kill9(first)

        with pytest.raises(FeaturelensError):
            index_until_killed()
        client.close()
    seen_last = seen[-1] if seen else 0
    assert 400 <= seen_last < DOCS, "the kill did not land in the middle of the job"

    with host(data, log) as second:
        client = FeaturelensClient(second.address)
        stored_before = client.search.list_corpora()
        *_, last = client.search.index_documents(CORPUS, records, batch_size=BATCH, timeout=300)
        corpora = {info.corpus: info.documents for info in client.search.list_corpora()}
        client.close()

    assert last is not None
    assert last.indexed == DOCS
    assert last.failed == 0
    assert [info.corpus for info in stored_before] == [CORPUS], "the kill lost the corpus"
    assert 0 < stored_before[0].documents < DOCS
    assert corpora[CORPUS] == DOCS
    check_corpus(data, CORPUS, sae_id, {record.id for record in records})
