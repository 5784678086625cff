"""Typed results (and a few typed inputs) of the SDK, as frozen dataclasses.

Dense vectors are numpy float32 arrays that view the received bytes without copying, so they are
read-only (``np.array(x)`` gives a writable copy). Dataclasses that hold arrays compare by
identity (``eq=False``), because numpy arrays have no single truth value for ``==``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

SteerMode = Literal["additive", "clamp"]
SearchMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["rrf", "dbsf"]


# -- shared ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SparseVector:
    """SAE latents of one vector: ``values[i]`` is the activation of latent ``indices[i]``."""

    indices: np.ndarray
    """Latent ids, int64."""
    values: np.ndarray
    """Activations, float32; same length as indices."""

    def __len__(self) -> int:
        return int(self.indices.size)

    def to_dict(self) -> dict[int, float]:
        """The latents as {latent id: activation}."""
        return {int(i): float(v) for i, v in zip(self.indices, self.values, strict=True)}


@dataclass(frozen=True)
class Progress:
    """Progress of a long-running job (training, indexing)."""

    stage: str
    """Short name of the current stage, e.g. "train", "embed", "upsert"."""
    done: int
    """Units of work done so far (steps, documents)."""
    total: int
    """Total units of work, or 0 when unknown."""
    rate_per_s: float
    """Units per second since the stage began."""
    eta_s: float
    """Estimated seconds until the stage ends, or -1 when unknown."""
    message: str
    """A human-readable line about the current state."""


@dataclass(frozen=True)
class Intervention:
    """Steer one feature (a latent id), a whole family (a family id) or the feature a phrase names.

    Additive mode adds ``weight`` times the feature's unit decoder direction (negative weights
    push away); clamp mode sets the feature's activation to ``weight`` (which must be >= 0).
    A ``phrase`` such as ``"dark matter halos"`` is resolved by the search service to the labelled
    feature whose label is closest in meaning; ``SearchResult.steered`` says which one it used.
    Families and phrases are for search only (the sae service's ``steer`` takes features).

    A family is steered, by default, as one direction: the normalised sum of its members' decoder
    directions, moved by ``weight`` (each member by ``weight / |sum|``). ``per_member=True`` steers
    every member by the full ``weight`` instead (additive mode; a clamp sets every member to
    ``weight`` either way). Only a family target may ask for it.

    ``Intervention(feature=2370, weight=5.0)``, ``Intervention(family_id="f2370-p0", weight=-2.0)``,
    ``Intervention(family_id="f2370-p0", weight=3.0, per_member=True)``,
    ``Intervention(phrase="dark matter halos", weight=4.0)``.
    """

    weight: float
    feature: int | None = None
    family_id: str | None = None
    mode: SteerMode = "additive"
    phrase: str | None = None
    per_member: bool = False

    def __post_init__(self) -> None:
        targets = [self.feature, self.family_id, self.phrase]
        if sum(target is not None for target in targets) != 1:
            raise ValueError("an intervention targets exactly one of feature, family_id or phrase")
        if self.per_member and self.family_id is None:
            raise ValueError("per_member=True steers each member of a family; give family_id as the target")
        if self.phrase is not None and not self.phrase.strip():
            raise ValueError("an intervention's phrase must have some text, e.g. 'dark matter halos'")
        if self.mode not in ("additive", "clamp"):
            raise ValueError(f"mode must be 'additive' or 'clamp', got {self.mode!r}")


class DocumentLike(Protocol):
    """Anything with a document's fields, e.g. ``Document`` or ``featurelens.corpus.Record``."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def categories(self) -> Sequence[str]: ...
    @property
    def date(self) -> str: ...


@dataclass(frozen=True)
class Document:
    """A document of a corpus."""

    id: str
    title: str = ""
    text: str = ""
    """The body text; empty in search results unless ``with_text`` was asked for."""
    categories: tuple[str, ...] = ()
    date: str = ""
    """Listing date as YYYY-MM-DD, or empty."""
    payload: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """Search hits on an attached Qdrant collection: the point's payload keys asked for with
    ``payload_fields`` (JSON values; numbers come back as floats). Empty elsewhere, and not sent
    when indexing."""


# -- encoder --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Embeddings:
    """Dense embeddings of a batch of texts, one row per text in request order."""

    vectors: np.ndarray
    """(len(texts), dim) float32, unit-normalised, read-only."""
    model_id: str
    """The model that produced them."""
    truncated: tuple[bool, ...]
    """truncated[i] is True when text i was longer than the model reads and was cut."""
    cached_count: int
    """How many rows came from the server's cache."""

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return int(self.vectors.shape[1])


@dataclass(frozen=True)
class ModelInfo:
    """A model the encoder serves."""

    id: str
    """Id to pass as ``model=``."""
    backend: str
    """"sentence-transformers", "wordllama" or "openai"."""
    dim: int
    max_input_tokens: int
    """Longest input in tokens, 0 when the backend has no limit."""
    is_default: bool


# -- sae ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaeConfig:
    """Shape and loss settings of a top-k SAE.

    For training, None leaves a loss setting to the server, which uses featurelens-core's default
    (the same as ``featurelens sae train``); a value is sent as is, so ``auxk_coef=0.0`` switches
    AuxK off. In an ``SaeInfo`` every setting is the value the SAE was trained with.
    """

    num_latents: int
    k: int
    d_in: int = 0
    """Input dimension; 0 takes it from the embedding store when training."""
    k_aux: int | None = None
    """Dead latents used by the AuxK loss; 0 means 2 * k (None: the default, 0)."""
    auxk_coef: float | None = None
    """Weight of the AuxK loss; 0 switches AuxK off (None: the default, 1/32)."""
    dead_steps_threshold: int | None = None
    """Steps without firing after which a latent is dead; 0 means one epoch (None: the default, 0)."""
    multik_coef: float | None = None
    """Weight of the multi-k reconstruction term; 0 switches it off (None: the default, 0)."""
    multik_k: int | None = None
    """Latents of the multi-k term; 0 means 4 * k (None: the default, 0)."""


@dataclass(frozen=True)
class SaeMetrics:
    """Summary metrics of a trained SAE."""

    train_nmse: float
    val_nmse: float
    dead_fraction: float
    """Fraction of latents that never fire on the training split (with the kept weights)."""
    dense_fraction: float
    """Fraction of latents firing on more than 10% of the training split's rows."""
    steps: int
    samples: int
    best_epoch: int | None = None
    """The epoch (from 0) whose weights the SAE holds, the best validation NMSE's; None when no
    validation split chose one (trained with ``val_fraction=0``: the last step's weights)."""
    stopped_early: bool = False
    """True when the run ended before its last epoch: no better validation NMSE for ``patience``
    epochs."""


@dataclass(frozen=True)
class SaeInfo:
    """One SAE of the server's registry."""

    sae_id: str
    config: SaeConfig
    metrics: SaeMetrics
    embedding_model: str
    """Encoder model id whose embeddings it was trained on."""
    created_unix: int
    is_default: bool


@dataclass(frozen=True, eq=False)
class Latents:
    """The top-k latents of each encoded vector, one ``SparseVector`` per row, largest first."""

    sae_id: str
    rows: tuple[SparseVector, ...]

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True, eq=False)
class Decoded:
    """Dense vectors decoded from sparse latents."""

    sae_id: str
    vectors: np.ndarray
    """(rows, d_in) float32, read-only."""


