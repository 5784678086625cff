"""Protobuf messages of the search API from store results and back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from featurelens.corpus import Record
from featurelens.kit import InvalidArgumentError
from featurelens.kit.interventions import steer_mode_to_proto
from featurelens.services.search.corpora import Corpus
from featurelens.services.search.explain import Contribution
from featurelens.steering import PhraseMatch, SteerPlan
from featurelens.store import ScoredPoint, SparseVec
from featurelens.store import schema as fields
from featurelens.v1 import common_pb2, search_pb2
from featurelens.wire.arrays import ArrayFormatError, from_sparse_vector, to_sparse_vector

#: Payload fields a hit carries; the text only when asked for.
HIT_FIELDS: tuple[str, ...] = (fields.TITLE, fields.CATEGORIES, fields.DATE)


def hit_fields(with_text: bool) -> list[str]:
    """The payload fields to fetch for hits."""
    return [*HIT_FIELDS, fields.TEXT] if with_text else list(HIT_FIELDS)


def sparse_vec(message: common_pb2.SparseVector) -> SparseVec:
    """A SparseVector message as a SparseVec (checked: equal lengths, unique, finite)."""
    try:
        indices, values = from_sparse_vector(message)
    except ArrayFormatError as error:
        raise InvalidArgumentError(str(error)) from None
    return SparseVec(indices, values)


def sparse_vector(vector: SparseVec) -> common_pb2.SparseVector:
    """A SparseVec as a SparseVector message."""
    return to_sparse_vector(vector.indices, vector.values)


def record_payload(record: Record) -> dict[str, Any]:
    """The payload stored for a document (the store adds doc_id and the firing features)."""
    return {
        fields.TITLE: record.title,
        fields.TEXT: record.text,
        fields.CATEGORIES: list(record.categories),
        fields.DATE: record.date,
    }


def record(document: common_pb2.Document) -> Record:
    """A streamed Document as a corpus Record (not yet validated)."""
    return Record(
        id=document.id,
        title=document.title,
        text=document.text,
        categories=tuple(document.categories),
        date=document.date,
    )


def document(doc_id: str, payload: Mapping[str, Any]) -> common_pb2.Document:
    """A Document message from a stored payload (text only if the payload holds it)."""
    return common_pb2.Document(
        id=doc_id,
        title=str(payload.get(fields.TITLE, "")),
        text=str(payload.get(fields.TEXT, "")),
        categories=[str(c) for c in payload.get(fields.CATEGORIES, ()) or ()],
        date=str(payload.get(fields.DATE, "") or ""),
    )


def contributions(
    items: Iterable[Contribution], labels: Mapping[int, str], families: Mapping[int, Sequence[str]]
) -> list[search_pb2.FeatureContribution]:
    """A hit's explanation: each shared feature with its label and its families, when known."""
    return [
        search_pb2.FeatureContribution(
            feature=item.feature,
            query_activation=item.query_activation,
            document_activation=item.document_activation,
            contribution=item.contribution,
            label=labels.get(item.feature, ""),
            family_ids=families.get(item.feature, ()),
        )
        for item in items
    ]


def steered(
    plan: SteerPlan, labels: Mapping[int, str], matches: Mapping[str, PhraseMatch]
) -> list[search_pb2.SteeredFeature]:
    """Each feature of the plan, where it came from, and its label: the lookup's, else (for a
    phrase's match) the label the phrase matched."""
    out = []
    for item in plan.interventions:
        label = labels.get(item.feature, "")
        if not label and item.phrase is not None:
            label = matches[item.phrase].label
        out.append(
            search_pb2.SteeredFeature(
                feature=item.feature,
                label=label,
                weight=item.weight,
                mode=steer_mode_to_proto(item.mode),
                intervention=item.position or 0,
                family_id=item.family_id or "",
                phrase=item.phrase or "",
                match_score=item.match_score or 0.0,
            )
        )
    return out


def foreign_document(point_id: str, payload: Mapping[str, Any]) -> common_pb2.Document:
    """A hit's Document on an attached collection: the point id, and its payload keys as fetched."""
    message = common_pb2.Document(id=point_id)
    if payload:
        message.payload.update(dict(payload))
    return message


def hit(
    point: ScoredPoint,
    rank: int,
    rank_before: int = 0,
    explanation: Sequence[search_pb2.FeatureContribution] = (),
    *,
    foreign: bool = False,
) -> search_pb2.Hit:
    """A hit; ``foreign``: of an attached collection (see ``foreign_document``)."""
    return search_pb2.Hit(
        document=foreign_document(point.doc_id, point.payload)
        if foreign
        else document(point.doc_id, point.payload),
        score=point.score,
        rank=rank,
        rank_before=rank_before,
        explanation=explanation,
    )


def corpus_info(corpus: Corpus) -> search_pb2.CorpusInfo:
    return search_pb2.CorpusInfo(
        corpus=corpus.name,
        documents=corpus.documents,
        dim=corpus.dim,
        embedding_model=corpus.embedding_model,
        sae_ids=list(corpus.sae_ids),
    )
