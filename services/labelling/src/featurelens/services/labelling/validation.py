"""Checks of every labelling request: a clear INVALID_ARGUMENT (or FAILED_PRECONDITION for an
endpoint the server does not allow) before any work starts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from featurelens.interp.examples import ExampleConfig
from featurelens.interp.steering_llm import MAX_CANDIDATES, MAX_RESULTS, MIN_CANDIDATES, SteeringDirection
from featurelens.kit import FailedPreconditionError, InvalidArgumentError, names
from featurelens.kit.echo import shown
from featurelens.kit.fields import feature_ids
from featurelens.store import schema as store_schema
from featurelens.v1 import labelling_pb2

DEFAULT_TOP_DOCUMENTS = 10
MAX_TOP_DOCUMENTS = 50
DEFAULT_SCORING_DOCUMENTS = 40
MAX_SCORING_DOCUMENTS = 200
#: Most features one job, one GetLabels call or one SearchFeatures answer may name.
MAX_JOB_FEATURES = 1_000_000
MAX_GET_FEATURES = 1000
MAX_TOP_K = 1000
DEFAULT_TOP_K = 10
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_QUERY_CHARS = 1000
MAX_LABEL_CHARS = 200
MAX_URL_CHARS = 2048
#: Most families one LabelFamilies call may name, most features one family may name, most
#: members all its families may name together, and the longest family id.
MAX_FAMILIES = 10_000
MAX_FAMILY_FEATURES = 10_000
MAX_FAMILY_MEMBERS = 1_000_000
MAX_FAMILY_ID_CHARS = 256
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def sae_id(value: str) -> str:
    """An SAE id as sent ("" = the default SAE); the kit's rule, with the label store's naming."""
    return names.sae_id(value, store_schema.labels_collection)


@dataclass(frozen=True)
class FamilyRequest:
    """One family of a LabelFamilies call, checked: its id, parent and children (each once)."""

    family_id: str
    parent: int
    children: tuple[int, ...]

    @property
    def members(self) -> tuple[int, ...]:
        return (self.parent, *self.children)


def families(values: Sequence[labelling_pb2.FamilyToLabel]) -> list[FamilyRequest]:
    """The families of a LabelFamilies call: at least one, each id once, within the limits.

    A family that also lists its parent among its features is taken as meant (the parent is one
    member, not two): the family service may send the whole member list, and nothing is lost.
    """
    if not values:
        raise InvalidArgumentError(
            "families is empty; name at least one family (family_id, parent_feature, features) to label"
        )
    if len(values) > MAX_FAMILIES:
        raise InvalidArgumentError(
            f"families names {len(values):,} families; the limit is {MAX_FAMILIES:,} per call"
        )
    checked: list[FamilyRequest] = []
    first_index: dict[str, int] = {}
    members = 0
    for index, value in enumerate(values):
        family_id = value.family_id
        if not family_id.strip():
            raise InvalidArgumentError(f"families[{index}] has an empty family_id; give every family an id")
        if len(family_id) > MAX_FAMILY_ID_CHARS or not family_id.isprintable():
            raise InvalidArgumentError(
                f"family_id {shown(family_id)} of families[{index}] is not an id: "
                f"use 1 to {MAX_FAMILY_ID_CHARS} printable characters"
            )
        if family_id in first_index:
            raise InvalidArgumentError(
                f"family_id {shown(family_id)} is named twice (families[{first_index[family_id]}] and "
                f"families[{index}]); name each family once"
            )
        first_index[family_id] = index
        if len(value.features) > MAX_FAMILY_FEATURES:
            raise InvalidArgumentError(
                f"family {shown(family_id)} names {len(value.features):,} features; "
                f"the limit is {MAX_FAMILY_FEATURES:,} per family"
            )
        children = feature_ids(value.features, MAX_FAMILY_FEATURES, f"family {shown(family_id)}")
        members += len(children) + 1
        if members > MAX_FAMILY_MEMBERS:
            raise InvalidArgumentError(
                f"the families name more than {MAX_FAMILY_MEMBERS:,} members in all; "
                "split them over several calls"
            )
        kept = tuple(child for child in children if child != value.parent_feature)
        checked.append(FamilyRequest(family_id, value.parent_feature, kept))
    return checked


def check_family_latents(families: Sequence[FamilyRequest], num_latents: int, sae: str) -> None:
    """Every member of every family below the SAE's number of latents (the sentence names the family)."""
    for family in families:
        bad = [f for f in family.members if f >= num_latents]
        if bad:
            raise InvalidArgumentError(
                f"family {shown(family.family_id)}: latent {bad[0]} is out of range: SAE {shown(sae)} has "
                f"{num_latents} latents (0 to {num_latents - 1})"
            )


def example_config(top_documents: int, scoring_documents: int) -> ExampleConfig:
    """The example counts of a request (0 means the default)."""
    top = top_documents or DEFAULT_TOP_DOCUMENTS
    scoring = scoring_documents or DEFAULT_SCORING_DOCUMENTS
    if top > MAX_TOP_DOCUMENTS:
        raise InvalidArgumentError(f"top_documents is {top}; the limit is {MAX_TOP_DOCUMENTS}")
    if scoring > MAX_SCORING_DOCUMENTS:
        raise InvalidArgumentError(f"scoring_documents is {scoring}; the limit is {MAX_SCORING_DOCUMENTS}")
    try:
        return ExampleConfig(top_documents=top, scoring_documents=scoring)
    except ValueError as error:
        raise InvalidArgumentError(str(error)) from None


