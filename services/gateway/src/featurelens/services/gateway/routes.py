"""The JSON API, /api/v1: thin routes that check, call the SDK, and convert.

Every route answers errors as ``errors`` says (JSON with a gRPC status name and the request id).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from featurelens import client as sdk
from featurelens.services.gateway import convert, models, reading, validation
from featurelens.services.gateway.histograms import histogram, log10_histogram
from featurelens.services.gateway.settings import GatewaySettings

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": models.ErrorBody, "description": description}
    for status, description in {
        400: "Invalid input (INVALID_ARGUMENT), from the gateway or a service.",
        404: "No such SAE, feature, family or corpus (NOT_FOUND).",
        409: "Not possible in the current state (FAILED_PRECONDITION), e.g. not indexed with that SAE.",
        503: "A service cannot be reached or is not ready (UNAVAILABLE).",
    }.items()
}

router = APIRouter(prefix="/api/v1", responses=ERRORS)


def client_of(request: Request) -> sdk.AsyncFeaturelensClient:
    client: sdk.AsyncFeaturelensClient = request.app.state.client
    return client


def settings_of(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


Client = Annotated[sdk.AsyncFeaturelensClient, Depends(client_of)]
Settings = Annotated[GatewaySettings, Depends(settings_of)]
SaeId = Annotated[str, Path(description="An SAE id, as GET /api/v1/saes lists them.")]
FeatureId = Annotated[int, Path(ge=0, le=models.MAX_UINT32, description="A latent id of the SAE, from 0.")]
Bins = Annotated[int, Query(ge=1, le=validation.MAX_BINS, description="Number of bins.")]
PageSize = Annotated[
    int, Query(ge=1, le=models.MAX_UINT32, description="Items per page (the service caps it).")
]
PageToken = Annotated[str, Query(description="next_page_token of the previous page; empty for the first.")]


@router.get("/health", summary="Health of the gateway's services")
async def health(client: Client, settings: Settings) -> models.Health:
    async def one(service: str) -> models.HealthStatus:
        try:
            return await client.health(service, timeout=settings.health_timeout_s)
        except sdk.FeaturelensError:
            return "UNAVAILABLE"

    names = list(sdk.SERVICE_NAMES)
    statuses = await asyncio.gather(*(one(name) for name in names))
    services = dict(zip(names, statuses, strict=True))
    return models.Health(ready=all(s == "SERVING" for s in statuses), services=services)


@router.get("/corpora", summary="The indexed corpora")
async def corpora(client: Client) -> models.Corpora:
    return models.Corpora(corpora=[convert.corpus(info) for info in await client.search.list_corpora()])


@router.get("/saes", summary="Every SAE of the registry")
async def saes(client: Client) -> models.Saes:
    return models.Saes(saes=[convert.sae(info) for info in await client.sae.list_saes()])


@router.get("/saes/{sae_id}", summary="One SAE: configuration and metrics")
async def sae(sae_id: SaeId, client: Client) -> models.Sae:
    return convert.sae(await client.sae.get_sae(sae_id))


@router.get("/saes/{sae_id}/densities", summary="Histogram of the labelled features' densities")
async def densities(
    sae_id: SaeId, client: Client, settings: Settings, bins: Bins = validation.DEFAULT_BINS
) -> models.DensityHistogram:
    info = await client.sae.get_sae(sae_id)
    labels = await reading.all_labels(client, info.sae_id, settings.max_sorted_labels)
    values = [label.density for label in labels]
    return models.DensityHistogram(
        sae_id=info.sae_id,
        num_latents=info.config.num_latents,
        labelled_features=len(labels),
        never_fire=sum(1 for value in values if value <= 0),
        bins=log10_histogram(values, bins),
    )


@router.get("/saes/{sae_id}/labels", summary="The SAE's labelled features, paged")
async def labels(
    sae_id: SaeId,
    client: Client,
    settings: Settings,
    order: Annotated[
        models.LabelOrder,
        Query(description="score: best first (the service's order); density_*: by density."),
    ] = "score",
    page_size: PageSize = 100,
    page_token: PageToken = "",
    min_pearson_r: Annotated[float | None, Query(description="Only labels scoring at least this.")] = None,
) -> models.Labels:
    if order == "score":
        page = await client.labelling.list_labels(
            sae_id, min_pearson_r=min_pearson_r, page_size=page_size, page_token=page_token
        )
        return models.Labels(
            labels=[convert.feature_label(label) for label in page.items],
            next_page_token=page.next_page_token,
        )
    offset = validation.offset_token(page_token)
    everything = await reading.all_labels(client, sae_id, settings.max_sorted_labels)
    if min_pearson_r is not None:
        everything = [x for x in everything if x.pearson_r is not None and x.pearson_r >= min_pearson_r]
    everything.sort(key=lambda label: (label.density, label.feature), reverse=order == "density_desc")
    page_items = everything[offset : offset + page_size]
    following = offset + page_size
    return models.Labels(
        labels=[convert.feature_label(label) for label in page_items],
        next_page_token=validation.offset_page_token(following) if following < len(everything) else "",
    )


@router.get("/saes/{sae_id}/labels/search", summary="Features whose labels match a phrase")
async def search_labels(
    sae_id: SaeId,
    client: Client,
    q: Annotated[str, Query(description="A phrase, e.g. 'dark matter halos'.")],
    top_k: Annotated[
        int, Query(ge=0, le=models.MAX_UINT32, description="Matches to return (0: the service's default).")
    ] = 10,
    substring: Annotated[bool, Query(description="Labels containing the phrase first.")] = False,
) -> models.LabelMatches:
    matches = await client.labelling.search_features(sae_id, q, top_k=top_k, substring=substring)
    return models.LabelMatches(matches=[convert.label_match(match) for match in matches])


@router.get("/saes/{sae_id}/features/{feature}", summary="One feature: label, top documents, neighbours")
async def feature(
    sae_id: SaeId,
    feature: FeatureId,
    client: Client,
    corpus: Annotated[
        str | None, Query(description="Corpus of the top documents; default: the first indexed with the SAE.")
    ] = None,
    top_documents: Annotated[
        int, Query(ge=0, le=models.MAX_UINT32, description="Top documents (0: the service's default).")
    ] = 10,
    neighbours: Annotated[
        int, Query(ge=0, le=models.MAX_UINT32, description="Neighbours of each kind (0: the default).")
    ] = 10,
) -> models.Feature:
    info = await client.sae.get_sae(sae_id)
    validation.feature_of(info, feature)
    return await reading.feature_page(client, info, feature, corpus, top_documents, neighbours)


@router.get(
    "/saes/{sae_id}/features/{feature}/activations",
    summary="Histogram of a feature's activations over a seeded sample of the documents it fires on",
)
async def activations(
    sae_id: SaeId,
    feature: FeatureId,
    client: Client,
    corpus: Annotated[
        str | None, Query(description="Default: the first corpus indexed with the SAE.")
    ] = None,
    sample: Annotated[
        int, Query(ge=1, le=validation.MAX_SAMPLE, description="Firing documents to sample.")
    ] = validation.DEFAULT_SAMPLE,
    bins: Bins = validation.DEFAULT_BINS,
) -> models.ActivationHistogram:
    info = await client.sae.get_sae(sae_id)
    validation.feature_of(info, feature)
    chosen = await reading.corpus_with(client, info.sae_id, corpus)
    if chosen is None:
        raise validation.ResourceNotFoundError(f"no corpus is indexed with SAE {info.sae_id!r}")
    documents = await client.search.sample_documents(chosen, feature, sae_id=info.sae_id, n=sample)
    values = [doc.activation for doc in documents]
    return models.ActivationHistogram(
        sae_id=info.sae_id,
        feature=feature,
        corpus=chosen,
        sampled=len(values),
        bins=histogram(values, bins, 0.0, max(values, default=1.0)),
    )


@router.post("/saes/{sae_id}/features/{feature}/test", summary="How strongly a feature fires on a text")
async def test_text(
    sae_id: SaeId, feature: FeatureId, body: models.TextProbe, client: Client
) -> models.ProbeResult:
    info = await client.sae.get_sae(sae_id)
    validation.feature_of(info, feature)
    latents, active = await reading.active_features(client, info, body.text)
    activations = latents.to_dict()
    ranked = [item.feature for item in active]
    fires = activations.get(feature, 0.0) > 0
    return models.ProbeResult(
        sae_id=info.sae_id,
        feature=feature,
        activation=activations.get(feature, 0.0),
        fires=fires,
        rank=ranked.index(feature) + 1 if fires else None,
        active_features=active,
    )


@router.post("/search", summary="Search a corpus, optionally steered; with the query's active features")
async def search(body: models.SearchRequest, client: Client) -> models.SearchResult:
    interventions = validation.interventions(body.interventions)
    result = await client.search.search(
        body.corpus,
        body.text,
        mode=body.mode,
        sae_id=body.sae_id,
        fusion=body.fusion,
        filter=convert.search_filter(body.filter),
        top_k=body.top_k,
        offset=body.offset,
        explain=body.explain,
        interventions=interventions,
        with_rank_changes=body.with_rank_changes,
        with_text=body.with_text,
    )
    info = await client.sae.get_sae(result.sae_id)
    _, query_features = await reading.active_features(client, info, body.text)
    return convert.search_result(result, query_features)


@router.get("/saes/{sae_id}/families", summary="The SAE's feature families, largest first, paged")
async def families(
    sae_id: SaeId, client: Client, page_size: PageSize = 100, page_token: PageToken = ""
) -> models.Families:
    page = await client.families.list_families(sae_id, page_size=page_size, page_token=page_token)
    return convert.families(page.items, page.next_page_token)


@router.get("/saes/{sae_id}/families/{family_id}", summary="One family: its tree of features")
async def family(
    sae_id: SaeId,
    family_id: Annotated[str, Path(description="A family id, e.g. 'f12-p0'.")],
    client: Client,
) -> models.Family:
    family_id = validation.family_id(family_id)
    return convert.family(await client.families.get_family(family_id, sae_id))
