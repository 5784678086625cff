"""Early stopping: the run returns and saves the weights of its best validation epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from featurelens.sae import (
    EpochMetrics,
    SaeConfig,
    TrainCallbacks,
    TrainConfig,
    load_sae,
    read_checkpoint,
    train_sae,
)

SAE_CFG = SaeConfig(d_in=32, num_latents=256, k=4)


def overfitting_data() -> np.ndarray:
    """A rank-8 signal under strong noise, 100 training rows for 256 latents: the SAE learns the
    signal first and then memorises the training rows' noise, so with this seed the validation
    NMSE is lowest after epoch 12 of the first 15 and higher for the next three."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((8, 32))
    rng.standard_normal((200, 32))  # keeps the random stream the case was found with
    return (rng.standard_normal((200, 8)) @ base + rng.standard_normal((200, 32))).astype(np.float32)


def recipe(**fields: object) -> TrainConfig:
    return TrainConfig(**{"batch_size": 20, "lr": 1e-2, "seed": 1, "val_fraction": 0.5, **fields})  # type: ignore[arg-type]


def weights(sae: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in sae.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


BEST_EPOCH = 12


def test_early_stopping_keeps_the_checkpoint_of_the_best_validation_epoch(tmp_path: Path) -> None:
    data = overfitting_data()
    result = train_sae(data, SAE_CFG, recipe(epochs=15, patience=0), checkpoint_dir=tmp_path / "run")
    val = [v for _, _, v in result.val_curve]
    # The constructed case: validation gets worse after its best epoch.
    assert int(np.argmin(val)) == BEST_EPOCH
    assert val[-1] > val[BEST_EPOCH]
    assert result.best_epoch == BEST_EPOCH
    assert result.best_step == result.val_curve[BEST_EPOCH][1]
    assert not result.stopped_early
    assert result.steps == result.total_steps
    assert result.final_val is not None
    assert result.final_val.nmse == pytest.approx(val[BEST_EPOCH], rel=1e-9)
    # The weights are exactly those of a run that ended at the best epoch.
    until_best = train_sae(data, SAE_CFG, recipe(epochs=BEST_EPOCH + 1, patience=0))
    assert_same_weights(weights(result.sae), weights(until_best.sae))
    # ... and so is the saved checkpoint, whose metrics say which epoch it is.
    assert_same_weights(weights(load_sae(tmp_path / "run")), weights(until_best.sae))
    metrics = read_checkpoint(tmp_path / "run").metrics
    assert metrics is not None
    assert metrics["best_epoch"] == BEST_EPOCH
    assert metrics["final_val_nmse"] == pytest.approx(val[BEST_EPOCH], rel=1e-9)


def test_patience_stops_training_after_that_many_epochs_without_a_better_validation_nmse() -> None:
    data = overfitting_data()
    epochs: list[EpochMetrics] = []
    result = train_sae(
        data,
        SAE_CFG,
        recipe(epochs=40, patience=3),
        callbacks=TrainCallbacks(on_epoch_end=epochs.append),
    )
    assert result.stopped_early
    assert result.best_epoch == BEST_EPOCH
    # Epochs 13, 14 and 15 are worse than epoch 12, so the run ends after epoch 15 of 40.
    assert [m.epoch for m in epochs] == list(range(BEST_EPOCH + 4))
    assert result.steps == epochs[-1].step < result.total_steps
    assert epochs[-1].best_epoch == BEST_EPOCH
    assert epochs[-1].best_val_nmse == pytest.approx(epochs[BEST_EPOCH].val_nmse)
    until_best = train_sae(data, SAE_CFG, recipe(epochs=BEST_EPOCH + 1, patience=0))
    assert_same_weights(weights(result.sae), weights(until_best.sae))


def test_without_a_validation_split_there_is_no_early_stopping_and_the_last_weights_are_kept() -> None:
    data = overfitting_data()
    no_split = train_sae(data, SAE_CFG, recipe(epochs=3, patience=1, val_fraction=0.0))
    assert no_split.best_epoch is None
    assert not no_split.stopped_early
    assert no_split.steps == no_split.total_steps


def test_resuming_after_the_best_weights_were_restored_continues_from_the_last_step(tmp_path: Path) -> None:
    data = overfitting_data()
    train_sae(data, SAE_CFG, recipe(epochs=14, patience=0), checkpoint_dir=tmp_path / "first")
    resumed = train_sae(
        data,
        SAE_CFG,
        recipe(epochs=16, patience=0),
        resume_from=tmp_path / "first",
        checkpoint_dir=tmp_path / "r",
    )
    straight = train_sae(data, SAE_CFG, recipe(epochs=16, patience=0))
    assert resumed.best_epoch == straight.best_epoch
    assert resumed.val_curve == straight.val_curve
    assert_same_weights(weights(resumed.sae), weights(straight.sae))


def test_the_checkpoint_metrics_say_which_epoch_was_kept_and_that_patience_ended_the_run(
    tmp_path: Path,
) -> None:
    data = overfitting_data()
    result = train_sae(data, SAE_CFG, recipe(epochs=40, patience=3), checkpoint_dir=tmp_path / "run")

    metrics = read_checkpoint(tmp_path / "run").metrics
    assert metrics is not None
    assert metrics["best_epoch"] == result.best_epoch == BEST_EPOCH
    assert metrics["stopped_early"] is True
    assert metrics["completed"] is True
    # The last validation is the end of the last epoch run: three past the best one.
    assert metrics["val_curve"][-1][0] == BEST_EPOCH + 3


def test_without_a_validation_split_the_checkpoint_metrics_name_no_best_epoch(tmp_path: Path) -> None:
    data = overfitting_data()
    train_sae(data, SAE_CFG, recipe(epochs=3, patience=1, val_fraction=0.0), checkpoint_dir=tmp_path / "run")

    metrics = read_checkpoint(tmp_path / "run").metrics
    assert metrics is not None
    assert metrics["best_epoch"] is None
    assert metrics["stopped_early"] is False
    assert metrics["val_curve"] == []
