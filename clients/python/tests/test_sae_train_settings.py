"""Training settings through the SDK to a real sae server mean what featurelens-core says they mean.

None leaves a setting to the server, which uses the core default; a value is sent as is, so
``auxk_coef=0`` switches AuxK off and ``val_fraction=0`` trains without validation, exactly as in
``featurelens sae train`` and ``TrainConfig`` in a notebook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from featurelens.client import FeaturelensClient, FileTrainSource, SaeConfig, TrainProgress
from featurelens.client.convert import train_request, train_source
from featurelens.embedding.store import EmbeddingStore
from featurelens.kit.server import Servicer
from featurelens.sae import SaeConfig as CoreSaeConfig
from featurelens.sae import TrainConfig, read_checkpoint, train_sae
from featurelens.services.sae.registry import SaeRegistry
from featurelens.services.sae.servicer import SaeServicer

D_IN = 16
ROWS = 200


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedding store of 200 rows near a 4-dimensional subspace, inside the train data root."""
    path = tmp_path_factory.mktemp("stores") / "corpus"
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((ROWS, 4)) @ rng.standard_normal((4, D_IN)) + 0.05 * rng.standard_normal(
        (ROWS, D_IN)
    )
    with EmbeddingStore.create(path, "test-model", D_IN, sync=False) as created:
        created.append([f"doc-{i}" for i in range(ROWS)], rows.astype(np.float32))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def client(
    store: Path, models: Path, serve: Callable[[Sequence[Servicer]], str]
) -> Iterator[FeaturelensClient]:
    """The SDK against the real sae servicer, allowed to train from the store's folder."""
    address = serve([SaeServicer(SaeRegistry(models), train_data_roots=[store.parent])])
    with FeaturelensClient(address) as client:
        yield client


def finished(messages: list[TrainProgress]) -> TrainProgress:
    assert messages[-1].result is not None
    return messages[-1]


def test_settings_left_none_are_not_sent() -> None:
    request = train_request(
        "store",
        SaeConfig(num_latents=64, k=4),
        batch_size=None,
        learning_rate=None,
        epochs=None,
        max_steps=None,
        seed=None,
        val_fraction=None,
        patience=None,
        make_default=False,
    )

    assert [field.name for field, _ in request.ListFields()] == ["embeddings_path", "config"]
    assert [field.name for field, _ in request.config.ListFields()] == ["num_latents", "k"]


def test_zeros_are_sent_as_zeros() -> None:
    request = train_request(
        "store",
        SaeConfig(num_latents=64, k=4, auxk_coef=0.0),
        batch_size=None,
        learning_rate=None,
        epochs=None,
        max_steps=None,
        seed=0,
        val_fraction=0.0,
        patience=0,
        make_default=False,
    )

    assert request.HasField("val_fraction")
    assert request.HasField("seed")
    assert request.HasField("patience")
    assert request.config.HasField("auxk_coef")


def test_auxk_coef_0_and_val_fraction_0_train_without_auxk_and_without_validation(
    client: FeaturelensClient, store: Path, models: Path
) -> None:
    config = SaeConfig(num_latents=64, k=4, auxk_coef=0.0, dead_steps_threshold=1)

    messages = list(client.sae.train(str(store), config, val_fraction=0.0, batch_size=50))

    done = finished(messages)
    assert done.result is not None
    assert done.result.config.auxk_coef == 0.0
    # With AuxK on, these settings give an AuxK loss of about 1.5 from the second step on.
    assert all(message.auxk_loss == 0.0 for message in messages)
    assert all(message.val_nmse == -1.0 for message in messages)  # no validation split, ever
    assert done.result.metrics.samples == ROWS  # one epoch over every row: none held out
    checkpoint = read_checkpoint(models / done.result.sae_id)
    assert checkpoint.sae_config.auxk_coef == 0.0
    assert checkpoint.train_config is not None
    assert checkpoint.train_config.val_fraction == 0.0
    assert checkpoint.metrics is not None
    assert "final_val_nmse" not in checkpoint.metrics
    assert done.result.metrics.best_epoch is None  # no validation split chose an epoch
    assert not done.result.metrics.stopped_early