@dataclass(frozen=True, eq=False)
class Steered:
    """A steered vector and what steering changed."""

    sae_id: str
    vector: np.ndarray
    """The steered vector (not normalised), float32, read-only."""
    cosine_to_original: float
    latents_before: SparseVector
    latents_after: SparseVector

    def as_dense_query(self) -> list[float]:
        """The steered vector at unit length, as a list: an Elasticsearch / OpenSearch ``knn`` query's
        ``query_vector``, a Vespa ``input.query(q)`` tensor's values, any engine's dense query."""
        norm = float(np.linalg.norm(self.vector))
        return [float(x) for x in (self.vector / norm if norm > 0 else self.vector)]

    def as_sparse_query(self, labels: Mapping[int, str] | None = None) -> dict[str, float]:
        """The steered query's latents as ``{feature: weight}``, weight > 0 only, ready for an
        Elasticsearch / OpenSearch ``sparse_vector`` (``query_vector``) or ``neural_sparse`` query or
        a Vespa mapped tensor: keys are the feature's label where ``labels`` has one, else its id.

        The documents' side must use the same keys: index each document's latents under the same
        label-or-id names (``featurelens.store.schema.firing`` decides which latents fire).
        """
        names = labels or {}
        query: dict[str, float] = {}
        for latent, weight in zip(self.latents_after.indices, self.latents_after.values, strict=True):
            if weight > 0:
                key = names.get(int(latent)) or str(int(latent))
                query[key] = query.get(key, 0.0) + float(weight)
        return query


