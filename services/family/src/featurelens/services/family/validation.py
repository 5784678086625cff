"""Checks of every family request: a clear INVALID_ARGUMENT before any work starts."""

from __future__ import annotations

import math

from featurelens.kit import InvalidArgumentError, names
from featurelens.kit.echo import shown
from featurelens.store import schema as store_schema
from featurelens.v1 import family_pb2

DEFAULT_THRESHOLD = 0.1
#: Below this nearly every co-occurring pair is an edge: the graph grows to all of C (gigabytes at
#: 10k latents) and the trees mean little.
MIN_THRESHOLD = 0.01
DEFAULT_MIN_FAMILY_SIZE = 4
MAX_MIN_FAMILY_SIZE = 10_000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_NEIGHBOURS = 10
MAX_NEIGHBOURS = 1000
DEFAULT_MATCHES = 1
MAX_MATCHES = 100
#: Most features one FeatureFamilies call may name (the proto's limit).
MAX_FEATURE_FAMILIES = 1000
MAX_FAMILY_ID_CHARS = 64


def sae_id(value: str) -> str:
    """An SAE id as sent ("" = the default SAE); the kit's rule, with the family store's naming."""
    return names.sae_id(value, store_schema.families_collection)


def family_id(value: str) -> str:
    if not value:
        raise InvalidArgumentError("family_id is empty; name a family (ListFamilies lists them)")
    if len(value) > MAX_FAMILY_ID_CHARS or not value.isprintable():
        raise InvalidArgumentError(
            f"family_id {shown(value)} is not a family id; family ids look like 'f12-p0'"
        )
    return value


def threshold(value: float) -> float:
    """The co-occurrence threshold of a build: (0, 1], 0 meaning the default."""
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgumentError(
            f"threshold is {value}; use a fraction in (0, 1], or 0 for the default 0.1"
        )
    if 0.0 < value < MIN_THRESHOLD:
        raise InvalidArgumentError(
            f"threshold is {value:g}; use at least {MIN_THRESHOLD} (below it almost every pair of features "
            "that ever fire together becomes an edge), or 0 for the default 0.1"
        )
    return value or DEFAULT_THRESHOLD


def count(value: int, field: str, default: int, maximum: int) -> int:
    """A count where 0 means the default."""
    if value == 0:
        return default
    if value > maximum:
        raise InvalidArgumentError(f"{field} is {value:,}; the limit is {maximum:,}")
    return value


def budget(value: float) -> float:
    """Dollars the family labels may spend (0 = the labelling server's default; it checks its maximum)."""
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"budget_usd is {value}; use 0 (the labelling server's default) or more")
    return value


def neighbour_kind(value: int) -> int:
    if value in (family_pb2.NEIGHBOUR_KIND_COOCCURRENCE, family_pb2.NEIGHBOUR_KIND_DECODER):
        return value
    raise InvalidArgumentError(
        f"kind is {_kind_name(value)}; ask for NEIGHBOUR_KIND_COOCCURRENCE or NEIGHBOUR_KIND_DECODER"
    )


def _kind_name(value: int) -> str:
    try:
        return family_pb2.NeighbourKind.Name(family_pb2.NeighbourKind.ValueType(value))
    except ValueError:
        return f"{value} (no such kind)"
