"""API keys and TLS, written once for every service: what a server accepts, what a peer call sends.

A server configured with keys (``api_keys_file`` / ``api_keys``) refuses every call whose
``authorization: Bearer <key>`` metadata does not name one of them with UNAUTHENTICATED; health
checks and reflection stay open unless ``open_health`` / ``open_reflection`` say otherwise. Keys
given in clear are hashed as they are read and only their sha256 digests are kept; a presented key
is hashed and compared with every digest in constant time (``hmac.compare_digest``), so neither the
answer nor its timing tells a caller whether a key is close to one that exists.

A key file holds one key a line; blank lines and ``#`` comments are skipped, and a line
``sha256:<64 hex digits>`` is the digest of a key (``printf %s KEY | sha256sum``), so the file need
not hold the key itself. Every problem with a file (missing, unreadable, empty, a malformed
``sha256:`` line, a certificate without its private key) is a ``SecurityConfigError`` raised when
the service starts, naming the file and the setting.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from featurelens.kit.redaction import register_secret

logger = logging.getLogger(__name__)

#: The metadata key of the credential, and the scheme before the key.
AUTHORIZATION_KEY = "authorization"
BEARER = "bearer "

#: What a caller without a key is told.
MISSING_KEY = "this server needs an API key: send authorization: Bearer <key> (FEATURELENS_API_KEY)"
#: What a caller with a key that is not accepted is told: the same sentence whatever was wrong
#: with it (unknown, malformed, another scheme), so that it tells nothing about the keys that exist.
WRONG_KEY = (
    "this server did not accept the API key sent: send authorization: Bearer <key> with a key "
    "it knows (FEATURELENS_API_KEY)"
)

#: Shortest key accepted in clear: a short key is guessable, and too short to be redacted by value.
MIN_KEY_CHARS = 16

_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_REFLECTION_PREFIX = "/grpc.reflection."
_HASHED = re.compile(r"sha256:([0-9a-fA-F]{64})")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class SecurityConfigError(ValueError):
    """A key file or certificate setting cannot be used; the message names the file and the setting."""


def key_digest(key: str) -> bytes:
    """The sha256 digest of a key, as a server keeps it."""
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """The digests of the keys a server accepts (never the keys themselves)."""

    def __init__(self, digests: Iterable[bytes]) -> None:
        self._digests = tuple(dict.fromkeys(digests))

    @classmethod
    def parse(cls, lines: Iterable[str], source: str) -> ApiKeys:
        """Keys from lines of a key file (or entries of a list): clear keys are hashed here, and
        ``sha256:<hex>`` lines taken as digests. ``source`` names where they came from in errors."""
        digests = []
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower().startswith("sha256:"):
                match = _HASHED.fullmatch(line)
                if match is None:
                    # The line may be a key pasted after "sha256:" by mistake: never quote it.
                    raise SecurityConfigError(
                        f"{source}, entry {number}: a sha256: entry must be sha256: followed by the 64 "
                        "hexadecimal digits of the key's digest (printf %s KEY | sha256sum)"
                    )
                digests.append(bytes.fromhex(match.group(1)))
            else:
                if len(line) < MIN_KEY_CHARS:
                    raise SecurityConfigError(
                        f"{source}, entry {number}: an API key needs at least {MIN_KEY_CHARS} characters "
                        "(make one with: openssl rand -hex 32)"
                    )
                register_secret(line)
                digests.append(key_digest(line))
        return cls(digests)

    @classmethod
    def from_file(cls, path: Path, setting: str) -> ApiKeys:
        """The keys of a key file; SecurityConfigError when it is missing, unreadable or holds none."""
        text = read_text_file(path, setting)
        keys = cls.parse(text.splitlines(), f"{setting} ({path})")
        if not keys:
            raise SecurityConfigError(
                f"{setting} ({path}) holds no API key: write one key (or sha256:<digest>) a line"
            )
        return keys

    def __len__(self) -> int:
        return len(self._digests)

    def __add__(self, other: ApiKeys) -> ApiKeys:
        return ApiKeys([*self._digests, *other._digests])

    def __repr__(self) -> str:
        return f"ApiKeys({len(self)} keys)"

    def accepts(self, key: str) -> bool:
        """Whether ``key`` is one of the keys, compared in constant time with every digest."""
        presented = key_digest(key)
        found = False
        for digest in self._digests:
            # No early exit: the time taken does not depend on which key matched.
            found |= hmac.compare_digest(presented, digest)
        return found


def read_text_file(path: Path, setting: str) -> str:
    """A configuration file's text, or a SecurityConfigError naming the setting."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecurityConfigError(f"{setting}: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise SecurityConfigError(f"{setting}: {path} cannot be read ({reason})") from None