def test_a_train_that_sets_nothing_trains_with_the_core_defaults_like_a_notebook(
    client: FeaturelensClient, store: Path, models: Path
) -> None:
    # 200 rows and the default batch of 1024: one step per epoch, one epoch.
    messages = list(client.sae.train(str(store), SaeConfig(num_latents=64, k=4)))

    done = finished(messages)
    assert done.result is not None
    core = CoreSaeConfig(d_in=D_IN, num_latents=64, k=4)
    assert done.result.config == SaeConfig(
        num_latents=64,
        k=4,
        d_in=D_IN,
        k_aux=core.k_aux,
        auxk_coef=core.auxk_coef,
        dead_steps_threshold=core.dead_steps_threshold,
        multik_coef=core.multik_coef,
        multik_k=core.multik_k,
    )
    assert done.result.metrics.val_nmse > 0  # the default holds a validation split out
    checkpoint = read_checkpoint(models / done.result.sae_id)
    assert checkpoint.sae_config == core
    assert checkpoint.train_config == TrainConfig()
    with EmbeddingStore.open(store, read_only=True) as opened:
        vectors = np.array(opened.vectors())
    notebook = train_sae(vectors, core, TrainConfig())
    assert notebook.sae_id == done.result.sae_id  # same settings, same data: the same SAE id


def test_float_settings_train_as_typed_not_as_their_float32_neighbours(
    client: FeaturelensClient, store: Path, models: Path
) -> None:
    messages = list(
        client.sae.train(
            str(store), SaeConfig(num_latents=64, k=4), learning_rate=3e-4, val_fraction=0.2, max_steps=2
        )
    )

    done = finished(messages)
    assert done.result is not None
    checkpoint = read_checkpoint(models / done.result.sae_id)
    assert checkpoint.train_config == TrainConfig(lr=3e-4, val_fraction=0.2, max_steps=2)


def test_patience_0_is_sent_and_the_result_names_the_epoch_it_kept(
    client: FeaturelensClient, store: Path, models: Path
) -> None:
    # 180 training rows in batches of 60: three steps per epoch, every epoch run.
    messages = list(
        client.sae.train(str(store), SaeConfig(num_latents=64, k=4), batch_size=60, epochs=3, patience=0)
    )

    done = finished(messages)
    assert done.result is not None
    checkpoint = read_checkpoint(models / done.result.sae_id)
    assert checkpoint.train_config == TrainConfig(batch_size=60, epochs=3, patience=0)
    assert checkpoint.metrics is not None
    assert done.result.metrics.best_epoch == checkpoint.metrics["best_epoch"]
    assert done.result.metrics.best_epoch in (0, 1, 2)
    assert not done.result.metrics.stopped_early
    assert done.result.metrics.steps == 9


def test_input_noise_is_sent_and_trained_with(client: FeaturelensClient, store: Path, models: Path) -> None:
    messages = list(
        client.sae.train(str(store), SaeConfig(num_latents=64, k=4), batch_size=60, epochs=2, input_noise=0.5)
    )

    done = finished(messages)
    assert done.result is not None
    checkpoint = read_checkpoint(models / done.result.sae_id)
    assert checkpoint.train_config == TrainConfig(batch_size=60, epochs=2, input_noise=0.5)


def test_an_sae_trains_from_a_npy_file_and_from_the_same_rows_in_a_store_gets_the_same_id(
    client: FeaturelensClient, store: Path
) -> None:
    rows = EmbeddingStore.open(store, read_only=True).vectors()
    npy = store.parent / "rows.npy"
    np.save(npy, np.asarray(rows, dtype=np.float32))
    config = SaeConfig(num_latents=64, k=4)

    from_file = finished(list(client.sae.train(FileTrainSource(str(npy)), config, batch_size=60, epochs=1)))
    from_store = finished(list(client.sae.train(str(store), config, batch_size=60, epochs=1)))

    assert from_file.result is not None
    assert from_store.result is not None
    assert from_file.result.sae_id == from_store.result.sae_id


def test_a_training_source_of_another_type_is_refused_before_sending() -> None:
    with pytest.raises(TypeError, match="QdrantTrainSource or a FileTrainSource"):
        train_source(3)  # type: ignore[arg-type]
