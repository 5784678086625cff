"""`featurelens eval steering` end to end: the evaluation library, through the SDK, against the real
encoder, sae, search, labelling and family services on 1,500 real astro-ph abstracts.

Small on purpose (a few trials, two weights): it proves the protocol runs on the product and that
its checks hold, not what the figures are on a full corpus (``make eval`` measures those). The
LLM judge and the LLM rewrite run through the labelling service against the fake OpenAI-compatible
server, whose judge reads the titles it is shown.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from fake_openai import serve_fake_openai
from family_testing import CORPUS, FamilyStack
from search_testing import ASTRO

from featurelens.client import FeaturelensClient
from featurelens.evaluation.llm_judge import LlmOptions
from featurelens.evaluation.report import Section, write_report
from featurelens.evaluation.steering import SteeringOptions, run_steering
from featurelens.v1 import labelling_pb2

TRIALS = 6
WEIGHTS = (0.35, 1.0)
_WORD = re.compile(r"[a-z]{4,}")
_LINE = re.compile(r"^(\d+)\. (.*)$", re.MULTILINE)


def reading_judge(body: dict[str, Any]) -> str:
    """Judges like a careful reader: the candidate whose label's words gained most in the titles
    after steering (lost most, for down-weighting); rewrites a query by adding the topic."""
    user = body["messages"][-1]["content"]
    if "Candidate topics:" not in user:
        query = re.search(r"^Query: (.*)$", user, re.MULTILINE)
        topic = re.search(r"^Topic: (.*)$", user, re.MULTILINE)
        return json.dumps({"query": f"{query.group(1) if query else ''} {topic.group(1) if topic else ''}"})
    before = Counter(
        _WORD.findall(user.split("Top results before steering:")[1].split("Top results after")[0].lower())
    )
    after = Counter(
        _WORD.findall(user.split("Top results after steering:")[1].split("Candidate topics:")[0].lower())
    )
    sign = 1 if "steered towards" in user else -1
    gains = [
        (sign * sum(after[w] - before[w] for w in set(_WORD.findall(topic.lower()))), -int(number))
        for number, topic in _LINE.findall(user.split("Candidate topics:")[1].split("Which candidate")[0])
    ]
    return json.dumps({"choice": -max(gains)[1]})


async def test_the_steering_evaluation_runs_on_the_real_services(
    stack: FamilyStack, sae_id: str, tmp_path: Path
) -> None:
    labelled = [
        m
        async for m in stack.labelling.LabelFeatures(
            labelling_pb2.LabelFeaturesRequest(corpus=CORPUS, sae_id=sae_id)
        )
    ]
    assert labelled
    await stack.build(sae_id=sae_id)

    # The SDK is synchronous and the services run on this event loop: the evaluation runs in a thread.
    def evaluate(options: SteeringOptions) -> Section:
        with FeaturelensClient(stack.search.server.address) as client:
            return run_steering(client, options)

    with serve_fake_openai(model="gpt-4o-mini", responder=reading_judge) as llm:
        options = SteeringOptions(
            corpus=CORPUS,
            corpus_path=ASTRO,
            trials=TRIALS,
            weights=WEIGHTS,
            seed=3,
            llm=LlmOptions(base_url=llm.base_url, budget_usd=1.0),
        )
        section = await asyncio.to_thread(evaluate, options)
    written = write_report(tmp_path / "report", [section], {"command": "test"})

    data = section.data
    assert data["sae_id"] == sae_id
    assert data["trials"] == {"up": TRIALS, "down": TRIALS}
    assert data["noop"] == {"trials": 2 * TRIALS, "identical": 2 * TRIALS}
    assert 0.0 <= data["fidelity"]["recall"] <= 1.0
    assert data["fidelity"]["queries"] >= TRIALS
    cells = {(c["method"], c["direction"], c["weight"]): c for c in data["cells"]}
    for direction in ("up", "down"):
        for weight in WEIGHTS:
            for method in ("sae", "clamp"):
                assert cells[(method, direction, weight)]["n"] == TRIALS
        assert cells[("rewrite", direction, None)]["n"] == TRIALS
        # A larger weight moves the query further.
        assert cells[("sae", direction, 1.0)]["mean_cos"] < cells[("sae", direction, 0.35)]["mean_cos"] < 1.0
    assert data["family_trials"]["up"] > 0
    # Up-weighting a feature by a whole unit direction is found by the judge far above chance.
    assert cells[("sae", "up", 1.0)]["accuracy"] >= 0.5, cells[("sae", "up", 1.0)]
    # The LLM judged every steered result whose candidates were all labelled, and rewrote queries.
    llm_judge = data["llm_judge"]
    assert llm_judge["calls"] > 0
    assert llm_judge["stopped"] == ""
    assert 0 < llm_judge["cost_usd"] <= 1.0
    assert cells[("sae", "up", 1.0)]["llm_n"] > 0
    assert cells[("llm_rewrite", "up", None)]["n"] == TRIALS
    assert sum(c["llm_n"] for c in data["cells"]) + llm_judge["unanswered"] <= llm_judge["calls"]
    assert section.markdown.startswith("## Steering\n\n**Steering, objective judge: up-weighting")
    assert "LLM judge [95% CI]" in section.markdown
    assert [p.name for p in written] == [
        "report.json",
        "steering_accuracy.png",
        "steering_accuracy_llm.png",
        "summary.md",
    ]
    assert json.loads(written[0].read_text())["sections"]["steering"]["trials"]["up"] == TRIALS