def read_key_file(path: Path, setting: str) -> str:
    """The one key of a client's key file (the first line that is not blank or a comment),
    registered for redaction."""
    for line in read_text_file(path, setting).splitlines():
        key = line.strip()
        if key and not key.startswith("#"):
            register_secret(key)
            return key
    raise SecurityConfigError(f"{setting} ({path}) holds no key: write the key on one line")


def read_pem(path: Path, setting: str) -> bytes:
    """A PEM file's bytes (certificate, key or CA bundle), or a SecurityConfigError naming the setting."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SecurityConfigError(f"{setting}: {path} does not exist") from None
    except OSError as error:
        raise SecurityConfigError(f"{setting}: {path} cannot be read ({error.strerror})") from None
    if b"-----BEGIN " not in data:
        raise SecurityConfigError(f"{setting}: {path} is not a PEM file (no -----BEGIN line)")
    return data


def presented_key(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The value of the caller's ``authorization`` metadata ("" for a value that is not text)."""
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY:
            return value if isinstance(value, str) else ""
    return None


@dataclass(frozen=True)
class ServerAuth:
    """Which calls a server admits: every call when ``keys`` is None, else calls bearing a key."""

    keys: ApiKeys | None = None
    open_health: bool = True
    open_reflection: bool = True

    def refusal(self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
        """Why the call to ``method`` is refused (the UNAUTHENTICATED sentence), or None to admit it."""
        if self.keys is None:
            return None
        if self.open_health and method.startswith(_HEALTH_PREFIX):
            return None
        if self.open_reflection and method.startswith(_REFLECTION_PREFIX):
            return None
        value = presented_key(metadata)
        if value is None:
            return MISSING_KEY
        if value[: len(BEARER)].lower() != BEARER:
            return WRONG_KEY
        return None if self.keys.accepts(value[len(BEARER) :].strip()) else WRONG_KEY


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate chain and key, and the CA its clients' certificates must chain to
    (mutual TLS) when ``client_ca`` is set."""

    cert_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True)
class PeerSecurity:
    """What a service's calls to its peers carry: a key, and TLS (verified against ``ca``) when
    ``tls`` is set, with a client certificate for mutual TLS when ``cert_chain`` is set."""

    api_key: str | None = field(default=None, repr=False)
    tls: bool = False
    ca: bytes | None = field(default=None, repr=False)
    cert_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata every peer call carries for authentication."""
        return ((AUTHORIZATION_KEY, f"Bearer {self.api_key}"),) if self.api_key else ()

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials for a peer channel; None for plaintext."""
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(self.ca, self.private_key, self.cert_chain)


def pair(cert_file: Path | None, key_file: Path | None, cert_setting: str, key_setting: str) -> None:
    """SecurityConfigError unless both or neither of a certificate and its key are set."""
    if (cert_file is None) != (key_file is None):
        given, missing = (cert_setting, key_setting) if key_file is None else (key_setting, cert_setting)
        raise SecurityConfigError(f"{given} is set but {missing} is not: set both (or neither)")


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only."""
    return host in _LOOPBACK_HOSTS or host.startswith("127.")
