"""Requests from Python arguments and typed results from responses, shared by sync and async clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format

from featurelens.client.types import (
    ActivatedDocument,
    ActivationBatch,
    AttachPlan,
    AttachUpdate,
    CorpusInfo,
    CrossSaeMatch,
    Decoded,
    DecoderDirections,
    Document,
    DocumentLike,
    Embeddings,
    Family,
    FamilyBuildProgress,
    FamilyBuildResult,
    FamilyMember,
    FamilyStatistics,
    FeatureContribution,
    FeatureFamilies,
    FeatureLabel,
    FeatureMatch,
    FeatureNeighbour,
    FileTrainSource,
    Filter,
    Fusion,
    Hit,
    IndexProgress,
    Intervention,
    LabelProgress,
    Latents,
    LlmSpend,
    ModelInfo,
    NeighbourKind,
    Progress,
    QdrantTrainSource,
    QueryRewrite,
    SaeConfig,
    SaeInfo,
    SaeMetrics,
    SearchMode,
    SearchResult,
    SparseVector,
    Steered,
    SteeredFeature,
    SteeringDirection,
    SteeringJudgement,
    SteerMode,
    TrainProgress,
    TrainSource,
)
from featurelens.v1 import common_pb2, encoder_pb2, family_pb2, labelling_pb2, sae_pb2, search_pb2
from featurelens.wire import arrays

SparseInput = SparseVector | tuple[npt.ArrayLike, npt.ArrayLike]
"""A sparse row as a ``SparseVector`` or an ``(indices, values)`` pair."""

_STEER_MODES = {"additive": common_pb2.STEER_MODE_ADDITIVE, "clamp": common_pb2.STEER_MODE_CLAMP}
_STEER_MODE_NAMES: dict[int, SteerMode] = {
    common_pb2.STEER_MODE_UNSPECIFIED: "additive",
    common_pb2.STEER_MODE_ADDITIVE: "additive",
    common_pb2.STEER_MODE_CLAMP: "clamp",
}
_SEARCH_MODES = {
    "dense": search_pb2.SEARCH_MODE_DENSE,
    "sparse": search_pb2.SEARCH_MODE_SPARSE,
    "hybrid": search_pb2.SEARCH_MODE_HYBRID,
}
_FUSIONS = {"rrf": search_pb2.FUSION_RRF, "dbsf": search_pb2.FUSION_DBSF}
_NEIGHBOUR_KINDS: dict[str, family_pb2.NeighbourKind.ValueType] = {
    "cooccurrence": family_pb2.NEIGHBOUR_KIND_COOCCURRENCE,
    "decoder": family_pb2.NEIGHBOUR_KIND_DECODER,
}


# -- shared ---------------------------------------------------------------------------------------


def text_list(texts: Sequence[str], what: str = "texts") -> list[str]:
    """The texts as a list, refusing a bare string (which would embed its characters one by one)."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings; wrap a single text in a list")
    result = list(texts)
    for i, text in enumerate(result):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is a {type(text).__name__}, not a str")
    return result


def sparse_vector(message: common_pb2.SparseVector) -> SparseVector:
    indices, values = arrays.from_sparse_vector(message)
    return SparseVector(indices=indices, values=values)


def sparse_message(row: SparseInput) -> common_pb2.SparseVector:
    if isinstance(row, SparseVector):
        return arrays.to_sparse_vector(row.indices, row.values)
    indices, values = row
    return arrays.to_sparse_vector(np.asarray(indices), np.asarray(values))


def progress(message: common_pb2.Progress) -> Progress:
    return Progress(
        stage=message.stage,
        done=message.done,
        total=message.total,
        rate_per_s=message.rate_per_s,
        eta_s=message.eta_s,
        message=message.message,
    )


def attach_update(response: search_pb2.AttachSaeResponse) -> AttachUpdate:
    plan = None
    if response.HasField("plan"):
        p = response.plan
        plan = AttachPlan(
            collection=p.collection,
            sae_id=p.sae_id,
            dense_vector=p.dense_vector,
            sparse_vector=p.sparse_vector,
            payload_key=p.payload_key,
            id_type=p.id_type,
            points=p.points,
            points_to_write=p.points_to_write,
            add_sparse_config=p.add_sparse_config,
        )
    return AttachUpdate(plan=plan, progress=progress(response.progress))


