"""SAE checkpoints: bit-exact round trips, ids, atomic replacement and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from featurelens.sae import (
    SaeCheckpointError,
    SaeConfig,
    SparseAutoencoder,
    TrainConfig,
    load_sae,
    make_sae_id,
    read_checkpoint,
    save_sae,
)

CFG = SaeConfig(d_in=16, num_latents=64, k=4)


def trained_looking_sae(dtype: torch.dtype = torch.float32) -> SparseAutoencoder:
    sae = SparseAutoencoder(CFG, dtype=dtype, seed=3)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=dtype))
    return sae


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_save_then_load_is_bit_exact(tmp_path: Path, dtype: torch.dtype) -> None:
    sae = trained_looking_sae(dtype)
    save_sae(sae, tmp_path / "ckpt", train_cfg=TrainConfig(), embedding_model="m", data_fingerprint="f" * 64)
    loaded = load_sae(tmp_path / "ckpt")
    assert loaded.cfg == sae.cfg
    assert loaded.dtype == dtype
    for name, tensor in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x = torch.randn(5, 16, dtype=dtype)
    assert torch.equal(loaded.encode(x).indices, sae.encode(x).indices)


def test_config_json_records_what_the_sae_is_and_how_it_was_made(tmp_path: Path) -> None:
    train_cfg = TrainConfig(epochs=3)
    save_sae(trained_looking_sae(), tmp_path / "c", train_cfg=train_cfg, embedding_model="all-MiniLM-L6-v2",
             data_fingerprint="ab" * 32, metrics={"final_train_nmse": 0.2})  # fmt: skip
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["format_version"] == 1
    assert config["sae"] == CFG.to_dict()
    assert config["train"] == train_cfg.to_dict()
    info = read_checkpoint(tmp_path / "c")
    assert info.sae_id == make_sae_id(CFG, train_cfg, "ab" * 32)
    assert info.embedding_model == "all-MiniLM-L6-v2"
    assert info.train_config == train_cfg
    assert info.metrics == {"final_train_nmse": 0.2}
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "config.json",
        "metrics.json",
        "model.safetensors",
    ]


def test_sae_id_is_deterministic_and_ignores_where_training_ran() -> None:
    sae_id = make_sae_id(CFG, TrainConfig(), "f" * 64)
    assert sae_id.startswith("sae-")
    assert len(sae_id) == 16
    assert make_sae_id(CFG, TrainConfig(device="cuda", checkpoint_every=5), "f" * 64) == sae_id
    assert make_sae_id(CFG, TrainConfig(lr=3e-4), "f" * 64) != sae_id
    assert make_sae_id(CFG, TrainConfig(), "e" * 64) != sae_id
    assert make_sae_id(SaeConfig(d_in=16, num_latents=64, k=8), TrainConfig(), "f" * 64) != sae_id


def test_saving_over_a_checkpoint_replaces_it_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    first, second = trained_looking_sae(), SparseAutoencoder(CFG, seed=9)
    save_sae(first, tmp_path / "c", metrics={"a": 1})
    save_sae(second, tmp_path / "c")
    assert torch.equal(load_sae(tmp_path / "c").W_dec, second.W_dec)
    assert not (tmp_path / "c" / "metrics.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    save_sae(trained_looking_sae(), tmp_path / "c")
    with pytest.raises(ValueError, match="Out of range float values"):
        save_sae(SparseAutoencoder(CFG, seed=9), tmp_path / "c", metrics={"nmse": float("nan")})
    assert torch.equal(load_sae(tmp_path / "c").W_dec, trained_looking_sae().W_dec)
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_loading_a_missing_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(SaeCheckpointError, match="No SAE checkpoint directory at"):
        load_sae(tmp_path / "nope")


def test_loading_without_model_file_says_which_file_is_missing(tmp_path: Path) -> None:
    save_sae(trained_looking_sae(), tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").unlink()
    with pytest.raises(SaeCheckpointError, match=r"has no model\.safetensors"):
        load_sae(tmp_path / "c")


def test_loading_an_unknown_format_version_is_refused(tmp_path: Path) -> None:
    save_sae(trained_looking_sae(), tmp_path / "c")
    config_path = tmp_path / "c" / "config.json"
    config = json.loads(config_path.read_text())
    config["format_version"] = 99
    config_path.write_text(json.dumps(config))
    with pytest.raises(
        SaeCheckpointError, match="format_version 99; this version of featurelens reads format_version 1"
    ):
        load_sae(tmp_path / "c")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "config.json").write_text("{not json"), "is not readable JSON"),
        (lambda d: (d / "config.json").write_text("[1]"), "must hold a JSON object"),
        (lambda d: (d / "config.json").unlink(), "has no config.json"),
        (lambda d: (d / "model.safetensors").write_bytes(b"garbage"), "is not a readable safetensors file"),
    ],
)
def test_malformed_checkpoints_raise_a_clear_error(tmp_path: Path, damage: object, message: str) -> None:
    save_sae(trained_looking_sae(), tmp_path / "c")
    assert callable(damage)
    damage(tmp_path / "c")
    with pytest.raises(SaeCheckpointError, match=message):
        load_sae(tmp_path / "c")


def test_weights_that_do_not_match_the_config_are_refused(tmp_path: Path) -> None:
    save_sae(trained_looking_sae(), tmp_path / "c")
    config_path = tmp_path / "c" / "config.json"
    config = json.loads(config_path.read_text())
    config["sae"]["num_latents"] = 32
    config_path.write_text(json.dumps(config))
    with pytest.raises(
        SaeCheckpointError, match=r"tensor 'W_enc' has shape \(64, 16\), the config says \(32, 16\)"
    ):
        load_sae(tmp_path / "c")


def test_input_noise_enters_the_sae_id_only_when_it_is_used() -> None:
    sae_id = make_sae_id(CFG, TrainConfig(), "f" * 64)
    assert make_sae_id(CFG, TrainConfig(input_noise=0.0), "f" * 64) == sae_id
    assert make_sae_id(CFG, TrainConfig(input_noise=0.04), "f" * 64) != sae_id
