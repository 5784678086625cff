"""Checks of the inputs only the gateway has: a clear 400 (or 404) before any service is called.

Limits a service checks itself (top_k, weights, text lengths, page tokens of its listings, ...)
are not repeated here: the service's INVALID_ARGUMENT comes back as a 400 with its sentence.
"""

from __future__ import annotations

import re

from featurelens import client as sdk
from featurelens.services.gateway import convert, models

#: A caller's X-Request-Id is kept when it is 1 to 128 printable ASCII characters without spaces
#: (what gRPC metadata carries and the services accept); anything else is replaced by a fresh id.
_ACCEPTED_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")

MAX_BINS = 100
DEFAULT_BINS = 20
MAX_SAMPLE = 1000
DEFAULT_SAMPLE = 200
#: Page tokens of a listing the gateway sorts itself ("o" and an offset), unlike the services'.
_OFFSET_TOKEN = re.compile(r"o([0-9]{1,9})")


class GatewayInputError(Exception):
    """A request the gateway refuses before calling any service (400 INVALID_ARGUMENT); the
    message is a sentence saying what was wrong."""


class ResourceNotFoundError(Exception):
    """A path names something that does not exist, found out by the gateway (404 NOT_FOUND)."""


def accepted_request_id(value: str | None) -> str | None:
    """``value`` when it is usable as a request id, else None."""
    if value is not None and _ACCEPTED_REQUEST_ID.fullmatch(value):
        return value
    return None


def interventions(items: list[models.Intervention]) -> list[sdk.Intervention]:
    """The SDK's interventions; each names exactly one target (the SDK's own rule)."""
    found = []
    for index, item in enumerate(items):
        try:
            found.append(convert.intervention(item))
        except ValueError as error:
            raise GatewayInputError(f"interventions[{index}]: {error}") from None
    return found


def feature_of(sae: sdk.SaeInfo, feature: int) -> int:
    """``feature`` when the SAE has it; 404 otherwise (the path names a feature that does not exist)."""
    if not 0 <= feature < sae.config.num_latents:
        raise ResourceNotFoundError(
            f"SAE {sae.sae_id!r} has no feature {feature}; its features are 0 to {sae.config.num_latents - 1}"
        )
    return feature


def family_id(value: str) -> str:
    """A family id of a path; 400 for a blank one, which the SDK refuses before any call."""
    if not value.strip():
        raise GatewayInputError("family_id is empty; family ids look like 'f12-p0'")
    return value


def offset_token(value: str) -> int:
    """The offset in a page token of a listing the gateway sorts itself ("" for the first page)."""
    if not value:
        return 0
    match = _OFFSET_TOKEN.fullmatch(value)
    if match is None:
        raise GatewayInputError(
            "page_token is not a token of this listing; pass the next_page_token of the previous page "
            "with the same order"
        )
    return int(match[1])


def offset_page_token(offset: int) -> str:
    return f"o{offset}"
