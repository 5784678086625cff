"""The JSON API's shapes: what each endpoint takes and answers (the OpenAPI document is made from
these). Field descriptions say units and ranges; the services' protos say more."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: Largest count or latent id the protos carry (uint32): a larger one is refused as bad input here,
#: since the SDK could not even put it on the wire.
MAX_UINT32 = 2**32 - 1


def _utf8(value: str) -> str:
    """Refuse a string that cannot go on the wire: JSON's escapes can make a lone UTF-16 surrogate
    ("\\ud800"), which Python keeps in a str but protobuf, and so the SDK, cannot encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("holds a lone UTF-16 surrogate (such as \\ud800), which is not text") from None
    return value


#: A string of a request, one that can go on the wire (see ``_utf8``).
Text = Annotated[str, AfterValidator(_utf8)]

SearchMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["rrf", "dbsf"]
SteerMode = Literal["additive", "clamp"]
HealthStatus = Literal["SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN", "UNAVAILABLE"]
LabelOrder = Literal["score", "density_desc", "density_asc"]


class Model(BaseModel):
    """Requests refuse unknown fields, so a misspelt option is an error rather than ignored."""

    model_config = ConfigDict(extra="forbid")


# -- errors -----------------------------------------------------------------------------------------


class ErrorDetail(Model):
    code: str = Field(description="gRPC status name, e.g. NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE.")
    message: str = Field(description="A sentence saying what went wrong.")
    request_id: str = Field(description="The request's id (also the X-Request-Id header); quote it.")


class ErrorBody(Model):
    error: ErrorDetail


# -- health and corpora -----------------------------------------------------------------------------


class Health(Model):
    ready: bool = Field(description="Every service answers SERVING.")
    services: dict[str, HealthStatus] = Field(
        description="Each service's health; UNAVAILABLE when it cannot be reached."
    )


class Corpus(Model):
    corpus: str
    documents: int
    dim: int = Field(description="Dimension of the stored dense embeddings.")
    embedding_model: str
    sae_ids: list[str] = Field(description="SAEs whose latents the corpus is indexed with.")


class Corpora(Model):
    corpora: list[Corpus]


# -- SAEs ---------------------------------------------------------------------------------------------


class SaeConfig(Model):
    num_latents: int
    k: int = Field(description="Latents active per input.")
    d_in: int
    k_aux: int | None = None
    auxk_coef: float | None = None
    dead_steps_threshold: int | None = None
    multik_coef: float | None = None
    multik_k: int | None = None


class SaeMetrics(Model):
    train_nmse: float | None
    val_nmse: float | None
    dead_fraction: float | None
    dense_fraction: float | None
    steps: int
    samples: int
    best_epoch: int | None = Field(
        None, description="Epoch (from 0) whose weights the SAE holds; null without a validation split."
    )
    stopped_early: bool = Field(False, description="Training ended before its last epoch (early stopping).")


class Sae(Model):
    sae_id: str
    config: SaeConfig
    metrics: SaeMetrics
    embedding_model: str = Field(description="Encoder model whose embeddings it was trained on.")
    created_unix: int
    is_default: bool


class Saes(Model):
    saes: list[Sae]


class HistogramBin(Model):
    lower: float
    upper: float
    count: int


class DensityHistogram(Model):
    sae_id: str
    num_latents: int
    labelled_features: int = Field(description="Features with a label: the histogram counts these.")
    never_fire: int = Field(description="Labelled features of density 0 (left out of the bins).")
    bins: list[HistogramBin] = Field(description="Counts by log10(density), equal widths.")


# -- labels -----------------------------------------------------------------------------------------


class FeatureLabel(Model):
    sae_id: str
    feature: int
    label: str
    pearson_r: float | None = Field(description="Predicted vs true activations; null when undefined.")
    f1: float | None
    auroc: float | None
    auroc_hard: float | None
    balanced_accuracy: float | None
    embedding_auroc: float | None = Field(description="The label's score shown beside it.")
    embedding_auroc_hard: float | None
    density: float = Field(description="Fraction of documents on which the feature fires, [0, 1].")
    interpreter_model: str
    predictor_model: str
    prompt_version: str
    scored_documents: int
    score_note: str
    created_unix: int


class Labels(Model):
    labels: list[FeatureLabel]
    next_page_token: str = Field(description="Pass as page_token for the next page; empty on the last.")


class LabelMatch(Model):
    label: FeatureLabel
    score: float = Field(description="Cosine between the phrase and the label (1 for a substring match).")
    substring_match: bool


class LabelMatches(Model):
    matches: list[LabelMatch]


# -- features ---------------------------------------------------------------------------------------


class Document(Model):
    id: str
    title: str
    text: str = Field(description="Empty unless asked for.")
    categories: list[str]
    date: str = Field(description="YYYY-MM-DD or empty.")


class ActivatedDocument(Model):
    document: Document
    activation: float


class Neighbour(Model):
    feature: int
    score: float = Field(description="Normalised co-occurrence in [0, 1], or decoder cosine in [-1, 1].")
    label: str = Field(description="Empty when unlabelled.")


class FamilyRef(Model):
    family_id: str
    label: str = Field(description="Empty when unlabelled.")


