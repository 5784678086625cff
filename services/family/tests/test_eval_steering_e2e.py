"""`featurelens eval steering` end to end: the evaluation library, through the SDK, against the real
encoder, sae, search, labelling and family services on 1,500 real astro-ph abstracts.

Small on purpose (a few trials, two weights): it proves the protocol runs on the product and that
its checks hold, not what the figures are on a full corpus (``make eval`` measures those).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from family_testing import CORPUS, FamilyStack
from search_testing import ASTRO

from featurelens.client import FeaturelensClient
from featurelens.evaluation.report import Section, write_report
from featurelens.evaluation.steering import SteeringOptions, run_steering
from featurelens.v1 import labelling_pb2

TRIALS = 6
WEIGHTS = (0.35, 1.0)


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
    options = SteeringOptions(corpus=CORPUS, corpus_path=ASTRO, trials=TRIALS, weights=WEIGHTS, seed=3)

    # The SDK is synchronous and the services run on this event loop: the evaluation runs in a thread.
    def evaluate() -> Section:
        with FeaturelensClient(stack.search.server.address) as client:
            return run_steering(client, options)

    section = await asyncio.to_thread(evaluate)
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
    assert section.markdown.startswith("## Steering")
    assert [p.name for p in written] == ["report.json", "steering_accuracy.png", "summary.md"]
    assert json.loads(written[0].read_text())["sections"]["steering"]["trials"]["up"] == TRIALS
