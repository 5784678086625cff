"""Service settings come from FEATURELENS_<SERVICE>_<FIELD> environment variables."""

from __future__ import annotations

import pytest
from pydantic import Field, ValidationError

from featurelens.kit import ServiceSettings, service_config


class DemoSettings(ServiceSettings):
    model_config = service_config("demo")

    redis_url: str = Field("", description="Redis URL for the demo cache; empty for none.")
    batch_size: int = Field(64, ge=1)


def test_settings_have_the_documented_defaults_without_any_variables() -> None:
    settings = DemoSettings()

    # Loopback unless told otherwise: a service started by hand is not open to the network.
    assert (settings.host, settings.port, settings.log_format) == ("127.0.0.1", 50051, "auto")
    assert settings.batch_size == 64


def test_settings_read_prefixed_variables_for_base_and_service_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEATURELENS_DEMO_PORT", "6000")
    monkeypatch.setenv("FEATURELENS_DEMO_GRACE_PERIOD_S", "2.5")
    monkeypatch.setenv("FEATURELENS_DEMO_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("FEATURELENS_DEMO_LOG_FORMAT", "json")

    settings = DemoSettings()

    assert settings.port == 6000
    assert settings.grace_period_s == 2.5
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.log_format == "json"


def test_variables_of_another_service_or_without_the_service_name_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEATURELENS_PORT", "7000")
    monkeypatch.setenv("FEATURELENS_OTHER_PORT", "7001")
    monkeypatch.setenv("FEATURELENS_DEMO_UNKNOWN_FIELD", "x")

    assert DemoSettings().port == 50051


def test_an_invalid_value_is_rejected_with_the_field_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURELENS_DEMO_PORT", "70000")

    with pytest.raises(ValidationError, match="port"):
        DemoSettings()


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURELENS_DEMO_PORT", "6000")

    assert DemoSettings(port=0, host="127.0.0.1").port == 0
