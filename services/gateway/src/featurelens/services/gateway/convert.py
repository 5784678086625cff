"""The SDK's results as the JSON API's shapes (``models``), and JSON requests as SDK inputs.

Non-finite numbers become null: JSON has no NaN, and a score that is undefined is not a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from featurelens import client as sdk
from featurelens.services.gateway import models


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def corpus(info: sdk.CorpusInfo) -> models.Corpus:
    return models.Corpus(
        corpus=info.corpus,
        documents=info.documents,
        dim=info.dim,
        embedding_model=info.embedding_model,
        sae_ids=list(info.sae_ids),
    )


def sae(info: sdk.SaeInfo) -> models.Sae:
    config, metrics = info.config, info.metrics
    return models.Sae(
        sae_id=info.sae_id,
        config=models.SaeConfig(
            num_latents=config.num_latents,
            k=config.k,
            d_in=config.d_in,
            k_aux=config.k_aux,
            auxk_coef=finite(config.auxk_coef),
            dead_steps_threshold=config.dead_steps_threshold,
            multik_coef=finite(config.multik_coef),
            multik_k=config.multik_k,
        ),
        metrics=models.SaeMetrics(
            train_nmse=finite(metrics.train_nmse),
            val_nmse=finite(metrics.val_nmse),
            dead_fraction=finite(metrics.dead_fraction),
            dense_fraction=finite(metrics.dense_fraction),
            steps=metrics.steps,
            samples=metrics.samples,
            best_epoch=metrics.best_epoch,
            stopped_early=metrics.stopped_early,
        ),
        embedding_model=info.embedding_model,
        created_unix=info.created_unix,
        is_default=info.is_default,
    )


def feature_label(label: sdk.FeatureLabel) -> models.FeatureLabel:
    return models.FeatureLabel(
        sae_id=label.sae_id,
        feature=label.feature,
        label=label.label,
        pearson_r=finite(label.pearson_r),
        f1=finite(label.f1),
        auroc=finite(label.auroc),
        auroc_hard=finite(label.auroc_hard),
        balanced_accuracy=finite(label.balanced_accuracy),
        embedding_auroc=finite(label.embedding_auroc),
        embedding_auroc_hard=finite(label.embedding_auroc_hard),
        density=finite(label.density) or 0.0,
        interpreter_model=label.interpreter_model,
        predictor_model=label.predictor_model,
        prompt_version=label.prompt_version,
        scored_documents=label.scored_documents,
        score_note=label.score_note,
        created_unix=label.created_unix,
    )


def label_match(match: sdk.FeatureMatch) -> models.LabelMatch:
    return models.LabelMatch(
        label=feature_label(match.label), score=match.score, substring_match=match.substring_match
    )


def document(doc: sdk.Document) -> models.Document:
    return models.Document(
        id=doc.id, title=doc.title, text=doc.text, categories=list(doc.categories), date=doc.date
    )


def activated_document(doc: sdk.ActivatedDocument) -> models.ActivatedDocument:
    return models.ActivatedDocument(document=document(doc.document), activation=doc.activation)


def neighbour(item: sdk.FeatureNeighbour) -> models.Neighbour:
    return models.Neighbour(feature=item.feature, score=item.score, label=item.label)


def family_refs(item: sdk.FeatureFamilies | None) -> list[models.FamilyRef]:
    if item is None:
        return []
    return [
        models.FamilyRef(family_id=family_id, label=label)
        for family_id, label in zip(item.family_ids, item.family_labels, strict=True)
    ]


def active_features(
    latents: sdk.SparseVector, labels: Mapping[int, sdk.FeatureLabel]
) -> list[models.ActiveFeature]:
    """The latents of one vector with their labels, strongest first."""
    pairs = sorted(latents.to_dict().items(), key=lambda pair: -pair[1])
    found = []
    for feature, activation in pairs:
        label = labels.get(feature)
        found.append(
            models.ActiveFeature(
                feature=feature,
                activation=activation,
                label=label.label if label is not None else "",
                label_score=finite(label.embedding_auroc) if label is not None else None,
            )
        )
    return found


def intervention(item: models.Intervention) -> sdk.Intervention:
    """The SDK's intervention; ValueError when it does not name exactly one target."""
    return sdk.Intervention(
        weight=item.weight,
        feature=item.feature,
        family_id=item.family_id,
        phrase=item.phrase,
        mode=item.mode,
        per_member=item.per_member,
    )


def search_filter(item: models.SearchFilter | None) -> sdk.Filter | None:
    if item is None:
        return None
    return sdk.Filter(
        categories=tuple(item.categories),
        date_from=item.date_from,
        date_to=item.date_to,
        features_must_fire=tuple(item.features_must_fire),
        features_must_not_fire=tuple(item.features_must_not_fire),
    )


def hit(item: sdk.Hit) -> models.Hit:
    return models.Hit(
        document=document(item.document),
        score=item.score,
        rank=item.rank,
        rank_before=item.rank_before,
        explanation=[
            models.Contribution(
                feature=part.feature,
                query_activation=part.query_activation,
                document_activation=part.document_activation,
                contribution=part.contribution,
                label=part.label,
                family_ids=list(part.family_ids),
            )
            for part in item.explanation
        ],
    )


def steered_feature(item: sdk.SteeredFeature) -> models.SteeredFeature:
    return models.SteeredFeature(
        feature=item.feature,
        label=item.label,
        weight=item.weight,
        mode=item.mode,
        intervention=item.intervention,
        family_id=item.family_id,
        phrase=item.phrase,
        match_score=finite(item.match_score),
    )


def search_result(
    result: sdk.SearchResult, query_features: list[models.ActiveFeature]
) -> models.SearchResult:
    return models.SearchResult(
        sae_id=result.sae_id,
        took_ms=result.took_ms,
        hits=[hit(item) for item in result.hits],
        dropped=[hit(item) for item in result.dropped],
        steered=[steered_feature(item) for item in result.steered],
        steer_cosine=finite(result.steer_cosine) or 0.0,
        query_features=query_features,
    )


def family(item: sdk.Family) -> models.Family:
    return models.Family(
        family_id=item.family_id,
        sae_id=item.sae_id,
        parent_feature=item.parent_feature,
        features=list(item.features),
        edges=[(parent, child) for parent, child in item.edges],
        label=item.label,
        depth=item.depth,
        root_density=item.root_density,
        nested_in=item.nested_in,
        corpus=item.corpus,
        direction_norm=item.direction_norm,
        children=item.children,
        members=[
            models.FamilyMember(
                feature=member.feature,
                parent=member.parent,
                density=member.density,
                label=member.label,
                label_score=finite(member.label_score) if member.label else None,
            )
            for member in item.members
        ],
    )


def families(items: Sequence[sdk.Family], next_page_token: str) -> models.Families:
    return models.Families(families=[family(item) for item in items], next_page_token=next_page_token)
