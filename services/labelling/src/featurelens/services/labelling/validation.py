"""Checks of every labelling request: a clear INVALID_ARGUMENT (or FAILED_PRECONDITION for an
endpoint the server does not allow) before any work starts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from featurelens.interp.examples import ExampleConfig
from featurelens.interp.labelling import MAX_DOMAIN_CHARS
from featurelens.kit import FailedPreconditionError, InvalidArgumentError
from featurelens.kit.echo import shown
from featurelens.store import InvalidQueryError
from featurelens.store import schema as store_schema

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
MAX_MODEL_CHARS = 200
MAX_SAE_ID_CHARS = 256
MAX_URL_CHARS = 2048
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def sae_id(value: str) -> str:
    """An SAE id as sent ("" = the sae service's default SAE, resolved by the servicer); one the
    label store could not name a collection after is refused here."""
    if not value:
        return value
    if len(value) > MAX_SAE_ID_CHARS or not value.isprintable():
        raise InvalidArgumentError(f"sae_id {shown(value)} is not an SAE id")
    try:
        store_schema.labels_collection(value)
    except InvalidQueryError:
        raise InvalidArgumentError(f"sae_id {shown(value)} is not an SAE id (too long)") from None
    return value


def feature_ids(values: Sequence[int], limit: int, field: str = "features") -> list[int]:
    """Latent ids without repeats (a repeat is refused, naming it)."""
    if len(values) > limit:
        raise InvalidArgumentError(f"{field} names {len(values):,} latents; the limit is {limit:,} per call")
    seen: set[int] = set()
    for value in values:
        if value in seen:
            raise InvalidArgumentError(f"{field} names latent {value} twice")
        seen.add(value)
    return list(values)


def check_latents(features: Sequence[int], num_latents: int, sae: str) -> None:
    """Every id below the SAE's number of latents."""
    bad = [f for f in features if f >= num_latents]
    if bad:
        raise InvalidArgumentError(
            f"latent {bad[0]} is out of range: SAE {shown(sae)} has {num_latents} latents "
            f"(0 to {num_latents - 1})"
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


def domain(value: str, default: str) -> str:
    if not value:
        return default
    if len(value) > MAX_DOMAIN_CHARS or not value.isprintable() or not value.strip():
        raise InvalidArgumentError(
            f"domain {shown(value)} is not a short description: "
            f"use 1 to {MAX_DOMAIN_CHARS} printable characters"
        )
    return value.strip()


def model_name(value: str, field: str) -> str:
    if len(value) > MAX_MODEL_CHARS or not value.isprintable():
        raise InvalidArgumentError(f"{field} {shown(value)} is not a model name")
    return value


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
