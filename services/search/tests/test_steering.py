"""Steering on real abstracts: turning a cosmology feature up brings cosmology papers up; down, down.

The feature is found the way a user would find it: among the SAE's features, the one whose
top-activating papers are most often astro-ph.CO (cosmology) compared with the whole corpus.
"""

from __future__ import annotations

import numpy as np
from search_testing import CORPUS, Stack

from featurelens.corpus import Record
from featurelens.v1 import common_pb2, search_pb2

COSMOLOGY = "astro-ph.CO"
TOP = 20
#: Neutral phrasings; the test uses the first whose unsteered top 10 is neither all nor no cosmology.
NEUTRAL_QUERIES = (
    "we study the properties of the sample",
    "we present new observations and a statistical analysis",
    "we present new observations",
    "a statistical analysis of the data",
)


async def cosmology_feature(stack: Stack, records: list[Record]) -> tuple[int, float]:
    """The feature with the highest share of cosmology papers among its top documents, and that share."""
    is_cosmology = {r.id: COSMOLOGY in r.categories for r in records}
    request = search_pb2.ExportActivationsRequest(corpus=CORPUS)
    activations: dict[int, list[tuple[float, str]]] = {}
    async for message in stack.stub.ExportActivations(request):
        for doc_id, row in zip(message.doc_ids, message.latents, strict=True):
            for feature, value in zip(row.indices, row.values, strict=True):
                activations.setdefault(feature, []).append((value, doc_id))
    shares = {
        feature: float(np.mean([is_cosmology[doc_id] for _, doc_id in sorted(docs, reverse=True)[:TOP]]))
        for feature, docs in activations.items()
        if len(docs) >= TOP
    }
    best = min(shares, key=lambda feature: (-shares[feature], feature))
    return best, shares[best]


async def cosmology_share(stack: Stack, query: str, weight: float, feature: int) -> float:
    interventions = [common_pb2.Intervention(feature=feature, weight=weight)] if weight else []
    response = await stack.stub.Search(
        search_pb2.SearchRequest(corpus=CORPUS, text=query, top_k=10, interventions=interventions)
    )
    assert len(response.hits) == 10
    return float(np.mean([COSMOLOGY in hit.document.categories for hit in response.hits]))


async def test_up_weighting_a_cosmology_feature_raises_the_cosmology_share_and_down_weighting_lowers_it(
    stack: Stack, records: list[Record]
) -> None:
    corpus_share = float(np.mean([COSMOLOGY in r.categories for r in records]))
    feature, top_share = await cosmology_feature(stack, records)
    top = await stack.stub.TopDocuments(search_pb2.TopDocumentsRequest(corpus=CORPUS, feature=feature, n=TOP))
    assert top_share >= 2 * corpus_share  # a real cosmology feature: its lift is at least 2
    assert np.mean([COSMOLOGY in d.document.categories for d in top.documents]) == top_share
    baselines = {query: await cosmology_share(stack, query, 0.0, feature) for query in NEUTRAL_QUERIES}
    query = next(q for q, share in baselines.items() if 0.1 <= share <= 0.7)

    baseline = baselines[query]
    up = await cosmology_share(stack, query, 0.5, feature)
    down = await cosmology_share(stack, query, -0.5, feature)

    print(
        f"feature {feature} (top-{TOP} cosmology share {top_share:.2f}, corpus {corpus_share:.2f}); "
        f"query {query!r}: down {down:.1f} < baseline {baseline:.1f} < up {up:.1f}"
    )
    assert up > baseline + 0.2
    assert down < baseline