class Feature(Model):
    sae_id: str
    feature: int
    label: FeatureLabel | None = Field(description="null when the feature has no label yet.")
    corpus: str | None = Field(
        description="The corpus top_documents come from; null when none holds the SAE."
    )
    top_documents: list[ActivatedDocument] = Field(description="Strongest activation first.")
    decoder_neighbours: list[Neighbour] = Field(description="Most similar decoder directions first.")
    cooccurrence_neighbours: list[Neighbour] | None = Field(
        description="Most co-occurring first; null when the SAE's co-occurrence is not built yet."
    )
    families: list[FamilyRef] = Field(description="Families it belongs to, most specific first.")


class ActivationHistogram(Model):
    sae_id: str
    feature: int
    corpus: str
    sampled: int = Field(description="Firing documents sampled (seeded, so the same every time).")
    bins: list[HistogramBin] = Field(description="Counts by activation, equal widths from 0 to the max.")


class TextProbe(Model):
    text: Text = Field(description="A text to run through the encoder and the SAE.")


class ActiveFeature(Model):
    feature: int
    activation: float
    label: str = Field(description="Empty when unlabelled.")
    label_score: float | None = Field(description="The label's embedding AUROC; null when unlabelled.")


class ProbeResult(Model):
    sae_id: str
    feature: int
    activation: float = Field(description="0 when the feature is not among the text's top-k latents.")
    fires: bool
    rank: int | None = Field(description="1 for the text's strongest latent; null when it does not fire.")
    active_features: list[ActiveFeature] = Field(
        description="Every latent active on the text, strongest first."
    )


# -- search -----------------------------------------------------------------------------------------


class Intervention(Model):
    """Steer exactly one target: a feature, a family or the feature a phrase names."""

    feature: int | None = Field(None, ge=0, le=MAX_UINT32)
    family_id: Text | None = None
    phrase: Text | None = None
    weight: float = Field(
        description="Additive: the shift along the feature's unit decoder direction (negative pushes "
        "away; 0 changes nothing). Clamp: the activation to set (>= 0)."
    )
    mode: SteerMode = "additive"
    per_member: bool = Field(False, description="A family steered member by member (full weight each).")


class SearchFilter(Model):
    categories: list[Text] = Field(default_factory=list, description="At least one of these.")
    date_from: Text = Field("", description="YYYY-MM-DD, inclusive; empty for none.")
    date_to: Text = Field("", description="YYYY-MM-DD, inclusive; empty for none.")
    features_must_fire: list[Annotated[int, Field(ge=0, le=MAX_UINT32)]] = Field(default_factory=list)
    features_must_not_fire: list[Annotated[int, Field(ge=0, le=MAX_UINT32)]] = Field(default_factory=list)


class SearchRequest(Model):
    corpus: Text
    text: Text = Field(description="The query.")
    sae_id: Text | None = Field(None, description="null: the default SAE.")
    mode: SearchMode = "dense"
    fusion: Fusion = "rrf"
    top_k: int = Field(10, ge=0, le=MAX_UINT32)
    offset: int = Field(0, ge=0, le=MAX_UINT32)
    interventions: list[Intervention] = Field(default_factory=list)
    explain: bool = Field(False, description="Each hit's features shared with the query, with labels.")
    with_rank_changes: bool = Field(
        False, description="Each hit's rank in the unsteered result, and unsteered hits that fell out."
    )
    with_text: bool = Field(False, description="Return each hit's body text.")
    filter: SearchFilter | None = None


class Contribution(Model):
    feature: int
    query_activation: float
    document_activation: float
    contribution: float
    label: str
    family_ids: list[str]


class Hit(Model):
    document: Document
    score: float
    rank: int = Field(description="From 1, offset included.")
    rank_before: int = Field(
        description="Rank in the unsteered result (0: not in it); with_rank_changes only."
    )
    explanation: list[Contribution]


class SteeredFeature(Model):
    feature: int
    label: str
    weight: float
    mode: SteerMode
    intervention: int = Field(description="Index of the request's intervention it came from.")
    family_id: str | None
    phrase: str | None
    match_score: float | None


class SearchResult(Model):
    sae_id: str
    took_ms: float
    hits: list[Hit]
    dropped: list[Hit] = Field(description="With rank changes: unsteered hits that fell out.")
    steered: list[SteeredFeature] = Field(description="Each feature steered, after expansion.")
    steer_cosine: float = Field(
        description="Cosine between the steered and the original query (0 unsteered)."
    )
    query_features: list[ActiveFeature] = Field(
        description="The unsteered query's active SAE latents, strongest first: one slider each."
    )


# -- families ---------------------------------------------------------------------------------------


class FamilyMember(Model):
    feature: int
    parent: int | None = Field(description="Its parent in the tree; null for the family's root.")
    density: float
    label: str
    label_score: float | None = Field(description="The label's embedding AUROC; null when unlabelled.")


class Family(Model):
    family_id: str
    sae_id: str
    parent_feature: int
    features: list[int]
    edges: list[tuple[int, int]] = Field(description="(parent, child) pairs.")
    label: str
    depth: int
    root_density: float
    nested_in: str | None
    corpus: str
    direction_norm: float
    children: int
    members: list[FamilyMember] = Field(description="Parent first, then depth first; empty in a listing.")


class Families(Model):
    families: list[Family]
    next_page_token: str