@dataclass(frozen=True)
class AttachPlan:
    """What attaching an SAE to a caller's Qdrant collection changes (a dry-run's answer)."""

    collection: str
    sae_id: str
    dense_vector: str
    """The dense vector encoded; empty for the unnamed default vector."""
    sparse_vector: str
    """The sparse vector name added to every point."""
    payload_key: str
    """The payload key added: ids of the latents that fire."""
    id_type: str
    """"integer" or "uuid", read from a point."""
    points: int
    points_to_write: int
    """Points without the SAE's vector yet (what this attach writes)."""
    add_sparse_config: bool
    """Whether the sparse vector is new to the collection's config."""


@dataclass(frozen=True)
class AttachUpdate:
    """One message of an attach: the plan (first message only), then progress."""

    plan: AttachPlan | None
    progress: Progress


@dataclass(frozen=True, eq=False)
class DecoderDirections:
    """Unit-norm decoder directions, one row per requested latent in request order."""

    sae_id: str
    directions: np.ndarray
    """(len(features), d_in) float32, read-only."""


@dataclass(frozen=True)
class TrainProgress:
    """One progress message of a training run; the last one carries ``result``."""

    progress: Progress
    epoch: int
    loss: float
    nmse: float
    auxk_loss: float
    val_nmse: float
    """Validation NMSE after the last finished epoch, or -1 before the first."""
    dead_fraction: float
    result: SaeInfo | None = None
    """The trained SAE, on the final message only."""


# -- search ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """Restricts which documents a search may return."""

    categories: tuple[str, ...] = ()
    """The document has at least one of these categories."""
    date_from: str = ""
    """YYYY-MM-DD lower bound (inclusive), empty for none."""
    date_to: str = ""
    """YYYY-MM-DD upper bound (inclusive), empty for none."""
    features_must_fire: tuple[int, ...] = ()
    features_must_not_fire: tuple[int, ...] = ()


@dataclass(frozen=True)
class FeatureContribution:
    """One feature's share of why a hit matched."""

    feature: int
    query_activation: float
    document_activation: float
    contribution: float
    label: str
    """The feature's label, empty when unlabelled."""
    family_ids: tuple[str, ...] = ()
    """The families of the SAE the feature belongs to (as parent or child), most specific first;
    empty when it is in none or no families are built."""


@dataclass(frozen=True)
class Hit:
    """One search result."""

    document: Document
    score: float
    rank: int
    """Rank from 1 (offset included)."""
    rank_before: int = 0
    """With rank changes: the rank in the unsteered result, 0 when it was not in it."""
    explanation: tuple[FeatureContribution, ...] = ()


