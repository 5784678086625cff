"""ModelsFolder: staging, registering and replacing SAE checkpoints, and the default marker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from featurelens.sae import ModelsFolder, SaeCheckpointError, SaeConfig, SparseAutoencoder, save_sae
from featurelens.sae.checkpoint import TRAIN_STATE_FILE, read_checkpoint, replace_dir
from featurelens.sae.models_folder import is_valid_sae_id

CFG = SaeConfig(d_in=8, num_latents=32, k=4)


def stage(folder: ModelsFolder, seed: int = 0, fingerprint: str = "data") -> Path:
    """A finished run's checkpoint in a staging folder, with its optimiser state."""
    staging = folder.staging_dir()
    save_sae(SparseAutoencoder(CFG, seed=seed), staging, data_fingerprint=fingerprint)
    (staging / TRAIN_STATE_FILE).write_bytes(b"optimiser state")
    return staging


def visible(folder: ModelsFolder) -> list[str]:
    """The SAE folders (not hidden runs, not the default marker)."""
    return sorted(p.name for p in folder.path.iterdir() if not p.name.startswith(".") and p.is_dir())


def older(info_path: Path) -> None:
    """Move a checkpoint's ``created`` time back a century (saves within a second tie otherwise)."""
    config = info_path / "config.json"
    config.write_text(config.read_text().replace('"created": "20', '"created": "19'))


