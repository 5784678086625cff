"""Page tokens: opaque to callers, checked on the way back in.

A token carries the offset of the next page and a fingerprint of the query it belongs to (the
fields that decide the order and the filter). A token that does not decode, or that belongs to
another query, is refused with INVALID_ARGUMENT, never read as the first page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from featurelens.kit.errors import InvalidArgumentError

#: Longest token accepted (a real one is ~40 characters).
MAX_TOKEN_CHARS = 256


def query_fingerprint(*parts: object) -> str:
    """A short fingerprint of the fields a listing's order and filter depend on."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def page_token(offset: int, fingerprint: str) -> str:
    """The token of the page that starts at ``offset``."""
    raw = json.dumps({"o": offset, "q": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_offset(token: str, fingerprint: str) -> int:
    """The offset a token names: 0 for the empty token; INVALID_ARGUMENT for a bad or foreign one."""
    if not token:
        return 0
    bad = InvalidArgumentError(
        "page_token is not a token this listing issued; pass next_page_token from the previous page "
        "unchanged, with the same filters"
    )
    if len(token) > MAX_TOKEN_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("q") != fingerprint:
        raise bad
    offset = data.get("o")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise bad
    return offset