def intervention_message(intervention: Intervention) -> common_pb2.Intervention:
    message = common_pb2.Intervention(
        weight=intervention.weight,
        mode=_STEER_MODES[intervention.mode],
        per_member=intervention.per_member,
    )
    if intervention.feature is not None:
        message.feature = intervention.feature
    elif intervention.phrase is not None:
        message.phrase = intervention.phrase
    else:
        message.family_id = intervention.family_id or ""
    return message


def steer_mode(mode: int) -> SteerMode:
    """A wire steer mode by name; an unspecified one is additive, as the protos say."""
    name = _STEER_MODE_NAMES.get(mode)
    if name is None:
        raise ValueError(f"the server answered with steer mode {mode}, which this SDK does not know")
    return name


def document(message: common_pb2.Document) -> Document:
    return Document(
        id=message.id,
        title=message.title,
        text=message.text,
        categories=tuple(message.categories),
        date=message.date,
        payload=json_format.MessageToDict(message.payload) if message.HasField("payload") else {},
    )


def qdrant_filter_json(value: Mapping[str, Any] | str | None) -> str:
    """A Qdrant filter as the JSON the server takes: a dict is serialised, a string sent as it is."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"qdrant_filter must be a dict or a JSON string, got {type(value).__name__}")
    return json.dumps(value, separators=(",", ":"))


def document_message(doc: DocumentLike) -> common_pb2.Document:
    return common_pb2.Document(
        id=doc.id, title=doc.title, text=doc.text, categories=list(doc.categories), date=doc.date
    )


# -- encoder --------------------------------------------------------------------------------------


def embed_request(texts: Sequence[str], model: str | None) -> encoder_pb2.EmbedRequest:
    return encoder_pb2.EmbedRequest(texts=text_list(texts), model=model or "")


def embeddings(response: encoder_pb2.EmbedResponse | encoder_pb2.EmbedStreamResponse) -> Embeddings:
    return Embeddings(
        vectors=arrays.from_dense_matrix(response.embeddings),
        model_id=response.model_id,
        truncated=tuple(response.truncated),
        cached_count=response.cached_count,
    )


def embed_stream_requests(
    batches: Iterable[Sequence[str]], model: str | None
) -> Iterator[encoder_pb2.EmbedStreamRequest]:
    for batch_id, texts in enumerate(batches):
        yield encoder_pb2.EmbedStreamRequest(texts=text_list(texts), model=model or "", batch_id=batch_id)


async def embed_stream_requests_async(
    batches: AsyncIterable[Sequence[str]], model: str | None
) -> AsyncIterator[encoder_pb2.EmbedStreamRequest]:
    batch_id = 0
    async for texts in batches:
        yield encoder_pb2.EmbedStreamRequest(texts=text_list(texts), model=model or "", batch_id=batch_id)
        batch_id += 1


def stream_embeddings(response: encoder_pb2.EmbedStreamResponse, expected_batch_id: int) -> Embeddings:
    """The embeddings of one stream answer, checking the server kept the batches in order."""
    if response.batch_id != expected_batch_id:
        raise RuntimeError(
            f"the encoder answered batch {response.batch_id} where batch {expected_batch_id} was due"
        )
    return embeddings(response)


def model_infos(response: encoder_pb2.ListModelsResponse) -> list[ModelInfo]:
    return [
        ModelInfo(
            id=m.id,
            backend=m.backend,
            dim=m.dim,
            max_input_tokens=m.max_input_tokens,
            is_default=m.is_default,
        )
        for m in response.models
    ]


# -- sae ------------------------------------------------------------------------------------------


#: The optional (loss) fields of SaeConfig: None is left unset, so the server uses its default.
#: A Literal, so that mypy accepts the names in the stubs' ``HasField``.
_SaeLossField = Literal["k_aux", "auxk_coef", "dead_steps_threshold", "multik_coef", "multik_k"]
_SAE_LOSS_FIELDS: tuple[_SaeLossField, ...] = get_args(_SaeLossField)


def _given(**values: Any) -> dict[str, Any]:
    """The values that are not None, for optional proto fields: one left out is the server's default."""
    return {name: value for name, value in values.items() if value is not None}


