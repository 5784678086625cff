"""Settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from featurelens.kit.auth import (
    ApiKeys,
    PeerSecurity,
    SecurityConfigError,
    ServerAuth,
    ServerTls,
    pair,
    read_key_file,
    read_pem,
)

LogFormat = Literal["auto", "text", "json"]


class ServiceSettings(BaseSettings):
    """Base settings of a featurelens gRPC service.

    A service subclasses this and sets ``model_config = service_config("ENCODER")``, so that
    ``FEATURELENS_ENCODER_PORT=50051`` sets ``port``. Only a service's ``__main__`` reads them.
    """

    model_config = SettingsConfigDict(env_prefix="FEATURELENS_", extra="ignore")

    host: str = Field(
        "127.0.0.1",
        description="Address the gRPC server binds to; 0.0.0.0 (as the images set) serves other machines.",
    )
    port: int = Field(50051, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    log_level: str = Field("INFO", description="Root log level (DEBUG, INFO, WARNING, ERROR).")
    log_format: LogFormat = Field(
        "auto", description="text for terminals, json for containers; auto picks by whether stderr is a TTY."
    )
    grace_period_s: float = Field(
        10.0,
        ge=0,
        description="Seconds in-flight calls get to finish after SIGTERM before they are cancelled.",
    )
    max_message_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest gRPC message sent or received, in bytes."
    )

    # -- observability (featurelens.kit.metrics, featurelens.kit.tracing) -------------------------
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="HTTP port serving Prometheus metrics at /metrics, on the same host as the gRPC "
        "port (no API key: keep it inside the network); 0 turns it off (compose and Kubernetes set 9464).",
    )
    otlp_endpoint: str = Field(
        "",
        validation_alias=AliasChoices("FEATURELENS_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="Base URL of an OTLP/HTTP collector (e.g. http://otel-collector:4318) that receives "
        "traces; read from FEATURELENS_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, the same for "
        "every service of a process. Empty: no tracing.",
    )

    # -- authentication and TLS (featurelens.kit.auth) --------------------------------------------
    api_keys_file: Path | None = Field(
        None,
        description="File of the API keys this server accepts, one a line (or sha256:<hex digest> of "
        "a key); blank lines and # comments are skipped. No keys (neither this nor api_keys): every "
        "call is admitted.",
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="API keys this server accepts, as a JSON list (same forms as api_keys_file; "
        "prefer the file, which keeps keys out of the environment).",
    )
    open_health: bool = Field(True, description="Health checks need no API key.")
    open_reflection: bool = Field(True, description="Server reflection (grpcurl, buf curl) needs no API key.")
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate chain of the server; with tls_key_file, it serves TLS only."
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS).",
    )
    peer_api_key_file: Path | None = Field(
        None, description="File holding the API key this service sends to the services it calls."
    )
    peer_tls_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle: when set, this service calls its peers over TLS, verified by it.",
    )
    peer_tls_cert_file: Path | None = Field(
        None, description="PEM client certificate this service presents to its peers (mutual TLS)."
    )
    peer_tls_key_file: Path | None = Field(None, description="PEM private key of peer_tls_cert_file.")

    @model_validator(mode="after")
    def _certificates_come_with_their_keys(self) -> Self:
        prefix = str(self.model_config.get("env_prefix", ""))
        pair(self.tls_cert_file, self.tls_key_file, f"{prefix}TLS_CERT_FILE", f"{prefix}TLS_KEY_FILE")
        pair(
            self.peer_tls_cert_file,
            self.peer_tls_key_file,
            f"{prefix}PEER_TLS_CERT_FILE",
            f"{prefix}PEER_TLS_KEY_FILE",
        )
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise SecurityConfigError(
                f"{prefix}TLS_CLIENT_CA_FILE needs {prefix}TLS_CERT_FILE and {prefix}TLS_KEY_FILE: "
                "client certificates are checked only over TLS"
            )
        return self

    def _setting(self, name: str) -> str:
        return f"{self.model_config.get('env_prefix', '')}{name.upper()}"

    def server_auth(self) -> ServerAuth:
        """The keys this server accepts (read and hashed now); SecurityConfigError for a bad file."""
        keys: ApiKeys | None = None
        if self.api_keys:
            keys = ApiKeys.parse([key.get_secret_value() for key in self.api_keys], self._setting("api_keys"))
        if self.api_keys_file is not None:
            from_file = ApiKeys.from_file(self.api_keys_file, self._setting("api_keys_file"))
            keys = from_file if keys is None else keys + from_file
        return ServerAuth(keys, open_health=self.open_health, open_reflection=self.open_reflection)

    def server_tls(self) -> ServerTls | None:
        """The server's certificate and key (None: plaintext), read now."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        client_ca = None
        if self.tls_client_ca_file is not None:
            client_ca = read_pem(self.tls_client_ca_file, self._setting("tls_client_ca_file"))
        return ServerTls(
            read_pem(self.tls_cert_file, self._setting("tls_cert_file")),
            read_pem(self.tls_key_file, self._setting("tls_key_file")),
            client_ca,
        )

    def peer_security(self) -> PeerSecurity:
        """The key and TLS this service's calls to its peers carry, read now."""
        api_key = None
        if self.peer_api_key_file is not None:
            api_key = read_key_file(self.peer_api_key_file, self._setting("peer_api_key_file"))
        ca = cert = key = None
        if self.peer_tls_ca_file is not None:
            ca = read_pem(self.peer_tls_ca_file, self._setting("peer_tls_ca_file"))
        if self.peer_tls_cert_file is not None and self.peer_tls_key_file is not None:
            cert = read_pem(self.peer_tls_cert_file, self._setting("peer_tls_cert_file"))
            key = read_pem(self.peer_tls_key_file, self._setting("peer_tls_key_file"))
        tls = ca is not None or cert is not None
        return PeerSecurity(api_key, tls=tls, ca=ca, cert_chain=cert, private_key=key)


def service_config(service: str) -> SettingsConfigDict:
    """Pydantic-settings config reading ``FEATURELENS_<SERVICE>_<FIELD>`` variables."""
    return SettingsConfigDict(env_prefix=f"FEATURELENS_{service.upper()}_", extra="ignore")
