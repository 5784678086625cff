"""kill -9 of ``featurelens up`` in the middle of an LLM labelling job (the fake OpenAI server,
slowed so the kill lands mid-job; LLM answers cached in a Redis of the test's own), then a restart
and a rerun: the labels finished before the kill are kept, and the rerun asks the LLM only what
no finished label and no cached answer covers (issue 13, point 3). Marked slow: two host starts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import redis
from fake_openai import labelling_responder, serve_fake_openai
from fault_host import RedisProcess, astro_records, eventually, host, kill9, prepare_data

from featurelens.client import FeaturelensClient, FeaturelensError

DOCS = 300
CORPUS = "crash"
SERVICES = ("encoder", "sae", "search", "labelling")
INTERPRETER_HEADER = "Documents on which the feature fires"


def prompt_of(body: dict[str, object] | None) -> str:
    return json.dumps((body or {}).get("messages"), sort_keys=True)


def cached_answers(server: RedisProcess) -> int:
    with redis.Redis(port=server.port, socket_timeout=2) as client:
        return sum(1 for _ in client.scan_iter("fl:llm:*"))


@pytest.mark.slow
def test_a_rerun_after_kill_9_mid_labelling_keeps_the_labels_and_asks_the_llm_only_for_the_missing_ones(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    data = tmp_path / "data"
    sae_id = prepare_data(data)
    log = tmp_path / "host.log"
    env = {"FEATURELENS_REDIS_URL": redis_server.url, "FEATURELENS_LABELLING_CONCURRENCY": "4"}

    with serve_fake_openai(responder=labelling_responder, delay_s=0.05) as fake:
        with host(data, log, SERVICES, env) as first:
            client = FeaturelensClient(first.address)
            for _ in client.search.index_documents(CORPUS, astro_records(DOCS), timeout=300):
                pass
            streamed: list[int] = []
            killed: list[bool] = []

            def label_until_killed() -> None:
                for message in client.labelling.label_features(sae_id, CORPUS, llm_base_url=fake.base_url):
                    if message.label is not None:
                        streamed.append(message.label.feature)
                    if len(streamed) >= 8 and not killed:
                        killed.append(True)
                        kill9(first)

            with pytest.raises(FeaturelensError):
                label_until_killed()
            client.close()
        # What was in flight at the kill reaches the fake server's answer (to a closed socket).
        eventually(lambda: fake.answered_chat_calls == fake.chat_calls, "the in-flight LLM calls settling")
        before_rerun = len(fake.requests)
        asked_before = Counter(prompt_of(r.body) for r in fake.requests)
        cached_before = cached_answers(redis_server)

        with host(data, log, SERVICES, env) as second:
            client = FeaturelensClient(second.address)
            kept = {label.feature for label in client.labelling.list_labels(sae_id, page_size=500)}
            messages = list(client.labelling.label_features(sae_id, CORPUS, llm_base_url=fake.base_url))
            final = {label.feature: label for label in client.labelling.list_labels(sae_id, page_size=500)}
            client.close()
        rerun = [r for r in fake.requests[before_rerun:] if r.path == "/v1/chat/completions"]

    last = messages[-1]
    missing = last.progress.total - last.skipped - last.failed
    labelled_in_rerun = {m.label.feature for m in messages if m.label is not None}
    assert set(streamed) <= kept, "labels streamed before the kill were lost"
    assert last.skipped == len(kept)
    assert last.failed == 0
    assert labelled_in_rerun.isdisjoint(kept), "the rerun labelled a feature again"
    assert labelled_in_rerun | kept == set(final)
    assert len(final) == last.progress.total
    # The calls the job reports are the calls the endpoint got, each a prompt asked once.
    assert last.llm_calls == len(rerun)
    assert cached_answers(redis_server) - cached_before == len(rerun)
    assert len({prompt_of(r.body) for r in rerun}) == len(rerun)
    # One interpreter call per feature still missing at most (fewer when Redis had its answer).
    interpreter_calls = [r for r in rerun if INTERPRETER_HEADER in prompt_of(r.body)]
    assert len(interpreter_calls) <= missing
    # Asked again only what the endpoint answered but the killed service never cached: what was in
    # flight at the kill (counted after it, since calls in flight race with the kill itself).
    asked_again = [r for r in rerun if asked_before[prompt_of(r.body)]]
    chat_prompts_before = [prompt for prompt in asked_before if prompt != prompt_of(None)]
    assert len(asked_again) <= len(chat_prompts_before) - cached_before
    assert last.cache_hits + last.llm_calls > 0
