"""SIGTERM to ``featurelens up`` during a streaming job whose work outlasts the grace period: the
job keeps streaming while the host drains, the host then cancels what is left and exits cleanly
(code 0), and after a restart the rerun of the same job completes with nothing lost and nothing
done twice (issue 13, point 3). The grace period is short (``*_GRACE_PERIOD_S``) so that the
jobs cannot finish inside it. Marked slow: two host starts per test.

(tests/integration/test_embedded_shutdown.py covers the other side: a grace period long enough
for an indexing stream to finish every document.)
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fake_openai import labelling_responder, serve_fake_openai
from fault_host import astro_records, host, prepare_data
from stored_state import check_corpus

from featurelens.client import FeaturelensClient, FeaturelensError

CORPUS = "drain"
SERVICES = ("encoder", "sae", "search", "labelling")
GRACE_S = "2"


def short_grace(services: tuple[str, ...]) -> dict[str, str]:
    """Every hosted service's grace period (the host takes the largest)."""
    return {f"FEATURELENS_{name.upper()}_GRACE_PERIOD_S": GRACE_S for name in services}


@pytest.mark.slow
def test_sigterm_mid_indexing_drains_then_exits_cleanly_and_the_rerun_stores_every_document_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    sae_id = prepare_data(data)
    records = astro_records(6000)
    log = tmp_path / "host.log"
    services = ("encoder", "sae", "search")

    with host(data, log, services, short_grace(services)) as first:
        client = FeaturelensClient(first.address)
        at_signal = after_signal = 0
        try:
            for progress in client.search.index_documents(CORPUS, records, batch_size=50, timeout=300):
                if at_signal == 0 and progress.indexed >= 200:
                    at_signal = progress.indexed
                    first.process.send_signal(signal.SIGTERM)
                elif at_signal:
                    after_signal = progress.indexed
        except FeaturelensError:
            pass  # cancelled at the end of the grace period
        client.close()
        exit_code = first.process.wait(120)

    assert exit_code == 0
    assert after_signal > at_signal, "the stream did not go on while the host drained"
    assert after_signal < len(records), "the job finished inside the grace period; nothing was cut short"
    assert "calls still in flight at the end of the grace period" in "".join(
        p.read_text() for p in tmp_path.glob("host.*.log")
    )

    with host(data, log, services) as second:
        client = FeaturelensClient(second.address)
        *_, last = client.search.index_documents(CORPUS, records, batch_size=256, timeout=600)
        client.close()
    assert last is not None
    assert last.indexed == len(records)
    assert last.failed == 0
    check_corpus(data, CORPUS, sae_id, {record.id for record in records})


@pytest.mark.slow
def test_sigterm_mid_labelling_drains_then_exits_cleanly_and_the_rerun_labels_each_feature_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    sae_id = prepare_data(data)
    log = tmp_path / "host.log"
    env = short_grace(SERVICES) | {"FEATURELENS_LABELLING_CONCURRENCY": "2"}

    with serve_fake_openai(responder=labelling_responder, delay_s=0.1) as fake:
        with host(data, log, SERVICES, env) as first:
            client = FeaturelensClient(first.address)
            for _ in client.search.index_documents(CORPUS, astro_records(300), timeout=300):
                pass
            before_signal: list[int] = []
            after_signal: list[int] = []
            signalled = False
            try:
                for message in client.labelling.label_features(sae_id, CORPUS, llm_base_url=fake.base_url):
                    if message.label is None:
                        continue
                    (after_signal if signalled else before_signal).append(message.label.feature)
                    if len(before_signal) >= 3 and not signalled:
                        first.process.send_signal(signal.SIGTERM)
                        signalled = True
            except FeaturelensError:
                pass  # cancelled at the end of the grace period
            client.close()
            exit_code = first.process.wait(120)

        with host(data, log, SERVICES, env) as second:
            client = FeaturelensClient(second.address)
            kept = {label.feature for label in client.labelling.list_labels(sae_id, page_size=500)}
            messages = list(client.labelling.label_features(sae_id, CORPUS, llm_base_url=fake.base_url))
            final = [label.feature for label in client.labelling.list_labels(sae_id, page_size=500)]
            client.close()

    assert exit_code == 0
    assert after_signal, "no label was streamed while the host drained"
    assert set(before_signal) | set(after_signal) <= kept, "a label streamed to the caller was not kept"
    last = messages[-1]
    relabelled = {m.label.feature for m in messages if m.label is not None}
    assert last.skipped == len(kept)
    assert last.failed == 0
    assert relabelled.isdisjoint(kept)
    assert len(kept) < last.progress.total, "the job finished inside the grace period; nothing was cut short"
    assert len(final) == len(set(final)) == last.progress.total