def sae_config_message(config: SaeConfig) -> sae_pb2.SaeConfig:
    losses = _given(**{name: getattr(config, name) for name in _SAE_LOSS_FIELDS})
    return sae_pb2.SaeConfig(d_in=config.d_in, num_latents=config.num_latents, k=config.k, **losses)


def sae_info(message: sae_pb2.SaeInfo) -> SaeInfo:
    c, m = message.config, message.metrics
    return SaeInfo(
        sae_id=message.sae_id,
        config=SaeConfig(
            num_latents=c.num_latents,
            k=c.k,
            d_in=c.d_in,
            # A server reports every setting; one that does not leaves the field None (unknown).
            **{name: getattr(c, name) for name in _SAE_LOSS_FIELDS if c.HasField(name)},
        ),
        metrics=SaeMetrics(
            train_nmse=m.train_nmse,
            val_nmse=m.val_nmse,
            dead_fraction=m.dead_fraction,
            dense_fraction=m.dense_fraction,
            steps=m.steps,
            samples=m.samples,
            best_epoch=m.best_epoch if m.HasField("best_epoch") else None,
            stopped_early=m.stopped_early,
        ),
        embedding_model=message.embedding_model,
        created_unix=message.created_unix,
        is_default=message.is_default,
    )


def encode_request(vectors: npt.ArrayLike, sae_id: str | None) -> sae_pb2.EncodeRequest:
    return sae_pb2.EncodeRequest(sae_id=sae_id or "", vectors=arrays.to_dense_matrix(vectors))


def latents(response: sae_pb2.EncodeResponse) -> Latents:
    return Latents(sae_id=response.sae_id, rows=tuple(sparse_vector(row) for row in response.rows))


def decode_request(rows: Iterable[SparseInput], sae_id: str | None) -> sae_pb2.DecodeRequest:
    return sae_pb2.DecodeRequest(sae_id=sae_id or "", rows=[sparse_message(row) for row in rows])


def decoded(response: sae_pb2.DecodeResponse) -> Decoded:
    return Decoded(sae_id=response.sae_id, vectors=arrays.from_dense_matrix(response.vectors))


def steer_request(
    vector: npt.ArrayLike, interventions: Iterable[Intervention], sae_id: str | None
) -> sae_pb2.SteerRequest:
    return sae_pb2.SteerRequest(
        sae_id=sae_id or "",
        vector=arrays.to_dense_vector(vector),
        interventions=[intervention_message(i) for i in interventions],
    )


def steered(response: sae_pb2.SteerResponse) -> Steered:
    return Steered(
        sae_id=response.sae_id,
        vector=arrays.from_dense_vector(response.vector),
        cosine_to_original=response.cosine_to_original,
        latents_before=sparse_vector(response.latents_before),
        latents_after=sparse_vector(response.latents_after),
    )


def decoder_directions_request(
    features: Iterable[int], sae_id: str | None
) -> sae_pb2.DecoderDirectionsRequest:
    return sae_pb2.DecoderDirectionsRequest(sae_id=sae_id or "", features=[int(f) for f in features])


def decoder_directions(response: sae_pb2.DecoderDirectionsResponse) -> DecoderDirections:
    return DecoderDirections(sae_id=response.sae_id, directions=arrays.from_dense_matrix(response.directions))


def train_source(source: TrainSource) -> dict[str, Any]:
    """The TrainRequest fields of a training source."""
    if isinstance(source, QdrantTrainSource):
        return {
            "qdrant": sae_pb2.QdrantSource(
                collection=source.collection, vector_name=source.vector_name, max_rows=source.max_rows
            )
        }
    if isinstance(source, FileTrainSource):
        return {"file": sae_pb2.FileSource(path=source.path, column=source.column, max_rows=source.max_rows)}
    if isinstance(source, str):
        return {"embeddings_path": source}
    raise TypeError(
        f"the training source must be a path (str), a QdrantTrainSource or a FileTrainSource, "
        f"not {type(source).__name__}"
    )