@dataclass(frozen=True)
class SteeredFeature:
    """One feature a search was steered by, and which intervention of the request it came from."""

    feature: int
    label: str
    """The feature's label, empty when unlabelled."""
    weight: float
    mode: SteerMode
    intervention: int
    """Position of the request's intervention it came from."""
    family_id: str | None = None
    """The family it was expanded from; None when the intervention did not name a family."""
    phrase: str | None = None
    """The phrase it was resolved from; None when the intervention did not name a phrase."""
    match_score: float | None = None
    """Cosine between the phrase and the feature's label; None unless resolved from a phrase."""


@dataclass(frozen=True)
class SearchResult:
    """Hits of a search and, for a steered search, what steering changed."""

    hits: tuple[Hit, ...]
    sae_id: str
    took_ms: float
    """Server time spent on the request."""
    steer_cosine: float = 0.0
    """With interventions: cosine between the original and the steered query vector."""
    dropped: tuple[Hit, ...] = field(default=())
    """With rank changes: unsteered hits that fell out of the steered result."""
    steered: tuple[SteeredFeature, ...] = field(default=())
    """With interventions: each feature steered, after family expansion and phrase resolution."""


@dataclass(frozen=True)
class ActivatedDocument:
    """A document with one feature's activation on it."""

    document: Document
    activation: float
    embedding: np.ndarray | None = field(default=None, compare=False)
    """The document's stored dense embedding (float32, read-only) when asked for with
    ``with_embedding=True``, else None; left out of ``==``."""


@dataclass(frozen=True, eq=False)
class ActivationBatch:
    """SAE latents of a batch of documents: ``latents[i]`` belongs to ``doc_ids[i]``."""

    doc_ids: tuple[str, ...]
    latents: tuple[SparseVector, ...]


@dataclass(frozen=True)
class IndexProgress:
    """One progress message of an indexing job."""

    progress: Progress
    indexed: int
    """Documents stored (or found stored unchanged) so far."""
    failed: int
    failed_ids: tuple[str, ...] = ()
    """Ids of the documents of the batch that just failed."""
    failure_reason: str = ""
    duplicates: int = 0
    """Documents skipped so far because a later one of the same batch has the same id (that one
    is stored)."""


@dataclass(frozen=True)
class CorpusInfo:
    """An indexed corpus."""

    corpus: str
    documents: int
    dim: int
    embedding_model: str
    sae_ids: tuple[str, ...]


# -- labelling ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureLabel:
    """A feature's label and how well it predicts where the feature fires.

    The scores are measured on held-out documents: the firing ones against random non-firing ones
    and against hard negatives (the non-firing documents nearest the firing ones by embedding).
    """

    sae_id: str
    feature: int
    """Latent id."""
    label: str
    """Short label, a few words."""
    pearson_r: float | None
    """Pearson r between predicted and true activations, in [-1, 1]; None when undefined (the
    predictions or the truth were constant: ``score_note`` says which)."""
    f1: float
    """F1 of predicting whether the feature fires, in [0, 1]."""
    interpreter_model: str
    """The model that wrote the label ("offline" for the keyword labeller)."""
    predictor_model: str
    """The model that predicted activations for scoring."""
    density: float
    """Fraction of documents on which the feature fires, in [0, 1]."""
    created_unix: int
    """Unix seconds when the label was written."""
    auroc: float
    """AUROC of the predictions, firing documents against random non-firing ones."""
    auroc_hard: float
    """The same against hard negatives."""
    balanced_accuracy: float
    """Balanced accuracy of predicting firing / not firing, in [0, 1]."""
    embedding_auroc: float
    """AUROC of the cosine between the label's and each document's embedding (no LLM), against
    random non-firing documents."""
    embedding_auroc_hard: float
    """The same against hard negatives."""
    prompt_version: str
    """Version of the interpreter and predictor prompts ("offline" for the keyword labeller)."""
    cost_usd: float
    """US dollars spent on this label's LLM calls (0 for cache hits and the offline labeller)."""
    tokens: int
    """Prompt plus completion tokens of this label's LLM calls, cache hits included."""
    parse_failures: int
    """Held-out documents whose prediction could not be parsed (left out of the scores)."""
    scored_documents: int
    """Held-out documents scored."""
    example_ids: tuple[str, ...]
    """Ids of the documents shown to the interpreter, top-activating first, then non-firing."""
    score_note: str
    """Why a score is missing or weak; empty when none."""


