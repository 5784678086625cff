"""TrainingJob: the library's training loop in a thread, its progress throttled onto the event loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featurelens.sae import EpochMetrics, SaeConfig, SaeConfigError, StepMetrics, TrainConfig
from featurelens.services.sae.training import TrainingJob


def rows(count: int = 200, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((count, dim)).astype(np.float32)


def job(tmp_path: Path, embeddings: np.ndarray, interval_s: float, **train: object) -> TrainingJob:
    return TrainingJob(
        embeddings,
        SaeConfig(d_in=embeddings.shape[1], num_latents=32, k=4),
        TrainConfig(batch_size=16, **train),  # type: ignore[arg-type]
        checkpoint_dir=tmp_path / ".train-test",
        embedding_model="test-model",
        progress_interval_s=interval_s,
    )


async def test_step_reports_are_throttled_but_epoch_ends_and_the_last_step_always_arrive(
    tmp_path: Path,
) -> None:
    training = job(tmp_path, rows(), interval_s=3600.0, epochs=3)
    training.start()

    events = [event async for event in training.events()]

    steps = [e for e in events if isinstance(e, StepMetrics)]
    epochs = [e for e in events if isinstance(e, EpochMetrics)]
    result = training.result()
    assert [e.epoch for e in epochs] == [0, 1, 2]
    # The first report goes out at once, the rest wait for the interval, the last step always.
    assert [s.step for s in steps] == [5, result.total_steps]
    assert not result.cancelled
    assert (tmp_path / ".train-test" / "model.safetensors").is_file()


async def test_a_cancelled_job_ends_its_thread_and_removes_its_checkpoint(tmp_path: Path) -> None:
    training = job(tmp_path, rows(), interval_s=0.0, epochs=1000)
    training.start()

    async for _ in training.events():
        training.cancel()
    training.thread.join(timeout=30)

    assert not training.running
    assert training.result().cancelled
    assert not (tmp_path / ".train-test").exists()


async def test_a_library_error_is_raised_by_result(tmp_path: Path) -> None:
    training = job(tmp_path, rows(count=1), interval_s=0.0)
    training.start()

    assert [event async for event in training.events()] == []
    with pytest.raises(SaeConfigError, match="at least 2 training rows"):
        training.result()
    assert not (tmp_path / ".train-test").exists()
