"""The registry of SAE checkpoints: listing, the default, loading with an LRU, registration."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sae_testing import make_sae, save_checkpoint

from featurelens.kit import NotFoundError
from featurelens.services.sae.registry import SaeRegistry


def make_older(models: Path, sae_id: str) -> None:
    """Move a checkpoint's ``created`` time back a century (saves within a second tie otherwise)."""
    config = models / sae_id / "config.json"
    config.write_text(config.read_text().replace('"created": "20', '"created": "19'))


def test_scan_lists_the_checkpoints_newest_first_and_skips_malformed_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = tmp_path / "models"
    old = save_checkpoint(models, make_sae(1), "old")
    make_older(models, old)
    new = save_checkpoint(models, make_sae(2), "new")
    (models / "broken").mkdir()
    (models / "broken" / "config.json").write_text("{not json")
    (models / ".train-abc").mkdir()

    with caplog.at_level(logging.WARNING):
        entries = SaeRegistry(models).scan()

    assert [entry.sae_id for entry in entries] == [new, old]
    assert "broken" in caplog.text


def test_the_default_is_the_marker_file_else_the_newest_marked_once(tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = save_checkpoint(models, make_sae(1), "first")
    make_older(models, first)
    second = save_checkpoint(models, make_sae(2), "second")
    registry = SaeRegistry(models)

    registry.scan()
    assert registry.default_id() == second
    assert (models / "default").read_text().strip() == second  # marked, so it stays

    registry.set_default(first)
    assert (models / "default").read_text().strip() == first
    registry.scan()
    assert registry.default_id() == first

    (models / "default").write_text("sae-gone\n")
    registry.scan()
    assert registry.default_id() == second
    assert (models / "default").read_text().strip() == second


def test_registering_an_sae_changes_the_default_only_when_asked(tmp_path: Path) -> None:
    models = tmp_path / "models"
    registry = SaeRegistry(models)

    def staged(seed: int) -> Path:
        staging = registry.staging_dir()
        sae_id = save_checkpoint(tmp_path / f"run-{seed}", make_sae(seed), f"run-{seed}")
        os.rename(tmp_path / f"run-{seed}" / sae_id, staging)
        return staging

    first = registry.register(staged(1)).sae_id
    registry.register(staged(2))
    assert registry.default_id() == first  # the first SAE of the folder, not the newest

    third = registry.register(staged(3), make_default=True).sae_id
    assert registry.default_id() == third
    assert (models / "default").read_text().strip() == third


def test_a_folder_without_a_marker_keeps_its_default_when_another_sae_is_registered(tmp_path: Path) -> None:
    # As `featurelens sae train` left folders before it wrote markers: the newest SAE was the default.
    models = tmp_path / "models"
    old = save_checkpoint(models, make_sae(1), "old")
    make_older(models, old)
    newest = save_checkpoint(models, make_sae(2), "newest")
    registry = SaeRegistry(models)
    staging = registry.staging_dir()
    later = save_checkpoint(tmp_path / "run", make_sae(3), "later")
    os.rename(tmp_path / "run" / later, staging)

    registry.register(staging)

    assert registry.default_id() == newest
    assert (models / "default").read_text().strip() == newest


def test_a_pinned_default_wins_over_the_marker(tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = save_checkpoint(models, make_sae(1), "first")
    second = save_checkpoint(models, make_sae(2), "second")
    (models / "default").write_text(second)
    registry = SaeRegistry(models, pinned_default=first)

    registry.scan()

    assert registry.default_id() == first


def test_an_unknown_id_names_itself_and_some_known_ones(tmp_path: Path) -> None:
    models = tmp_path / "models"
    known = save_checkpoint(models, make_sae(1), "known")

    with pytest.raises(NotFoundError, match=f"unknown SAE 'sae-nope'; known SAEs: {known}"):
        SaeRegistry(models).entry("sae-nope")
    with pytest.raises(NotFoundError, match="no SAEs are registered yet"):
        SaeRegistry(tmp_path / "empty").entry("sae-nope")


def test_ids_that_look_like_paths_are_never_looked_up(tmp_path: Path) -> None:
    models = tmp_path / "models"
    save_checkpoint(models, make_sae(1), "a")
    registry = SaeRegistry(models / "inner")
    # A checkpoint one level up exists, but ".." must not reach it.
    sae_id = next(p.name for p in models.iterdir())

    with pytest.raises(NotFoundError):
        registry.entry(f"../{sae_id}")


def test_the_lru_keeps_max_loaded_saes_and_never_drops_the_default(tmp_path: Path) -> None:
    models = tmp_path / "models"
    ids = [save_checkpoint(models, make_sae(seed), f"s{seed}") for seed in range(4)]
    (models / "default").write_text(ids[0])
    registry = SaeRegistry(models, max_loaded=2)
    registry.scan()

    for sae_id in ids:
        registry.load(sae_id)

    assert registry.loaded_ids() == [ids[0], ids[3]]
    assert registry.load(ids[3]) is registry.loaded(ids[3])


def test_register_moves_a_checkpoint_into_place_and_replaces_a_previous_one(tmp_path: Path) -> None:
    models = tmp_path / "models"
    registry = SaeRegistry(models)
    staging = registry.staging_dir()
    sae_id = save_checkpoint(staging.parent, make_sae(5), "run")
    os.rename(staging.parent / sae_id, staging)
    (staging / "train_state.pt").write_bytes(b"optimiser state")

    entry = registry.register(staging, make_default=True)

    assert entry.path == models / sae_id
    assert not staging.exists()
    assert not (models / sae_id / "train_state.pt").exists()
    assert registry.default_id() == sae_id
    again = registry.staging_dir()
    save_checkpoint(tmp_path / "second", make_sae(5), "run")
    os.rename(tmp_path / "second" / sae_id, again)
    registry.load(sae_id)

    registry.register(again)

    assert registry.loaded(sae_id) is None  # the replaced weights are not served any more
    assert [e.sae_id for e in registry.scan()] == [sae_id]


def test_stale_staging_folders_are_removed(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / ".train-0123").mkdir(parents=True)
    (models / ".train-0123" / "model.safetensors").write_bytes(b"partial")

    SaeRegistry(models).remove_stale_staging()

    assert not (models / ".train-0123").exists()
