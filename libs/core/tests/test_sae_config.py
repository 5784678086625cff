"""SaeConfig / TrainConfig validation and JSON round trips."""

from __future__ import annotations

import subprocess
import sys

import pytest

from featurelens.sae import SaeConfig, SaeConfigError, TrainConfig


def test_defaults_resolve_k_aux_to_2k_and_multik_to_4k() -> None:
    cfg = SaeConfig(d_in=1536, num_latents=9216, k=64).validate()
    assert cfg.effective_k_aux == 128
    assert cfg.effective_multik_k == 256
    assert cfg.auxk_coef == pytest.approx(1 / 32)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"d_in": 0, "num_latents": 8, "k": 2}, "d_in must be a positive integer"),
        ({"d_in": 4, "num_latents": 0, "k": 2}, "num_latents must be a positive integer"),
        ({"d_in": 4, "num_latents": 8, "k": 0}, "k must be a positive integer"),
        ({"d_in": 4, "num_latents": 8, "k": 9}, "cannot exceed num_latents"),
        ({"d_in": 4, "num_latents": 8, "k": 2, "k_aux": -1}, "k_aux must be a non-negative integer"),
        ({"d_in": 4, "num_latents": 8, "k": 4, "multik_k": 2}, "multik_k (2) must be at least k (4)"),
        ({"d_in": 4, "num_latents": 64, "k": 4, "k_aux": 4294967295}, "k_aux (4294967295) cannot exceed"),
        (
            {"d_in": 4, "num_latents": 64, "k": 4, "multik_k": 1000},
            "multik_k (1000) cannot exceed num_latents (64)",
        ),
        (
            {"d_in": 4, "num_latents": 8, "k": 2, "auxk_coef": float("nan")},
            "auxk_coef must be a finite number",
        ),
    ],
)
def test_invalid_sae_config_raises_a_sentence_naming_the_field(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(SaeConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SaeConfig(**fields).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"batch_size": 1}, "batch_size must be at least 2"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"max_steps": 0}, "max_steps must be a positive integer or None"),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"grad_clip": -1.0}, "grad_clip must be a finite number >= 0"),
        ({"patience": -1}, "TrainConfig.patience must be a non-negative integer"),
        ({"patience": 1.5}, "TrainConfig.patience must be a non-negative integer"),
        ({"patience": True}, "TrainConfig.patience must be a non-negative integer"),
    ],
)
def test_invalid_train_config_raises_a_sentence_naming_the_field(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(SaeConfigError, match=message):
        TrainConfig(**fields).validate()  # type: ignore[arg-type]


def test_config_error_is_a_value_error() -> None:
    assert issubclass(SaeConfigError, ValueError)


def test_configs_round_trip_through_dicts() -> None:
    sae_cfg = SaeConfig(d_in=8, num_latents=32, k=4, k_aux=6, multik_coef=0.5)
    train_cfg = TrainConfig(epochs=3, max_steps=7, adam_betas=(0.8, 0.99), dtype="float64")
    assert SaeConfig.from_dict(sae_cfg.to_dict()) == sae_cfg
    assert TrainConfig.from_dict(train_cfg.to_dict()) == train_cfg


def test_unknown_config_fields_are_rejected() -> None:
    with pytest.raises(SaeConfigError, match="unknown fields"):
        SaeConfig.from_dict({"d_in": 4, "num_latents": 8, "k": 2, "expansion_factor": 4})


def test_the_zero_defaults_of_the_widths_stay_within_the_dictionary() -> None:
    cfg = SaeConfig(d_in=4, num_latents=8, k=6).validate()

    assert (cfg.effective_k_aux, cfg.effective_multik_k) == (8, 8)


def test_a_val_fraction_of_0_disables_validation_and_up_to_just_below_1_is_allowed() -> None:
    assert TrainConfig(val_fraction=0.0).validate().val_fraction == 0.0
    assert TrainConfig(val_fraction=0.9).validate().val_fraction == 0.9


def test_the_configs_load_without_torch_so_a_cli_can_read_their_defaults_quickly() -> None:
    code = "import sys, featurelens.sae; featurelens.sae.TrainConfig(); print('torch' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"


def test_the_rest_of_the_package_loads_on_first_use() -> None:
    import featurelens.sae as sae

    assert sae.train_sae.__module__ == "featurelens.sae.train"
    # Every exported name resolves (__all__ and the lazy table agree); dir() lists them.
    for name in sae.__all__:
        getattr(sae, name)
    assert dir(sae) == sorted(sae.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = sae.nope  # type: ignore[attr-defined]
