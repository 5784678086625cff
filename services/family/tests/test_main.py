"""Settings from the environment, and the family service inside the embedded host."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurelens.kit.embedded import discover_services, service_settings
from featurelens.services.family.settings import FamilySettings


def test_settings_are_read_from_featurelens_family_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURELENS_FAMILY_PORT", "6000")
    monkeypatch.setenv("FEATURELENS_FAMILY_STORAGE", "server")
    monkeypatch.setenv("FEATURELENS_FAMILY_QDRANT_API_KEY", "s3cret")
    monkeypatch.setenv("FEATURELENS_FAMILY_LABELLING_ADDRESS", "labelling:50054")
    monkeypatch.setenv("FEATURELENS_FAMILY_DECODER_BATCH", "512")

    settings = FamilySettings()

    assert (settings.port, settings.storage, settings.decoder_batch) == (6000, "server", 512)
    assert settings.labelling_address == "labelling:50054"
    assert "s3cret" not in repr(settings)
    assert (settings.search_address, settings.sae_address) == ("127.0.0.1:50053", "127.0.0.1:50052")


def test_the_embedded_host_finds_the_service_and_points_it_at_itself(tmp_path: Path) -> None:
    (factory,) = discover_services(["family"])

    settings = service_settings(
        factory,
        host="127.0.0.1",
        port=7001,
        data_dir=tmp_path,
        hosted=["encoder", "sae", "search", "labelling", "family"],
    )

    assert isinstance(settings, FamilySettings)
    assert settings.port == 7001
    assert {settings.search_address, settings.sae_address, settings.labelling_address} == {"127.0.0.1:7001"}
    assert settings.edge_path == tmp_path / "families" / "qdrant"
    assert settings.activations_path == tmp_path / "families" / "activations"