def budget(value: float, default: float, maximum: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(
            f"budget_usd is {value}; use 0 (the server's default) or a positive amount"
        )
    if value > maximum:
        raise InvalidArgumentError(f"budget_usd is {value:g}; this server allows at most {maximum:g} per job")
    return value or default


def label_text(value: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidArgumentError("label is empty; write the label to score")
    if len(text) > MAX_LABEL_CHARS or not text.isprintable():
        raise InvalidArgumentError(
            f"label {shown(value)} is not a short label: use 1 to {MAX_LABEL_CHARS} characters"
        )
    return text


def query_text(value: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidArgumentError("query is empty; describe a concept, e.g. 'dark matter halos'")
    if len(value) > MAX_QUERY_CHARS:
        raise InvalidArgumentError(f"query has {len(value):,} characters; the limit is {MAX_QUERY_CHARS:,}")
    return text


def count(value: int, field: str, default: int, maximum: int) -> int:
    if value == 0:
        return default
    if value > maximum:
        raise InvalidArgumentError(f"{field} is {value}; the limit is {maximum}")
    return value


def min_pearson_r(value: float | None) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise InvalidArgumentError(f"min_pearson_r is {value}; use -1 to 1, or leave it unset")
    return value


@dataclass(frozen=True)
class EndpointRules:
    """Which LLM endpoints a job may name."""

    default: str
    allowed: tuple[str, ...]
    allow_loopback: bool

    def choose(self, requested: str) -> str:
        """The endpoint of a job ("" = the offline labeller): the default, or an allowed one."""
        if not requested:
            return self.default
        if len(requested) > MAX_URL_CHARS:
            raise InvalidArgumentError(
                f"llm_base_url has {len(requested):,} characters; the limit is {MAX_URL_CHARS:,}"
            )
        parts = urlsplit(requested)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgumentError(
                f"llm_base_url {shown(requested)} is not an http(s) URL, e.g. http://127.0.0.1:8000/v1"
            )
        normal = requested.rstrip("/")
        if normal in {url.rstrip("/") for url in (self.default, *self.allowed) if url}:
            return normal
        if self.allow_loopback and parts.hostname in LOOPBACK_HOSTS:
            return normal
        raise FailedPreconditionError(
            f"llm_base_url {shown(requested)} is not allowed by this server; its operator can add it to "
            "FEATURELENS_LABELLING_LLM_ALLOWED_BASE_URLS"
        )


#: Longest result text a JudgeSteering call may send (the judge is shown the start of each).
MAX_RESULT_TEXT_CHARS = 10_000
_DIRECTIONS: dict[int, SteeringDirection] = {
    labelling_pb2.STEERING_DIRECTION_UP: "up",
    labelling_pb2.STEERING_DIRECTION_DOWN: "down",
}


def direction(value: int) -> SteeringDirection:
    """ "up" or "down"; an unset direction is refused (the judge's question depends on it)."""
    if value not in _DIRECTIONS:
        raise InvalidArgumentError(
            "direction is unset; say STEERING_DIRECTION_UP (towards the topic) or STEERING_DIRECTION_DOWN"
        )
    return _DIRECTIONS[value]


def topic(value: str, field: str) -> str:
    """A topic or candidate label: 1 to MAX_LABEL_CHARS printable characters."""
    text = value.strip()
    if not text or len(text) > MAX_LABEL_CHARS or not text.isprintable():
        raise InvalidArgumentError(
            f"{field} {shown(value)} is not a short topic: use 1 to {MAX_LABEL_CHARS} printable characters"
        )
    return text


def candidates(values: Sequence[str]) -> list[str]:
    """The judge's candidate topics: MIN_CANDIDATES to MAX_CANDIDATES, each a topic, none twice."""
    if not MIN_CANDIDATES <= len(values) <= MAX_CANDIDATES:
        raise InvalidArgumentError(
            f"candidates has {len(values)} topics; give {MIN_CANDIDATES} to {MAX_CANDIDATES}"
        )
    checked = [topic(value, f"candidates[{index}]") for index, value in enumerate(values)]
    if len({text.lower() for text in checked}) < len(checked):
        raise InvalidArgumentError("candidates repeat a topic: the judge could not tell them apart")
    return checked


def result_texts(values: Sequence[str], field: str) -> list[str]:
    """One side's result texts: 1 to MAX_RESULTS, each non-empty and at most MAX_RESULT_TEXT_CHARS."""
    if not 1 <= len(values) <= MAX_RESULTS:
        raise InvalidArgumentError(f"{field} has {len(values)} texts; give 1 to {MAX_RESULTS}")
    for index, value in enumerate(values):
        if not value.strip():
            raise InvalidArgumentError(f"{field}[{index}] is empty; send each result's title or text")
        if len(value) > MAX_RESULT_TEXT_CHARS:
            raise InvalidArgumentError(
                f"{field}[{index}] has {len(value):,} characters; the limit is {MAX_RESULT_TEXT_CHARS:,}"
            )
    return list(values)