def train_request(
    embeddings_path: TrainSource,
    config: SaeConfig,
    *,
    batch_size: int | None,
    learning_rate: float | None,
    epochs: int | None,
    max_steps: int | None,
    seed: int | None,
    val_fraction: float | None,
    patience: int | None,
    input_noise: float | None = None,
    make_default: bool,
) -> sae_pb2.TrainRequest:
    """A TrainRequest with only the settings that are not None (an unset one is the server's default)."""
    settings = _given(
        batch_size=batch_size,
        learning_rate=learning_rate,
        epochs=epochs,
        max_steps=max_steps,
        seed=seed,
        val_fraction=val_fraction,
        patience=patience,
        input_noise=input_noise,
    )
    return sae_pb2.TrainRequest(
        **train_source(embeddings_path),
        config=sae_config_message(config),
        make_default=make_default,
        **settings,
    )


def train_progress(response: sae_pb2.TrainResponse) -> TrainProgress:
    return TrainProgress(
        progress=progress(response.progress),
        epoch=response.epoch,
        loss=response.loss,
        nmse=response.nmse,
        auxk_loss=response.auxk_loss,
        val_nmse=response.val_nmse,
        dead_fraction=response.dead_fraction,
        result=sae_info(response.result) if response.HasField("result") else None,
    )


# -- search ---------------------------------------------------------------------------------------


def index_setup(
    corpus: str,
    *,
    corpus_path: str | None,
    embedding_model: str | None,
    sae_ids: Sequence[str],
    batch_size: int | None,
    limit: int | None,
    sparse_only: bool,
    embeddings_path: str | None = None,
) -> search_pb2.IndexDocumentsRequest:
    setup = search_pb2.IndexSetup(
        corpus=corpus,
        embedding_model=embedding_model or "",
        sae_ids=text_list(sae_ids, "sae_ids"),
        corpus_path=corpus_path or "",
        batch_size=batch_size or 0,
        limit=limit or 0,
        sparse_only=sparse_only,
        embeddings_path=embeddings_path or "",
    )
    return search_pb2.IndexDocumentsRequest(setup=setup)


def index_requests(
    setup: search_pb2.IndexDocumentsRequest, documents: Iterable[DocumentLike], per_message: int
) -> Iterator[search_pb2.IndexDocumentsRequest]:
    yield setup
    batch: list[common_pb2.Document] = []
    for doc in documents:
        batch.append(document_message(doc))
        if len(batch) >= per_message:
            yield search_pb2.IndexDocumentsRequest(documents=search_pb2.DocumentBatch(documents=batch))
            batch = []
    if batch:
        yield search_pb2.IndexDocumentsRequest(documents=search_pb2.DocumentBatch(documents=batch))


async def index_requests_async(
    setup: search_pb2.IndexDocumentsRequest, documents: AsyncIterable[DocumentLike], per_message: int
) -> AsyncIterator[search_pb2.IndexDocumentsRequest]:
    yield setup
    batch: list[common_pb2.Document] = []
    async for doc in documents:
        batch.append(document_message(doc))
        if len(batch) >= per_message:
            yield search_pb2.IndexDocumentsRequest(documents=search_pb2.DocumentBatch(documents=batch))
            batch = []
    if batch:
        yield search_pb2.IndexDocumentsRequest(documents=search_pb2.DocumentBatch(documents=batch))


def index_progress(response: search_pb2.IndexDocumentsResponse) -> IndexProgress:
    return IndexProgress(
        progress=progress(response.progress),
        indexed=response.indexed,
        failed=response.failed,
        failed_ids=tuple(response.failed_ids),
        failure_reason=response.failure_reason,
        duplicates=response.duplicates,
    )


def filter_message(f: Filter) -> search_pb2.Filter:
    return search_pb2.Filter(
        categories=list(f.categories),
        date_from=f.date_from,
        date_to=f.date_to,
        features_must_fire=list(f.features_must_fire),
        features_must_not_fire=list(f.features_must_not_fire),
    )


