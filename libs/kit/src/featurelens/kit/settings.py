"""Settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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


def service_config(service: str) -> SettingsConfigDict:
    """Pydantic-settings config reading ``FEATURELENS_<SERVICE>_<FIELD>`` variables."""
    return SettingsConfigDict(env_prefix=f"FEATURELENS_{service.upper()}_", extra="ignore")