def test_a_staging_folder_is_a_fresh_hidden_path_inside_the_folder(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")

    first, second = folder.staging_dir(), folder.staging_dir()

    assert first.parent == second.parent == folder.path
    assert first != second
    assert first.name.startswith(".train-")
    assert not first.exists()


def test_register_moves_a_finished_run_to_its_sae_id_and_drops_the_optimiser_state(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")
    staging = stage(folder)

    info = folder.register(staging)

    assert info.path == folder.path / info.sae_id
    assert read_checkpoint(info.path).sae_id == info.sae_id
    assert not staging.exists()
    assert not (info.path / TRAIN_STATE_FILE).exists()
    assert visible(folder) == [info.sae_id]


def test_registering_the_same_sae_again_replaces_it_and_leaves_nothing_aside(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")
    first = folder.register(stage(folder, seed=0))
    # Same config, recipe and data: the same id, other weights (as a re-run on another device).
    second = folder.register(stage(folder, seed=1))

    assert second.sae_id == first.sae_id
    assert sorted(os.listdir(folder.path)) == sorted([first.sae_id, "default"])


def test_a_replace_that_fails_puts_the_old_checkpoint_back(tmp_path: Path) -> None:
    old = tmp_path / "sae-x"
    old.mkdir()
    (old / "config.json").write_text("{}")

    with pytest.raises(FileNotFoundError):
        replace_dir(tmp_path / "no-such-run", old)

    assert (old / "config.json").read_text() == "{}"
    assert os.listdir(tmp_path) == ["sae-x"]


def test_a_failed_run_leaves_no_staging_folder_behind(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")

    def failing_run() -> None:
        with folder.staging() as staging:
            save_sae(SparseAutoencoder(CFG), staging)
            raise RuntimeError("the run failed")

    with pytest.raises(RuntimeError):
        failing_run()

    assert os.listdir(folder.path) == []


def test_a_registered_run_is_kept_when_its_staging_context_ends(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")

    with folder.staging() as staging:
        save_sae(SparseAutoencoder(CFG), staging)
        info = folder.register(staging)

    assert visible(folder) == [info.sae_id]


def test_a_checkpoint_whose_id_cannot_name_a_folder_is_refused(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")
    staging = stage(folder)
    config = json.loads((staging / "config.json").read_text())
    (staging / "config.json").write_text(json.dumps(config | {"sae_id": "../escape"}))

    with pytest.raises(SaeCheckpointError, match="cannot name a folder"):
        folder.register(staging)

    assert not (tmp_path / "escape").exists()


def test_registering_an_unreadable_checkpoint_says_what_is_wrong(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")
    staging = folder.staging_dir()
    staging.mkdir()

    with pytest.raises(SaeCheckpointError, match=r"has no config\.json"):
        folder.register(staging)


def test_what_interrupted_runs_left_is_cleaned_up_and_no_sae_is_lost(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")
    kept = folder.register(stage(folder, fingerprint="kept"))
    lost = folder.register(stage(folder, fingerprint="lost"))
    for name in (".train-0123", "..train-0123.tmp-abc"):
        (folder.path / name).mkdir()
    # An interrupted replace: one SAE moved aside with its new copy in place, one with none.
    (folder.path / f".{kept.sae_id}.old-0a1b2c3d").mkdir()
    os.rename(lost.path, folder.path / f".{lost.sae_id}.old-deadbeef")

    removed = folder.remove_stale()

    assert len(removed) == 3
    assert sorted(os.listdir(folder.path)) == sorted([kept.sae_id, lost.sae_id, "default"])
    assert read_checkpoint(folder.path / lost.sae_id).sae_id == lost.sae_id


def test_a_default_marker_write_cut_short_by_a_kill_leaves_no_temporary_file_after_cleanup(
    tmp_path: Path,
) -> None:
    folder = ModelsFolder(tmp_path / "models")
    kept = folder.register(stage(folder, fingerprint="kept"))
    # What write_default leaves when the process is killed between creating and renaming it.
    (folder.path / ".default.tmp-k1ll3d").write_text("half")

    removed = folder.remove_stale()

    assert [path.name for path in removed] == [".default.tmp-k1ll3d"]
    assert sorted(os.listdir(folder.path)) == sorted([kept.sae_id, "default"])
    assert folder.read_default() == kept.sae_id


def test_the_default_marker_round_trips_and_is_none_when_absent(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")
    assert folder.read_default() is None

    folder.write_default("sae-0123456789ab")

    assert folder.read_default() == "sae-0123456789ab"
    assert os.listdir(folder.path) == ["default"]  # no temporary file left


def test_the_first_sae_of_a_folder_becomes_its_default_and_later_ones_only_when_asked(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")

    first = folder.register(stage(folder, fingerprint="first"))
    folder.register(stage(folder, fingerprint="second"))
    assert folder.read_default() == first.sae_id

    third = folder.register(stage(folder, fingerprint="third"), make_default=True)
    assert folder.read_default() == third.sae_id


def test_a_folder_without_a_marker_gets_its_newest_sae_marked_once(tmp_path: Path) -> None:
    # As `featurelens sae train` left folders before it wrote markers.
    folder = ModelsFolder(tmp_path / "models")
    old = folder.register(stage(folder, fingerprint="old"))
    older(old.path)
    newest = folder.register(stage(folder, fingerprint="newest"))
    (folder.path / "default").unlink()

    assert folder.settle_default() == newest.sae_id
    assert folder.read_default() == newest.sae_id
    later = folder.register(stage(folder, fingerprint="later"))
    assert folder.settle_default() == newest.sae_id  # a newer SAE does not move the default
    assert later.sae_id != newest.sae_id


def test_a_marker_naming_a_missing_sae_is_settled_on_the_newest(tmp_path: Path) -> None:
    folder = ModelsFolder(tmp_path / "models")
    assert folder.settle_default() is None  # no SAE, no marker written
    assert not folder.path.exists()
    only = folder.register(stage(folder))
    folder.write_default("sae-gone")

    assert folder.settle_default() == only.sae_id
    assert folder.read_default() == only.sae_id


def test_the_default_marker_refuses_an_id_that_is_no_folder_name(tmp_path: Path) -> None:
    with pytest.raises(SaeCheckpointError, match="not a valid sae_id"):
        ModelsFolder(tmp_path).write_default("../x")


@pytest.mark.parametrize(
    ("sae_id", "valid"),
    [
        ("sae-0a1b", True),
        ("my_sae.v2", True),
        (".hidden", False),
        ("a/b", False),
        ("..", False),
        ("", False),
        ("x" * 129, False),
    ],
)
def test_an_sae_id_names_one_visible_folder(sae_id: str, valid: bool) -> None:
    assert is_valid_sae_id(sae_id) is valid