def search_request(
    corpus: str,
    *,
    text: str | None,
    vector: npt.ArrayLike | None,
    mode: SearchMode,
    sae_id: str | None,
    fusion: Fusion,
    dense_weight: float | None,
    sparse_weight: float | None,
    filter: Filter | None,
    top_k: int,
    offset: int,
    explain: bool,
    interventions: Iterable[Intervention],
    with_rank_changes: bool,
    with_text: bool,
    qdrant_filter: Mapping[str, Any] | str | None = None,
    payload_fields: Sequence[str] = (),
    dense_vector: str | None = None,
) -> search_pb2.SearchRequest:
    if (text is None) == (vector is None):
        raise ValueError("give the query as exactly one of text= or vector=")
    if mode not in _SEARCH_MODES:
        raise ValueError(f"mode must be one of {sorted(_SEARCH_MODES)}, got {mode!r}")
    if fusion not in _FUSIONS:
        raise ValueError(f"fusion must be one of {sorted(_FUSIONS)}, got {fusion!r}")
    request = search_pb2.SearchRequest(
        corpus=corpus,
        mode=_SEARCH_MODES[mode],
        sae_id=sae_id or "",
        fusion=_FUSIONS[fusion],
        dense_weight=dense_weight or 0.0,
        sparse_weight=sparse_weight or 0.0,
        top_k=top_k,
        offset=offset,
        explain=explain,
        interventions=[intervention_message(i) for i in interventions],
        with_rank_changes=with_rank_changes,
        with_text=with_text,
        qdrant_filter=qdrant_filter_json(qdrant_filter),
        payload_fields=text_list(payload_fields, "payload_fields"),
        dense_vector=dense_vector or "",
    )
    if text is not None:
        request.text = text
    else:
        request.vector.CopyFrom(arrays.to_dense_vector(vector if vector is not None else []))
    if filter is not None:
        request.filter.CopyFrom(filter_message(filter))
    return request


def hit(message: search_pb2.Hit) -> Hit:
    return Hit(
        document=document(message.document),
        score=message.score,
        rank=message.rank,
        rank_before=message.rank_before,
        explanation=tuple(
            FeatureContribution(
                feature=c.feature,
                query_activation=c.query_activation,
                document_activation=c.document_activation,
                contribution=c.contribution,
                label=c.label,
                family_ids=tuple(c.family_ids),
            )
            for c in message.explanation
        ),
    )


def steered_feature(message: search_pb2.SteeredFeature) -> SteeredFeature:
    return SteeredFeature(
        feature=message.feature,
        label=message.label,
        weight=message.weight,
        mode=steer_mode(message.mode),
        intervention=message.intervention,
        family_id=message.family_id or None,
        phrase=message.phrase or None,
        match_score=message.match_score if message.phrase else None,
    )


def search_result(response: search_pb2.SearchResponse) -> SearchResult:
    return SearchResult(
        hits=tuple(hit(h) for h in response.hits),
        sae_id=response.sae_id,
        took_ms=response.took_ms,
        steer_cosine=response.steer_cosine,
        dropped=tuple(hit(h) for h in response.dropped),
        steered=tuple(steered_feature(s) for s in response.steered),
    )


def sample_documents_request(
    corpus: str,
    feature: int,
    *,
    sae_id: str | None,
    n: int,
    firing: bool,
    seed: int,
    with_text: bool,
    with_embedding: bool,
    near: npt.ArrayLike | None,
) -> search_pb2.SampleDocumentsRequest:
    if near is not None and firing:
        raise ValueError("near= picks hard negatives, so it goes with firing=False")
    request = search_pb2.SampleDocumentsRequest(
        corpus=corpus,
        sae_id=sae_id or "",
        feature=feature,
        n=n,
        firing=firing,
        seed=seed,
        with_text=with_text,
        with_embedding=with_embedding,
    )
    if near is not None:
        request.near.CopyFrom(arrays.to_dense_vector(near))
    return request


def activated_documents(
    response: search_pb2.TopDocumentsResponse | search_pb2.SampleDocumentsResponse,
) -> list[ActivatedDocument]:
    return [
        ActivatedDocument(
            document=document(d.document),
            activation=d.activation,
            embedding=arrays.from_dense_vector(d.embedding) if d.HasField("embedding") else None,
        )
        for d in response.documents
    ]


def activation_batch(response: search_pb2.ExportActivationsResponse) -> ActivationBatch:
    if len(response.doc_ids) != len(response.latents):
        raise arrays.ArrayFormatError(
            f"activation batch has {len(response.doc_ids)} ids but {len(response.latents)} latent rows"
        )
    return ActivationBatch(
        doc_ids=tuple(response.doc_ids), latents=tuple(sparse_vector(row) for row in response.latents)
    )


