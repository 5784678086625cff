"""Page tokens: opaque, tied to their listing, and refused when forged or foreign."""

from __future__ import annotations

import base64
import json

import pytest

from featurelens.kit import InvalidArgumentError
from featurelens.kit.pages import page_offset, page_token, query_fingerprint


def test_a_token_brings_back_its_offset_for_the_same_listing() -> None:
    fingerprint = query_fingerprint("ListLabels", "sae-1", 0.5)

    assert page_offset(page_token(300, fingerprint), fingerprint) == 300


def test_the_empty_token_is_the_first_page() -> None:
    assert page_offset("", query_fingerprint("x")) == 0


def test_a_token_of_another_listing_or_filter_is_refused() -> None:
    token = page_token(100, query_fingerprint("ListLabels", "sae-1", None))

    with pytest.raises(InvalidArgumentError, match="page_token"):
        page_offset(token, query_fingerprint("ListLabels", "sae-1", 0.5))


@pytest.mark.parametrize(
    "token",
    [
        "garbage!!",
        "e30",  # {}
        base64.urlsafe_b64encode(json.dumps({"o": -5, "q": "x"}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"o": True, "q": "x"}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, 2]).encode()).decode(),
        "A" * 10_000,
        "\u00e9t\u00e9",
    ],
)
def test_a_forged_or_damaged_token_is_refused_with_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgumentError, match="page_token"):
        page_offset(token, "x")
