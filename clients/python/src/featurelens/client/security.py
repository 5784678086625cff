"""API keys and TLS for the SDK's channels: arguments first, then the environment.

    FeaturelensClient("search.example.com:443", api_key="...", tls=TlsConfig(ca_file="ca.pem"))

or, with nothing passed, from the environment (as openai-python reads ``OPENAI_API_KEY``):

- ``FEATURELENS_API_KEY``: the key, sent as ``authorization: Bearer <key>`` with every call;
- ``FEATURELENS_TLS_CA_FILE``: connect over TLS, verifying the server against this PEM CA bundle;
- ``FEATURELENS_TLS_CERT_FILE`` and ``FEATURELENS_TLS_KEY_FILE``: the client certificate and key
  for servers that require one (mutual TLS).

``tls=True`` connects over TLS with the system's CA roots (or ``FEATURELENS_TLS_CA_FILE``);
``tls=False`` and ``api_key=""`` ignore the environment. The key is never part of a repr or an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

API_KEY_ENV = "FEATURELENS_API_KEY"
TLS_CA_ENV = "FEATURELENS_TLS_CA_FILE"
TLS_CERT_ENV = "FEATURELENS_TLS_CERT_FILE"
TLS_KEY_ENV = "FEATURELENS_TLS_KEY_FILE"
AUTHORIZATION_KEY = "authorization"

__all__ = ["API_KEY_ENV", "TLS_CA_ENV", "TLS_CERT_ENV", "TLS_KEY_ENV", "ChannelSecurity", "TlsConfig"]


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the {what} {os.fspath(path)!r}: {error.strerror or error}") from None


@dataclass(frozen=True)
class TlsConfig:
    """How to connect over TLS: the CA bundle that signed the server's certificate (None: the
    system's roots), a client certificate and key for mutual TLS, and the name the server's
    certificate holds when it is not the host connected to."""

    ca_file: str | os.PathLike[str] | None = None
    cert_file: str | os.PathLike[str] | None = None
    key_file: str | os.PathLike[str] | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("TlsConfig needs both cert_file and key_file (mutual TLS), or neither")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TlsConfig | None:
        """TLS as ``FEATURELENS_TLS_*`` say; None when none of them is set."""
        env = os.environ if environ is None else environ
        ca, cert, key = (env.get(name) or None for name in (TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV))
        if ca is None and cert is None and key is None:
            return None
        if (cert is None) != (key is None):
            raise ValueError(f"set both {TLS_CERT_ENV} and {TLS_KEY_ENV} (mutual TLS), or neither")
        return cls(ca, cert, key)

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials, with the files read now (ValueError naming one that cannot be)."""
        ca = _read(self.ca_file, "TLS CA file") if self.ca_file is not None else None
        cert = _read(self.cert_file, "TLS client certificate") if self.cert_file is not None else None
        key = _read(self.key_file, "TLS client key") if self.key_file is not None else None
        return grpc.ssl_channel_credentials(ca, key, cert)


@dataclass(frozen=True)
class ChannelSecurity:
    """The key and TLS of a client's channels, resolved from arguments and the environment (internal)."""

    api_key: str | None = field(default=None, repr=False)
    tls: TlsConfig | None = None
    _credentials: grpc.ChannelCredentials | None = field(default=None, repr=False, compare=False)

    @classmethod
    def resolve(
        cls,
        api_key: str | None,
        tls: TlsConfig | bool | None,
        environ: Mapping[str, str] | None = None,
    ) -> ChannelSecurity:
        """An argument wins over the environment; None reads the environment."""
        env = os.environ if environ is None else environ
        key = env.get(API_KEY_ENV) if api_key is None else api_key
        config: TlsConfig | None
        if tls is None:
            config = TlsConfig.from_env(env)
        elif tls is True:
            config = TlsConfig.from_env(env) or TlsConfig()
        elif tls is False:
            config = None
        else:
            config = tls
        # The files are read here, so that a wrong path fails when the client is made.
        credentials = config.credentials() if config is not None else None
        key = (key or "").strip() or None
        return cls(key, config, credentials)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call carries to authenticate."""
        return ((AUTHORIZATION_KEY, f"Bearer {self.api_key}"),) if self.api_key else ()

    def sync_channel(self, address: str, options: list[tuple[str, int | str]]) -> grpc.Channel:
        if self._credentials is None:
            return grpc.insecure_channel(address, options=options)
        return grpc.secure_channel(address, self._credentials, options=self._tls_options(options))

    def aio_channel(self, address: str, options: list[tuple[str, int | str]]) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(address, options=options)
        return grpc.aio.secure_channel(address, self._credentials, options=self._tls_options(options))

    def _tls_options(self, options: list[tuple[str, int | str]]) -> list[tuple[str, int | str]]:
        if self.tls is not None and self.tls.server_name:
            return [*options, ("grpc.ssl_target_name_override", self.tls.server_name)]
        return options