def corpus_infos(response: search_pb2.ListCorporaResponse) -> list[CorpusInfo]:
    return [
        CorpusInfo(
            corpus=c.corpus,
            documents=c.documents,
            dim=c.dim,
            embedding_model=c.embedding_model,
            sae_ids=tuple(c.sae_ids),
        )
        for c in response.corpora
    ]


# -- labelling ------------------------------------------------------------------------------------


def feature_id(feature: int, what: str = "feature") -> int:
    """A latent id as an int, refusing anything that is not a whole number of 0 or more."""
    if isinstance(feature, bool) or not isinstance(feature, int | np.integer):
        raise TypeError(f"{what} is a {type(feature).__name__}, not an int latent id")
    if feature < 0:
        raise ValueError(f"{what} is {feature}; latent ids are 0 or more")
    return int(feature)


def feature_ids(features: Iterable[int], what: str = "features") -> list[int]:
    """Latent ids as a list of ints, refusing a bare number (wrap one id in a list)."""
    if isinstance(features, int | str | bytes):
        raise TypeError(f"{what} must be a list of latent ids; wrap a single id in a list")
    return [feature_id(feature, f"{what}[{i}]") for i, feature in enumerate(features)]


def feature_label(message: labelling_pb2.FeatureLabel) -> FeatureLabel:
    return FeatureLabel(
        sae_id=message.sae_id,
        feature=message.feature,
        label=message.label,
        pearson_r=message.pearson_r if message.HasField("pearson_r") else None,
        f1=message.f1,
        interpreter_model=message.interpreter_model,
        predictor_model=message.predictor_model,
        density=message.density,
        created_unix=message.created_unix,
        auroc=message.auroc,
        auroc_hard=message.auroc_hard,
        balanced_accuracy=message.balanced_accuracy,
        embedding_auroc=message.embedding_auroc,
        embedding_auroc_hard=message.embedding_auroc_hard,
        prompt_version=message.prompt_version,
        cost_usd=message.cost_usd,
        tokens=message.tokens,
        parse_failures=message.parse_failures,
        scored_documents=message.scored_documents,
        example_ids=tuple(message.example_ids),
        score_note=message.score_note,
    )


def label_features_request(
    sae_id: str | None,
    corpus: str,
    *,
    features: Iterable[int],
    interpreter_model: str | None,
    predictor_model: str | None,
    top_documents: int | None,
    scoring_documents: int | None,
    overwrite: bool,
    seed: int,
    domain: str | None,
    llm_base_url: str | None,
    budget_usd: float | None,
) -> labelling_pb2.LabelFeaturesRequest:
    return labelling_pb2.LabelFeaturesRequest(
        corpus=corpus,
        sae_id=sae_id or "",
        features=feature_ids(features),
        interpreter_model=interpreter_model or "",
        predictor_model=predictor_model or "",
        top_documents=top_documents or 0,
        scoring_documents=scoring_documents or 0,
        overwrite=overwrite,
        seed=seed,
        domain=domain or "",
        llm_base_url=llm_base_url or "",
        budget_usd=budget_usd or 0.0,
    )


def label_progress(response: labelling_pb2.LabelFeaturesResponse) -> LabelProgress:
    return LabelProgress(
        progress=progress(response.progress),
        label=feature_label(response.label) if response.HasField("label") else None,
        tokens_used=response.tokens_used,
        cache_hits=response.cache_hits,
        llm_calls=response.llm_calls,
        cost_usd=response.cost_usd,
        skipped=response.skipped,
        failed=response.failed,
        failed_feature=response.failed_feature if response.failure_reason else None,
        failure_reason=response.failure_reason,
        budget_exhausted=response.budget_exhausted,
    )


def list_labels_request(
    sae_id: str | None, *, min_pearson_r: float | None, page_size: int, page_token: str | None
) -> labelling_pb2.ListLabelsRequest:
    request = labelling_pb2.ListLabelsRequest(
        sae_id=sae_id or "", page_size=page_size, page_token=page_token or ""
    )
    # Set only when given, so that the field's presence says "filter" should it become optional.
    if min_pearson_r is not None:
        request.min_pearson_r = min_pearson_r
    return request


