"""What the explorer's pages need, read through the SDK: the few reads that take more than one call.

Parts of a page that may be missing (a feature without a label, an SAE without co-occurrence
built) come back empty; every other failure is raised as the SDK's error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from featurelens import client as sdk
from featurelens.services.gateway import convert, models

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Features per GetLabels call (the labelling service's limit).
LABELS_BATCH = 1000
#: Labels per ListLabels page when reading them all.
LIST_PAGE = 1000


async def unless_missing(call: Awaitable[T]) -> T | None:
    """The call's answer, or None when what it reads does not exist (yet)."""
    try:
        return await call
    except (sdk.NotFoundError, sdk.FailedPreconditionError) as error:
        logger.debug("left out: %s", error)
        return None


async def labels_of(
    client: sdk.AsyncFeaturelensClient, sae_id: str, features: Iterable[int]
) -> dict[int, sdk.FeatureLabel]:
    """The stored labels of ``features`` that have one."""
    unique = list(dict.fromkeys(features))
    found: dict[int, sdk.FeatureLabel] = {}
    for start in range(0, len(unique), LABELS_BATCH):
        chunk = unique[start : start + LABELS_BATCH]
        labels = await unless_missing(client.labelling.get_labels(sae_id, chunk))
        found.update((label.feature, label) for label in labels or ())
    return found


async def all_labels(client: sdk.AsyncFeaturelensClient, sae_id: str, limit: int) -> list[sdk.FeatureLabel]:
    """Every stored label of the SAE, up to ``limit`` (best score first, as the service lists them)."""
    found: list[sdk.FeatureLabel] = []
    page = await unless_missing(client.labelling.list_labels(sae_id, page_size=LIST_PAGE))
    while page is not None:
        found.extend(page.items)
        if len(found) >= limit or not page.has_next_page():
            break
        page = await page.get_next_page()
    return found[:limit]


async def active_features(
    client: sdk.AsyncFeaturelensClient, sae: sdk.SaeInfo, text: str
) -> tuple[sdk.SparseVector, list[models.ActiveFeature]]:
    """The SAE's latents of ``text`` (embedded with the model the SAE was trained on), labelled."""
    embeddings = await client.encoder.embed([text], model=sae.embedding_model or None)
    latents = (await client.sae.encode(embeddings.vectors, sae.sae_id)).rows[0]
    labels = await labels_of(client, sae.sae_id, (int(i) for i in latents.indices))
    return latents, convert.active_features(latents, labels)


async def corpus_with(client: sdk.AsyncFeaturelensClient, sae_id: str, corpus: str | None) -> str | None:
    """``corpus`` when given; else the first corpus indexed with the SAE's latents (None: none is)."""
    if corpus:
        return corpus
    for info in await client.search.list_corpora():
        if sae_id in info.sae_ids:
            return info.corpus
    return None


async def feature_page(
    client: sdk.AsyncFeaturelensClient,
    sae: sdk.SaeInfo,
    feature: int,
    corpus: str | None,
    top_documents: int,
    neighbours: int,
) -> models.Feature:
    """Everything the explorer's feature page shows."""
    sae_id = sae.sae_id
    label = await unless_missing(client.labelling.get_label(sae_id, feature))
    corpus = await corpus_with(client, sae_id, corpus)
    documents: list[sdk.ActivatedDocument] = []
    if corpus is not None:
        documents = await client.search.top_documents(corpus, feature, sae_id=sae_id, n=top_documents)
    decoder = await client.families.feature_neighbours(feature, sae_id, kind="decoder", top_k=neighbours)
    cooccurring = await unless_missing(
        client.families.feature_neighbours(feature, sae_id, kind="cooccurrence", top_k=neighbours)
    )
    memberships = await unless_missing(client.families.feature_families([feature], sae_id))
    return models.Feature(
        sae_id=sae_id,
        feature=feature,
        label=convert.feature_label(label) if label is not None else None,
        corpus=corpus,
        top_documents=[convert.activated_document(doc) for doc in documents],
        decoder_neighbours=[convert.neighbour(item) for item in decoder],
        cooccurrence_neighbours=(
            None if cooccurring is None else [convert.neighbour(item) for item in cooccurring]
        ),
        families=convert.family_refs(memberships[0] if memberships else None),
    )
