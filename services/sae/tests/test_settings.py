"""SaeSettings read FEATURELENS_SAE_* variables and refuse nonsense."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from featurelens.services.sae.__main__ import build_servicer
from featurelens.services.sae.settings import SaeSettings


def test_settings_come_from_featurelens_sae_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURELENS_SAE_PORT", "6000")
    monkeypatch.setenv("FEATURELENS_SAE_MODELS_DIR", "/models")
    monkeypatch.setenv("FEATURELENS_SAE_TRAIN_DATA_ROOTS", '["/data/stores", "/more"]')
    monkeypatch.setenv("FEATURELENS_SAE_DEVICE", "CUDA:1")
    monkeypatch.setenv("FEATURELENS_SAE_BATCH_WINDOW_MS", "0")

    settings = SaeSettings()

    assert settings.port == 6000
    assert settings.checkpoints_dir == Path("/models")
    assert settings.train_data_roots == [Path("/data/stores"), Path("/more")]
    assert settings.device == "cuda:1"
    assert settings.batch_window_ms == 0


def test_the_defaults_serve_on_cpu_from_the_data_dir_with_train_disabled() -> None:
    settings = SaeSettings(_env_file=None)  # type: ignore[call-arg]

    assert settings.port == 50052
    assert settings.device == "cpu"
    assert settings.checkpoints_dir == Path(".featurelens/sae/models")
    assert settings.train_data_roots == []
    assert settings.max_batch == 4096


def test_an_empty_models_dir_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURELENS_SAE_MODELS_DIR", "")

    assert SaeSettings(data_dir=Path("/state")).checkpoints_dir == Path("/state/models")


@pytest.mark.parametrize("device", ["gpu", "mps", "cuda:x", ""])
def test_an_unknown_device_is_refused(device: str) -> None:
    with pytest.raises(ValidationError, match="device"):
        SaeSettings(device=device)


def test_build_servicer_touches_nothing_until_started(tmp_path: Path) -> None:
    servicer = build_servicer(SaeSettings(models_dir=tmp_path / "not-yet"))

    assert servicer.registry.models_dir == tmp_path / "not-yet"
    assert not (tmp_path / "not-yet").exists()
