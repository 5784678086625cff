"""Settings of the gateway, read from ``FEATURELENS_GATEWAY_<FIELD>`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from featurelens.kit.settings import ServiceSettings, service_config

DEFAULT_PORT = 8080
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