def feature_labels(
    response: labelling_pb2.GetLabelsResponse | labelling_pb2.ListLabelsResponse,
) -> list[FeatureLabel]:
    return [feature_label(label) for label in response.labels]


def feature_matches(response: labelling_pb2.SearchFeaturesResponse) -> list[FeatureMatch]:
    return [
        FeatureMatch(label=feature_label(m.label), score=m.score, substring_match=m.substring_match)
        for m in response.matches
    ]


def score_label_request(
    sae_id: str | None,
    corpus: str,
    feature: int,
    label: str,
    *,
    predictor_model: str | None,
    scoring_documents: int | None,
    seed: int,
    domain: str | None,
    llm_base_url: str | None,
) -> labelling_pb2.ScoreLabelRequest:
    if not isinstance(label, str):
        raise TypeError(f"label must be a str, not {type(label).__name__}")
    return labelling_pb2.ScoreLabelRequest(
        corpus=corpus,
        sae_id=sae_id or "",
        feature=feature_id(feature),
        label=label,
        predictor_model=predictor_model or "",
        scoring_documents=scoring_documents or 0,
        seed=seed,
        domain=domain or "",
        llm_base_url=llm_base_url or "",
    )


_DIRECTIONS = {"up": labelling_pb2.STEERING_DIRECTION_UP, "down": labelling_pb2.STEERING_DIRECTION_DOWN}


def steering_direction(direction: SteeringDirection) -> labelling_pb2.SteeringDirection.ValueType:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
    return _DIRECTIONS[direction]


def llm_call(
    model: str | None, llm_base_url: str | None, budget_usd: float | None, domain: str | None
) -> labelling_pb2.LlmCall:
    return labelling_pb2.LlmCall(
        model=model or "", llm_base_url=llm_base_url or "", budget_usd=budget_usd or 0.0, domain=domain or ""
    )


def llm_spend(message: labelling_pb2.LlmSpend) -> LlmSpend:
    return LlmSpend(message.model, message.cached, message.cost_usd, message.tokens)


def judge_steering_request(
    query: str,
    candidates: Sequence[str],
    results_before: Sequence[str],
    results_after: Sequence[str],
    direction: SteeringDirection,
    llm: labelling_pb2.LlmCall,
) -> labelling_pb2.JudgeSteeringRequest:
    return labelling_pb2.JudgeSteeringRequest(
        query=query,
        candidates=text_list(candidates, "candidates"),
        results_before=text_list(results_before, "results_before"),
        results_after=text_list(results_after, "results_after"),
        direction=steering_direction(direction),
        llm=llm,
    )


def steering_judgement(response: labelling_pb2.JudgeSteeringResponse) -> SteeringJudgement:
    choice = response.choice if response.HasField("choice") else None
    return SteeringJudgement(choice, response.note, llm_spend(response.spend))


def rewrite_query_request(
    query: str, topic: str, direction: SteeringDirection, llm: labelling_pb2.LlmCall
) -> labelling_pb2.RewriteQueryRequest:
    return labelling_pb2.RewriteQueryRequest(
        query=query, topic=topic, direction=steering_direction(direction), llm=llm
    )


def query_rewrite(response: labelling_pb2.RewriteQueryResponse) -> QueryRewrite:
    return QueryRewrite(response.query, response.note, llm_spend(response.spend))


# -- families -------------------------------------------------------------------------------------


def build_families_request(
    corpus: str,
    *,
    sae_id: str | None,
    threshold: float | None,
    min_children: int | None,
    interpreter_model: str | None,
    budget_usd: float | None,
    domain: str | None,
) -> family_pb2.BuildFamiliesRequest:
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold is a normalised co-occurrence in (0, 1], not {threshold!r}")
    if min_children is not None and (isinstance(min_children, bool) or min_children < 1):
        raise ValueError(f"min_children must be a whole number of 1 or more, not {min_children!r}")
    return family_pb2.BuildFamiliesRequest(
        corpus=corpus,
        sae_id=sae_id or "",
        threshold=threshold or 0.0,
        min_family_size=min_children or 0,
        interpreter_model=interpreter_model or "",
        budget_usd=budget_usd or 0.0,
        domain=domain or "",
    )


