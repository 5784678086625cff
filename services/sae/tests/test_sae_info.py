"""SaeInfo from a registered checkpoint: its metrics.json as SaeMetrics, old files included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sae_testing import make_sae

from featurelens.sae import make_sae_id, save_sae
from featurelens.services.sae import convert
from featurelens.services.sae.registry import SaeRegistry
from featurelens.v1 import sae_pb2

#: metrics.json as train_sae wrote it before early stopping: no best_epoch, no stopped_early.
BEFORE_EARLY_STOPPING: dict[str, Any] = {
    "steps": 30,
    "samples": 960,
    "total_steps": 30,
    "completed": True,
    "final_train_nmse": 0.2,
    "final_val_nmse": 0.3,
    "dead_fraction": 0.1,
    "dense_fraction": 0.01,
    "val_curve": [[0, 10, 0.5], [1, 20, 0.4], [2, 30, 0.3]],
}


def metrics_of(tmp_path: Path, metrics: dict[str, Any] | None) -> sae_pb2.SaeMetrics:
    """The SaeMetrics the service reports for a checkpoint saved with ``metrics`` as metrics.json."""
    models = tmp_path / "models"
    sae = make_sae()
    save_sae(sae, models / make_sae_id(sae.cfg, None, "test"), data_fingerprint="test", metrics=metrics)
    [entry] = SaeRegistry(models).scan()
    return convert.sae_info(entry, is_default=True).metrics


def test_best_epoch_and_stopped_early_come_from_the_checkpoints_metrics(tmp_path: Path) -> None:
    metrics = metrics_of(tmp_path, BEFORE_EARLY_STOPPING | {"best_epoch": 1, "stopped_early": True})

    assert metrics.HasField("best_epoch")
    assert metrics.best_epoch == 1
    assert metrics.stopped_early


def test_an_sae_saved_before_early_stopping_reports_its_last_validated_epoch_and_no_early_stop(
    tmp_path: Path,
) -> None:
    metrics = metrics_of(tmp_path, BEFORE_EARLY_STOPPING)

    # Those runs kept their last epoch's weights: epoch 2, the last one in val_curve.
    assert metrics.HasField("best_epoch")
    assert metrics.best_epoch == 2
    assert not metrics.stopped_early
    assert metrics.val_nmse == 0.3


def test_an_sae_trained_without_a_validation_split_has_no_best_epoch(tmp_path: Path) -> None:
    no_split = {key: value for key, value in BEFORE_EARLY_STOPPING.items() if key != "final_val_nmse"}

    new = metrics_of(
        tmp_path / "new", no_split | {"val_curve": [], "best_epoch": None, "stopped_early": False}
    )
    old = metrics_of(tmp_path / "old", no_split | {"val_curve": []})

    for metrics in (new, old):
        assert not metrics.HasField("best_epoch")
        assert not metrics.stopped_early


def test_an_sae_without_metrics_still_loads_with_no_best_epoch(tmp_path: Path) -> None:
    metrics = metrics_of(tmp_path, None)

    assert not metrics.HasField("best_epoch")
    assert not metrics.stopped_early
    assert metrics.steps == 0
