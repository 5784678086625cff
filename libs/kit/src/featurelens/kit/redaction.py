"""One redactor for everything a service writes: its log records and every status detail it sends.

Two kinds of secret are removed. Secrets of a known shape are found by pattern: ``sk-`` keys,
``Bearer`` tokens, ``Basic`` credentials, ``key=value`` pairs whose key names a secret, passwords
in URLs. Configured secrets are removed by value, whatever their shape: the runner and the embedded
host register every ``SecretStr`` setting and the password of every URL setting
(``register_settings_secrets``) before a servicer is built, and a service registers a secret it
reads elsewhere (a key file) with ``register_secret``.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable, Iterable
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr

from featurelens.kit.echo import MAX_DETAIL_BYTES, MAX_DETAIL_CHARS, bounded

MASK = "***"
#: Shorter values are not registered: replacing every "redis" in a log would hide more than a
#: secret (a short password in a URL is still caught by the URL pattern).
MIN_SECRET_CHARS = 6
#: Characters past a cut that are still redacted, so that a secret across the cut is found whole.
_CUT_MARGIN = 1000


def _basic_credentials(match: re.Match[str]) -> str:
    # "Basic" also begins ordinary sentences ("Basic statistics"); only a token that decodes to
    # user:password is a credential.
    try:
        decoded = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return f"{match.group(1)}{MASK}" if b":" in decoded else match.group(0)


_SECRET_PATTERNS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # OpenAI-style keys and bearer tokens (RFC 6750 token characters).
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-***"),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/\-]{8,}=*"), r"\1***"),
    # HTTP Basic credentials: base64 of user:password.
    (re.compile(r"(?i)(\bbasic\s+)([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])"), _basic_credentials),
    # key=value pairs whose key names a secret.
    (re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1***"),
    # user:password@host in URLs; the user may be empty (redis://:password@host).
    (re.compile(r"(://[^/\s:@]*:)[^@\s/]+@"), r"\1***@"),
]

_lock = threading.Lock()
#: Registered secret values, longest first (a secret that contains another is removed whole).
_values: tuple[str, ...] = ()


def register_secret(value: str | SecretStr | None) -> None:
    """Redact ``value`` wherever it appears from now on (values under 6 characters are ignored)."""
    global _values
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value or len(value.strip()) < MIN_SECRET_CHARS:
        return
    variants = {value, value.strip()}
    with _lock:
        known = set(_values) | {variant for variant in variants if len(variant) >= MIN_SECRET_CHARS}
        _values = tuple(sorted(known, key=len, reverse=True))


def register_settings_secrets(settings: BaseModel) -> None:
    """Register a service's configured secrets: every ``SecretStr`` field and the password of every
    URL in a text field (``redis://:password@host``), in lists too and in nested settings."""
    for name in type(settings).model_fields:
        for value in _flattened(getattr(settings, name, None)):
            if isinstance(value, SecretStr):
                register_secret(value)
            elif isinstance(value, BaseModel):
                register_settings_secrets(value)
            elif isinstance(value, str):
                password = url_password(value)
                if password:
                    # As written in the URL (percent-encoded) and as sent.
                    register_secret(password)
                    register_secret(unquote(password))


def _flattened(value: object) -> Iterable[object]:
    if isinstance(value, list | tuple | set | frozenset):
        return value
    if isinstance(value, dict):
        return value.values()
    return (value,)


def url_password(text: str) -> str | None:
    """The password in a URL's userinfo (``scheme://user:password@host``) as written there (still
    percent-encoded); None when ``text`` is no URL or has none."""
    if "://" not in text or "@" not in text:
        return None
    try:
        password = urlsplit(text.strip()).password
    except ValueError:
        return None
    return password or None


def forget_secrets() -> None:
    """Drop every registered value (tests use this to leave the process as they found it)."""
    global _values
    with _lock:
        _values = ()


def redacted_and_bounded(text: str, limit: int, *, max_bytes: int | None = None) -> str:
    """``bounded(redact(text), limit)``, without scanning megabytes that the cut drops anyway.

    Only ``limit`` characters and a margin past them are redacted: a secret that starts before
    the cut and runs past the margin would be longer than the margin, which no secret is.
    """
    margin = max(_CUT_MARGIN, max((len(value) for value in _values), default=0))
    if len(text) <= limit + margin:
        return bounded(redact(text), limit, max_bytes=max_bytes)
    return bounded(redact(text[: limit + margin]), limit, max_bytes=max_bytes, total=len(text))


def status_detail(text: str) -> str:
    """A status detail as the interceptor sends it: redacted, at most 1,000 characters and 2,000
    UTF-8 bytes (gRPC's metadata limit is 8 KiB after percent-encoding)."""
    return redacted_and_bounded(text, MAX_DETAIL_CHARS, max_bytes=MAX_DETAIL_BYTES)


def redact(text: str) -> str:
    """Return text with registered secret values and secrets of a known shape replaced by ``***``."""
    for value in _values:
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text
