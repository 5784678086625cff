"""Settings of the gateway, read from ``FEATURELENS_GATEWAY_<FIELD>`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from featurelens.kit.auth import SecurityConfigError, pair, read_key_file
from featurelens.kit.settings import ServiceSettings, service_config

DEFAULT_PORT = 8080
#: Settings of a gRPC server or of its peer calls, which the HTTP gateway has no use for: its own
#: calls to the services take api_key / api_key_file / tls_ca_file / tls_client_*_file.
_NOT_FOR_THE_GATEWAY = (
    "api_keys_file",
    "api_keys",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
    "peer_api_key_file",
    "peer_tls_ca_file",
    "peer_tls_cert_file",
    "peer_tls_key_file",
)

#: The explorer's files in a checkout of the repository (settings.py is
#: services/gateway/src/featurelens/services/gateway/settings.py).
REPOSITORY_WEB_DIR = Path(__file__).resolve().parents[6] / "clients" / "web"


def default_static_dir() -> Path | None:
    """The repository's ``clients/web`` when this package runs from a checkout that has it; else none."""
    return REPOSITORY_WEB_DIR if REPOSITORY_WEB_DIR.is_dir() else None


class GatewaySettings(ServiceSettings):
    """Everything the gateway can be configured with (see the service README)."""

    model_config = service_config("GATEWAY")

    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="HTTP port; 0 picks a free one.")

    encoder_address: str = Field("127.0.0.1:50051", description="host:port of the encoder service.")
    sae_address: str = Field("127.0.0.1:50052", description="host:port of the sae service.")
    search_address: str = Field("127.0.0.1:50053", description="host:port of the search service.")
    labelling_address: str = Field("127.0.0.1:50054", description="host:port of the labelling service.")
    family_address: str = Field("127.0.0.1:50055", description="host:port of the family service.")
    call_timeout_s: float = Field(
        30.0, gt=0, description="Deadline of each call to a service, retries included, seconds."
    )
    health_timeout_s: float = Field(
        2.0, gt=0, description="Deadline of each service's health check in /api/v1/health, seconds."
    )

    api_key: SecretStr | None = Field(
        None, description="API key sent to the services (prefer api_key_file); unset: none."
    )
    api_key_file: Path | None = Field(
        None, description="File holding the API key sent to the services (wins over api_key)."
    )
    tls_ca_file: Path | None = Field(
        None, description="PEM CA bundle: when set, the services are called over TLS, verified by it."
    )
    tls_client_cert_file: Path | None = Field(
        None, description="PEM client certificate presented to the services (mutual TLS)."
    )
    tls_client_key_file: Path | None = Field(None, description="PEM private key of tls_client_cert_file.")

    static_dir: Path | None = Field(
        default_factory=default_static_dir,
        description="Folder of the explorer's static files, served at /; unset: the repository's "
        "clients/web when running from a checkout that has it, else no static files.",
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest request body accepted, bytes."
    )
    max_sorted_labels: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="Most labels read to sort an SAE's labels by density or draw its density histogram.",
    )

    @model_validator(mode="after")
    def _metrics_on_the_http_port(self) -> Self:
        if self.metrics_port:
            raise ValueError(
                "FEATURELENS_GATEWAY_METRICS_PORT is not a gateway setting: the gateway serves its "
                "Prometheus metrics at /metrics on its own HTTP port"
            )
        return self

    @model_validator(mode="after")
    def _only_client_security(self) -> Self:
        for name in _NOT_FOR_THE_GATEWAY:
            if getattr(self, name):
                raise SecurityConfigError(
                    f"FEATURELENS_GATEWAY_{name.upper()} is not a gateway setting: the gateway checks no "
                    "API keys on HTTP and serves no TLS itself (put it behind a TLS-terminating proxy); "
                    "its calls to the services take FEATURELENS_GATEWAY_API_KEY_FILE, _TLS_CA_FILE and "
                    "_TLS_CLIENT_CERT_FILE / _TLS_CLIENT_KEY_FILE"
                )
        pair(
            self.tls_client_cert_file,
            self.tls_client_key_file,
            "FEATURELENS_GATEWAY_TLS_CLIENT_CERT_FILE",
            "FEATURELENS_GATEWAY_TLS_CLIENT_KEY_FILE",
        )
        return self

    def service_api_key(self) -> str:
        """The key sent to the services ("" for none), read from api_key_file when set."""
        if self.api_key_file is not None:
            return read_key_file(self.api_key_file, "FEATURELENS_GATEWAY_API_KEY_FILE")
        return self.api_key.get_secret_value() if self.api_key is not None else ""