@dataclass(frozen=True)
class LabelProgress:
    """One message of a labelling job: progress, the label just finished (if any), running totals.

    The totals count from the start of the job. The last message has ``budget_exhausted`` set
    when the job stopped because its next LLM call would have passed the budget; the labels
    finished before are kept.
    """

    progress: Progress
    label: FeatureLabel | None
    """The label this message reports, or None."""
    tokens_used: int
    """Prompt plus completion tokens so far, cache hits included."""
    cache_hits: int
    """LLM calls answered from the cache so far."""
    llm_calls: int
    """LLM calls made to the endpoint so far (cache misses)."""
    cost_usd: float
    """US dollars spent so far (cache hits cost nothing)."""
    skipped: int
    """Features skipped so far because they already had a label."""
    failed: int
    """Features that failed so far."""
    failed_feature: int | None
    """The feature that failed latest; None when none has."""
    failure_reason: str
    """Why ``failed_feature`` failed; empty when none has."""
    budget_exhausted: bool


@dataclass(frozen=True)
class FeatureMatch:
    """A labelled feature found by ``search_features``."""

    label: FeatureLabel
    score: float
    """Cosine between the query and the label, in [-1, 1] (1 for a substring match)."""
    substring_match: bool
    """True when the label contains the query as a substring."""


# -- families -------------------------------------------------------------------------------------

NeighbourKind = Literal["cooccurrence", "decoder"]
"""How two features are related: co-occurring over the corpus, or similar decoder directions."""


@dataclass(frozen=True)
class FamilyMember:
    """One feature of a family, where it sits in the family's tree, and its label."""

    feature: int
    """Latent id."""
    parent: int | None
    """The member's parent in the tree; None for the family's parent feature."""
    density: float
    """Fraction of the corpus's documents on which the feature fires, in [0, 1]."""
    label: str
    """The feature's label, empty when unlabelled."""
    label_score: float
    """The label's score (embedding AUROC), 0 when unlabelled."""


@dataclass(frozen=True)
class Family:
    """A family of features: a parent feature (dense, general) and the tree of features under it.

    ``list_families`` leaves ``members`` empty; ``get_family`` fills it.
    """

    family_id: str
    """Unique within the SAE and stable across rebuilds: "f<parent>-p<pass>", e.g. "f2370-p0"."""
    sae_id: str
    parent_feature: int
    """The root of the tree."""
    features: tuple[int, ...]
    """Every member's latent id, the parent included."""
    edges: tuple[tuple[int, int], ...]
    """The tree's edges as (parent, child) pairs."""
    label: str
    """The family's label, written from its members' labels; empty before labelling."""
    depth: int
    """Depth of the tree below the parent (1: the parent and its children only)."""
    root_density: float
    """Fraction of the corpus's documents on which the parent fires, in [0, 1]."""
    nested_in: str | None
    """The family this one is nested in; None for a top-level family."""
    corpus: str
    """The corpus whose activations the family was built from."""
    direction_norm: float
    """Length of the sum of the members' unit decoder directions: steering the family by weight
    w steers each member by w / direction_norm."""
    members: tuple[FamilyMember, ...] = ()
    """Every member with its density and label, the parent first, then depth first (children by
    feature id); empty in a listing."""

    @property
    def children(self) -> int:
        """Number of members below the parent."""
        return max(len(self.features) - 1, 0)