def family_statistics(message: family_pb2.FamilyStatistics) -> FamilyStatistics:
    return FamilyStatistics(
        families=message.families,
        mean_children=message.mean_children,
        median_children=message.median_children,
        parent_child=message.parent_child,
        child_child=message.child_child,
        block_score=message.block_score,
        block_control=message.block_control,
        features_in_families=message.features_in_families,
    )


def family_build_progress(response: family_pb2.BuildFamiliesResponse) -> FamilyBuildProgress:
    """A progress message; the final one (the one with statistics) carries the result."""
    result = None
    if response.HasField("statistics"):
        result = FamilyBuildResult(
            families_built=response.families_built,
            statistics=family_statistics(response.statistics),
            llm_calls=response.llm_calls,
            cost_usd=response.cost_usd,
        )
    return FamilyBuildProgress(progress=progress(response.progress), result=result)


def family_member(message: family_pb2.FamilyMember) -> FamilyMember:
    return FamilyMember(
        feature=message.feature,
        parent=message.parent if message.HasField("parent") else None,
        density=message.density,
        label=message.label,
        label_score=message.label_score,
    )


def family(message: family_pb2.Family, members: Iterable[family_pb2.FamilyMember] = ()) -> Family:
    if len(message.edge_parents) != len(message.edge_children):
        raise ValueError(
            f"family {message.family_id} has {len(message.edge_parents)} edge parents but "
            f"{len(message.edge_children)} edge children"
        )
    return Family(
        family_id=message.family_id,
        sae_id=message.sae_id,
        parent_feature=message.parent_feature,
        features=tuple(message.features),
        edges=tuple(zip(message.edge_parents, message.edge_children, strict=True)),
        label=message.label,
        depth=message.depth,
        root_density=message.root_density,
        nested_in=message.nested_in or None,
        corpus=message.corpus,
        direction_norm=message.direction_norm,
        members=tuple(family_member(m) for m in members),
    )


def families(response: family_pb2.ListFamiliesResponse) -> list[Family]:
    return [family(f) for f in response.families]


def family_id(value: str) -> str:
    """A family id, refusing an empty one (which the server would read as "none")."""
    if not isinstance(value, str):
        raise TypeError(f"family_id is a {type(value).__name__}, not a str like 'f2370-p0'")
    if not value.strip():
        raise ValueError("family_id is empty; family ids look like 'f2370-p0'")
    return value.strip()


def feature_neighbours_request(
    feature: int, *, sae_id: str | None, kind: NeighbourKind, top_k: int
) -> family_pb2.FeatureNeighboursRequest:
    if kind not in _NEIGHBOUR_KINDS:
        raise ValueError(f"kind must be one of {sorted(_NEIGHBOUR_KINDS)}, got {kind!r}")
    return family_pb2.FeatureNeighboursRequest(
        sae_id=sae_id or "", feature=feature_id(feature), kind=_NEIGHBOUR_KINDS[kind], top_k=top_k
    )


def feature_neighbour(message: family_pb2.FeatureNeighbour) -> FeatureNeighbour:
    return FeatureNeighbour(feature=message.feature, score=message.score, label=message.label)


def feature_neighbours(response: family_pb2.FeatureNeighboursResponse) -> list[FeatureNeighbour]:
    return [feature_neighbour(n) for n in response.neighbours]


def match_features_request(
    source_sae_id: str, target_sae_id: str, *, features: Iterable[int] | None, top_k: int
) -> family_pb2.MatchFeaturesRequest:
    return family_pb2.MatchFeaturesRequest(
        source_sae_id=source_sae_id,
        target_sae_id=target_sae_id,
        features=feature_ids(features) if features is not None else [],
        top_k=top_k,
    )


def cross_sae_matches(response: family_pb2.MatchFeaturesResponse) -> list[CrossSaeMatch]:
    return [
        CrossSaeMatch(source_feature=m.source_feature, targets=tuple(feature_neighbour(t) for t in m.targets))
        for m in response.matches
    ]


def feature_families(response: family_pb2.FeatureFamiliesResponse) -> list[FeatureFamilies]:
    return [
        FeatureFamilies(
            feature=f.feature, family_ids=tuple(f.family_ids), family_labels=tuple(f.family_labels)
        )
        for f in response.features
    ]
