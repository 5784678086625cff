"""A stored feature label: the label, its scores, and how it was made.

``LabelRecord`` is what the labelling job produces and what the store keeps (as the payload of
the feature's point, with the label's embedding as its vector). ``to_payload`` and
``from_payload`` are the one conversion between the two; the service converts records to
``featurelens.v1.FeatureLabel`` messages in its ``convert`` module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Bumped when the payload's fields change meaning.
PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class LabelRecord:
    """One feature's label and scores (see ``FeatureLabel`` in labelling.proto for each field)."""

    sae_id: str
    feature: int
    label: str
    #: None when undefined (constant predictions or truth); ``score_note`` says why.
    pearson_r: float | None = None
    f1: float = 0.0
    auroc: float = 0.0
    auroc_hard: float = 0.0
    balanced_accuracy: float = 0.0
    embedding_auroc: float = 0.0
    embedding_auroc_hard: float = 0.0
    interpreter_model: str = ""
    predictor_model: str = ""
    prompt_version: str = ""
    density: float = 0.0
    created_unix: int = 0
    cost_usd: float = 0.0
    tokens: int = 0
    parse_failures: int = 0
    scored_documents: int = 0
    example_ids: tuple[str, ...] = ()
    test_ids: tuple[str, ...] = ()
    score_note: str = ""
    corpus: str = ""
    domain: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.feature < 0:
            raise ValueError(f"feature is {self.feature}; latent ids are not negative")
        if not self.label.strip():
            raise ValueError(f"feature {self.feature}: the label is empty")
        if self.pearson_r is not None and not math.isfinite(self.pearson_r):
            raise ValueError(
                f"feature {self.feature}: pearson_r is {self.pearson_r}; use None when undefined"
            )

    def to_payload(self) -> dict[str, Any]:
        """The record as a JSON-ready payload (tuples as lists, the payload version added)."""
        payload = asdict(self)
        payload["example_ids"] = list(self.example_ids)
        payload["test_ids"] = list(self.test_ids)
        payload["extra"] = dict(self.extra)
        payload["payload_version"] = PAYLOAD_VERSION
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> LabelRecord:
        """The record a payload holds; unknown keys (from newer writers) are ignored."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in payload.items() if key in known}
        values["example_ids"] = tuple(values.get("example_ids", ()))
        values["test_ids"] = tuple(values.get("test_ids", ()))
        values["extra"] = dict(values.get("extra") or {})
        return cls(**values)