@dataclass(frozen=True)
class FamilyStatistics:
    """The paper's statistics of a set of families (O'Neill et al. 2024, section 5)."""

    families: int
    mean_children: float
    median_children: float
    parent_child: float
    """Mean normalised co-occurrence of a parent with each of its children."""
    child_child: float
    """Mean normalised co-occurrence of two children of one parent."""
    block_score: float
    """Share of the members' co-occurrence inside their family blocks."""
    block_control: float
    """The same share with the family labels randomly permuted (the control)."""
    features_in_families: int
    """Features in at least one family."""


@dataclass(frozen=True)
class FamilyBuildResult:
    """What a finished ``build_families`` job built and spent."""

    families_built: int
    statistics: FamilyStatistics
    llm_calls: int
    """LLM calls made for the family labels (0 with the offline labeller)."""
    cost_usd: float
    """US dollars the family labels cost."""


@dataclass(frozen=True)
class FamilyBuildProgress:
    """One message of a ``build_families`` job; the last one carries ``result``."""

    progress: Progress
    result: FamilyBuildResult | None = None
    """What was built, on the final message only."""


@dataclass(frozen=True)
class FeatureNeighbour:
    """A feature related to another, and how strongly."""

    feature: int
    score: float
    """Normalised co-occurrence in [0, 1], or decoder cosine in [-1, 1], depending on the kind."""
    label: str
    """The neighbour's label, empty when unlabelled."""


@dataclass(frozen=True)
class CrossSaeMatch:
    """A feature of one SAE and its most similar features in another, by decoder cosine."""

    source_feature: int
    targets: tuple[FeatureNeighbour, ...]
    """Best first; each ``score`` is a decoder cosine and ``label`` the target feature's label."""

    @property
    def max_cosine(self) -> float | None:
        """The cosine of the best match; None when there is none."""
        return self.targets[0].score if self.targets else None


@dataclass(frozen=True)
class FeatureFamilies:
    """The families one feature belongs to (as parent or child), most specific first."""

    feature: int
    family_ids: tuple[str, ...]
    family_labels: tuple[str, ...]
    """``family_labels[i]`` is the label of ``family_ids[i]``, empty when unlabelled."""


SteeringDirection = Literal["up", "down"]
"""Which way a search was steered: towards a topic ("up") or away from it ("down")."""


@dataclass(frozen=True)
class LlmSpend:
    """What one LLM call cost."""

    model: str
    """The model that answered."""
    cached: bool
    """True when the answer came from the server's cache (it cost nothing)."""
    cost_usd: float
    tokens: int


@dataclass(frozen=True)
class SteeringJudgement:
    """The LLM judge's answer: which candidate topic a steered search moved towards (away from)."""

    choice: int | None
    """Index into the candidates asked about; None when the answer named none (see ``note``)."""
    note: str
    spend: LlmSpend


@dataclass(frozen=True)
class QueryRewrite:
    """A query rewritten by the LLM to be more (or less) about a topic."""

    query: str
    """The rewritten query; empty when the answer held none (see ``note``)."""
    note: str
    spend: LlmSpend


@dataclass(frozen=True)
class QdrantTrainSource:
    """Train on a named dense vector of a collection in the sae server's own Qdrant store, one
    featurelens did not create (the server needs ``FEATURELENS_SAE_TRAIN_FROM_STORE``)."""

    collection: str
    vector_name: str = ""
    """"" means the collection's unnamed vector."""
    max_rows: int = 0
    """More points than this are reduced to a seeded sample; 0 means the server's limit."""


@dataclass(frozen=True)
class FileTrainSource:
    """Train on a .npy or .parquet file of embeddings on the sae server (inside its allowed roots)."""

    path: str
    column: str = ""
    """The Parquet column of float lists; empty for .npy."""
    max_rows: int = 0


TrainSource = str | QdrantTrainSource | FileTrainSource
"""Where an SAE's training rows come from: an embedding store directory on the server (a str), a
Qdrant collection's vector, or a file."""
