"""Labels between the core's ``LabelRecord`` and the wire's ``FeatureLabel``."""

from __future__ import annotations

from featurelens.interp.records import LabelRecord
from featurelens.v1 import labelling_pb2


def feature_label(record: LabelRecord) -> labelling_pb2.FeatureLabel:
    """The record as the API returns it (pearson_r left unset when undefined)."""
    message = labelling_pb2.FeatureLabel(
        sae_id=record.sae_id,
        feature=record.feature,
        label=record.label,
        f1=record.f1,
        interpreter_model=record.interpreter_model,
        predictor_model=record.predictor_model,
        density=record.density,
        created_unix=record.created_unix,
        auroc=record.auroc,
        auroc_hard=record.auroc_hard,
        balanced_accuracy=record.balanced_accuracy,
        embedding_auroc=record.embedding_auroc,
        embedding_auroc_hard=record.embedding_auroc_hard,
        prompt_version=record.prompt_version,
        cost_usd=record.cost_usd,
        tokens=record.tokens,
        parse_failures=record.parse_failures,
        scored_documents=record.scored_documents,
        example_ids=list(record.example_ids),
        score_note=record.score_note,
    )
    if record.pearson_r is not None:
        message.pearson_r = record.pearson_r
    return message
