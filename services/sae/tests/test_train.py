"""Train: streamed progress, a registered result, cancellation, and where it may read data from."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc import aio
from sae_testing import Running, make_sae, matrix, save_checkpoint, serve_sae, vectors, write_store

from featurelens.embedding.store import EmbeddingStore
from featurelens.sae import TrainConfig, read_checkpoint
from featurelens.v1 import sae_pb2, sae_pb2_grpc

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


def tiny_request(path: str, **fields: object) -> sae_pb2.TrainRequest:
    """A run of a few steps on a few hundred rows; a field given as None is left unset."""
    options: dict[str, object] = {"batch_size": 32, "max_steps": 12, "epochs": 2, "seed": 3}
    chosen = {name: value for name, value in (options | fields).items() if value is not None}
    config = sae_pb2.SaeConfig(num_latents=64, k=4)
    return sae_pb2.TrainRequest(embeddings_path=path, config=config, **chosen)  # type: ignore[arg-type]


async def train(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, request: sae_pb2.TrainRequest
) -> list[sae_pb2.TrainResponse]:
    return [message async for message in stub.Train(request)]


async def train_failure(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, request: sae_pb2.TrainRequest
) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await train(stub, request)
    return caught.value


def staging_folders(models_dir: Path) -> list[Path]:
    return list(models_dir.glob(".train-*"))


async def test_train_streams_progress_and_ends_with_a_registered_sae(
    running: Running, train_roots: Path, models_dir: Path
) -> None:
    write_store(train_roots / "corpus")

    messages = await train(running.stub, tiny_request("corpus"))

    progress = messages[:-1]
    final = messages[-1]
    assert progress[0].progress.stage == "prepare"
    steps = [m.progress.done for m in progress if m.progress.stage == "train"]
    assert steps
    assert steps == sorted(steps)
    assert all(m.progress.total == 12 for m in progress[1:])
    assert final.progress.stage == "done"
    assert final.progress.done == 12
    sae_id = final.result.sae_id
    assert sae_id.startswith("sae-")
    assert final.result.config.num_latents == 64
    assert final.result.config.d_in == 32
    assert final.result.metrics.steps == 12
    assert final.result.embedding_model == "test-model"
    assert not final.result.is_default
    assert (models_dir / sae_id / "model.safetensors").is_file()
    assert not staging_folders(models_dir)

    listed = await running.stub.ListSaes(sae_pb2.ListSaesRequest())
    assert sae_id in [info.sae_id for info in listed.saes]
    got = await running.stub.GetSae(sae_pb2.GetSaeRequest(sae_id=sae_id))
    assert got.sae.metrics.val_nmse > 0
    assert got.sae.metrics.train_nmse > 0
    assert got.sae.metrics.samples == 12 * 32
    assert 0 <= got.sae.metrics.dead_fraction <= 1
    encoded = await running.stub.Encode(sae_pb2.EncodeRequest(sae_id=sae_id, vectors=matrix(vectors(2))))
    assert all(0 < len(row.indices) <= 4 for row in encoded.rows)


async def test_train_with_make_default_makes_the_new_sae_the_default(
    running: Running, train_roots: Path
) -> None:
    write_store(train_roots / "corpus")

    messages = await train(running.stub, tiny_request(str(train_roots / "corpus"), make_default=True))

    sae_id = messages[-1].result.sae_id
    assert messages[-1].result.is_default
    encoded = await running.stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(vectors(1))))
    assert encoded.sae_id == sae_id
    got = await running.stub.GetSae(sae_pb2.GetSaeRequest())
    assert got.sae.sae_id == sae_id


async def test_the_messages_lead_with_the_validation_nmse_and_the_result_names_the_kept_epoch(
    running: Running, train_roots: Path
) -> None:
    write_store(train_roots / "corpus")

    messages = await train(running.stub, tiny_request("corpus", max_steps=None, epochs=3))

    epoch_ends = [m for m in messages if m.progress.message.startswith("epoch ")]
    assert [m.epoch for m in epoch_ends] == [0, 1, 2]
    assert all(m.progress.message.startswith(f"epoch {m.epoch + 1} done · val nmse ") for m in epoch_ends)
    assert "(best " in epoch_ends[-1].progress.message
    steps = [m for m in messages if m.progress.message.startswith("step ")]
    assert steps
    assert all(" · val nmse " in m.progress.message for m in steps)
    final = messages[-1].progress.message
    assert final.index("val nmse") < final.index("train nmse")
    assert "kept epoch " in final
    assert messages[-1].val_nmse == messages[-1].result.metrics.val_nmse > 0


def write_overfitting_store(path: Path) -> None:
    """The constructed case of libs/core/tests/test_sae_early_stopping.py: a rank-8 signal under
    strong noise, 100 training rows for 256 latents; with its recipe (overfitting_request) the
    validation NMSE is lowest after epoch 12 (from 0) and worse for the three epochs after it."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((8, 32))
    rng.standard_normal((200, 32))  # keeps the random stream the case was found with
    rows = rng.standard_normal((200, 8)) @ base + rng.standard_normal((200, 32))
    with EmbeddingStore.create(path, "test-model", 32, sync=False) as store:
        store.append([f"doc-{i}" for i in range(200)], rows.astype(np.float32))


def overfitting_request(path: str, **fields: object) -> sae_pb2.TrainRequest:
    config = sae_pb2.SaeConfig(num_latents=256, k=4)
    settings: dict[str, object] = {"batch_size": 20, "learning_rate": 1e-2, "seed": 1, "val_fraction": 0.5}
    return sae_pb2.TrainRequest(embeddings_path=path, config=config, **(settings | fields))  # type: ignore[arg-type]


BEST_EPOCH = 12


async def test_patience_ends_the_run_early_and_the_metrics_name_the_kept_epoch(
    running: Running, train_roots: Path
) -> None:
    write_overfitting_store(train_roots / "noisy")

    messages = await train(running.stub, overfitting_request("noisy", epochs=40, patience=3))

    epoch_ends = [m.epoch for m in messages if m.progress.message.startswith("epoch ")]
    assert epoch_ends == list(range(BEST_EPOCH + 4))  # three epochs without a better one, of 40
    final = messages[-1]
    assert final.progress.message.endswith(
        f"kept epoch {BEST_EPOCH + 1} of {BEST_EPOCH + 4}, stopped early: no better val nmse for 3 epochs"
    )
    metrics = final.result.metrics
    assert metrics.HasField("best_epoch")
    assert metrics.best_epoch == BEST_EPOCH
    assert metrics.stopped_early
    got = await running.stub.GetSae(sae_pb2.GetSaeRequest(sae_id=final.result.sae_id))
    assert got.sae.metrics == metrics
    info = read_checkpoint(running.servicer.registry.models_dir / final.result.sae_id)
    assert info.train_config is not None
    assert info.train_config.patience == 3


async def test_patience_0_runs_every_epoch_and_still_keeps_the_best_one(
    running: Running, train_roots: Path
) -> None:
    write_overfitting_store(train_roots / "noisy")

    messages = await train(running.stub, overfitting_request("noisy", epochs=BEST_EPOCH + 4, patience=0))

    epoch_ends = [m.epoch for m in messages if m.progress.message.startswith("epoch ")]
    assert epoch_ends == list(range(BEST_EPOCH + 4))
    final = messages[-1]
    assert "stopped early" not in final.progress.message
    assert final.result.metrics.best_epoch == BEST_EPOCH
    assert not final.result.metrics.stopped_early
    info = read_checkpoint(running.servicer.registry.models_dir / final.result.sae_id)
    assert info.train_config is not None
    assert info.train_config.patience == 0


async def test_input_noise_is_trained_with_and_recorded_in_the_recipe(
    running: Running, train_roots: Path
) -> None:
    write_store(train_roots / "corpus")

    noisy = await train(running.stub, tiny_request("corpus", input_noise=0.25))
    clean = await train(running.stub, tiny_request("corpus"))

    info = read_checkpoint(running.servicer.registry.models_dir / noisy[-1].result.sae_id)
    assert info.train_config is not None
    assert info.train_config.input_noise == 0.25
    assert noisy[-1].result.sae_id != clean[-1].result.sae_id


async def test_an_unset_patience_is_the_core_default(running: Running, train_roots: Path) -> None:
    write_store(train_roots / "corpus")

    messages = await train(running.stub, tiny_request("corpus"))

    info = read_checkpoint(running.servicer.registry.models_dir / messages[-1].result.sae_id)
    assert info.train_config is not None
    assert info.train_config.patience == TrainConfig.patience


async def test_num_latents_0_sizes_the_run_from_the_store_with_the_core_size_rule(
    running: Running, train_roots: Path
) -> None:
    """300 rows of which 270 train: the rule's sparsity floor (32 * k = 128 latents for k=4) and
    200 epochs, the rule's cap (here only as many steps as max_steps allows)."""
    write_store(train_roots / "corpus")
    request = tiny_request("corpus", epochs=None)
    request.config.num_latents = 0

    messages = await train(running.stub, request)

    result = messages[-1].result
    assert result.config.num_latents == 128
    info = read_checkpoint(running.servicer.registry.models_dir / result.sae_id)
    assert info.train_config is not None
    assert info.train_config.epochs == 200


async def test_cancelling_train_stops_the_worker_and_registers_nothing(
    running: Running, train_roots: Path, models_dir: Path
) -> None:
    write_store(train_roots / "corpus")
    before = await running.stub.ListSaes(sae_pb2.ListSaesRequest())
    # Thousands of steps: far longer than the test waits.
    call = running.stub.Train(tiny_request("corpus", batch_size=8, max_steps=None, epochs=500))

    async for message in call:
        if message.progress.stage == "train":
            break
    call.cancel()

    job = running.servicer.training
    assert job is not None
    await asyncio.to_thread(job.thread.join, 30)
    assert not job.thread.is_alive()
    assert job.stop_requested.is_set()
    assert job.result().cancelled
    after = await running.stub.ListSaes(sae_pb2.ListSaesRequest())
    assert [s.sae_id for s in after.saes] == [s.sae_id for s in before.saes]
    assert not staging_folders(models_dir)


async def test_a_second_train_while_one_runs_is_refused(running: Running, train_roots: Path) -> None:
    write_store(train_roots / "corpus")
    call = running.stub.Train(tiny_request("corpus", batch_size=8, max_steps=None, epochs=500))
    async for message in call:
        if message.progress.stage == "train":
            break

    error = await train_failure(running.stub, tiny_request("corpus"))

    call.cancel()
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already in progress" in (error.details() or "")
    job = running.servicer.training
    assert job is not None
    await asyncio.to_thread(job.thread.join, 30)


@pytest.mark.parametrize(
    ("fields", "config", "words"),
    [
        ({}, {"num_latents": 64, "k": 65}, ["config.k (65)", "num_latents (64)"]),
        ({}, {"num_latents": 64, "k": 0}, ["config.k must be a positive integer"]),
        ({}, {"num_latents": 0, "k": 0}, ["config.k must be a positive integer"]),
        ({}, {"num_latents": 2_000_000, "k": 4}, ["2,000,000", "131,072", "MAX_NUM_LATENTS"]),
        # Issue 8: a client could start a training run of 1,000,000 latents.
        (
            {},
            {"num_latents": 1_000_000, "k": 4},
            ["config.num_latents 1,000,000 is above this server's limit of 131,072", "MAX_NUM_LATENTS"],
        ),
        ({}, {"d_in": 16, "num_latents": 64, "k": 4}, ["config.d_in is 16", "dim 32"]),
        ({}, {"num_latents": 64, "k": 4, "multik_k": 2}, ["config.multik_k (2)", "at least k (4)"]),
        ({}, {"num_latents": 64, "k": 4, "auxk_coef": float("nan")}, ["config.auxk_coef", "finite"]),
        # Issue 8, item 8: widths beyond the dictionary were trained and registered.
        ({}, {"num_latents": 64, "k": 4, "k_aux": 4294967295}, ["config.k_aux (4294967295)", "num_latents"]),
        ({}, {"num_latents": 64, "k": 4, "multik_k": 1000}, ["config.multik_k (1000)", "num_latents (64)"]),
        ({"val_fraction": 1.0}, {"num_latents": 64, "k": 4}, ["val_fraction must be in [0, 1)"]),
        ({"val_fraction": -0.1}, {"num_latents": 64, "k": 4}, ["val_fraction"]),
        ({"learning_rate": float("inf")}, {"num_latents": 64, "k": 4}, ["learning_rate", "inf"]),
        ({"learning_rate": 0.0}, {"num_latents": 64, "k": 4}, ["learning_rate must be a finite number > 0"]),
        ({"epochs": 0}, {"num_latents": 64, "k": 4}, ["epochs must be a positive integer"]),
        ({"epochs": 5000}, {"num_latents": 64, "k": 4}, ["epochs 5,000", "MAX_TRAIN_EPOCHS"]),
        ({"patience": 5000}, {"num_latents": 64, "k": 4}, ["patience 5,000", "1,000", "MAX_TRAIN_EPOCHS"]),
        ({"input_noise": 2.0}, {"num_latents": 64, "k": 4}, ["input_noise must be a number in [0, 1]"]),
        ({"input_noise": float("nan")}, {"num_latents": 64, "k": 4}, ["input_noise"]),
        ({"batch_size": 1}, {"num_latents": 64, "k": 4}, ["batch_size must be at least 2"]),
        ({"batch_size": 70_000}, {"num_latents": 64, "k": 4}, ["batch_size 70,000", "65,536"]),
        ({"max_steps": 0}, {"num_latents": 64, "k": 4}, ["max_steps must be a positive integer"]),
    ],
)
async def test_nonsense_training_settings_are_invalid_arguments(
    running: Running,
    train_roots: Path,
    fields: dict[str, object],
    config: dict[str, object],
    words: list[str],
) -> None:
    write_store(train_roots / "corpus")
    request = tiny_request("corpus", **fields)
    request.config.CopyFrom(sae_pb2.SaeConfig(**config))  # type: ignore[arg-type]

    error = await train_failure(running.stub, request)

    assert error.code() == INVALID, error.details()
    for word in words:
        assert word in (error.details() or "")


async def test_a_missing_store_inside_the_roots_is_not_found(running: Running, train_roots: Path) -> None:
    error = await train_failure(running.stub, tiny_request("no-such-store"))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-store" in (error.details() or "")


async def test_a_folder_that_is_not_a_store_is_an_invalid_argument(
    running: Running, train_roots: Path
) -> None:
    (train_roots / "plain").mkdir()

    error = await train_failure(running.stub, tiny_request("plain"))

    assert error.code() == INVALID
    assert "not an embedding store" in (error.details() or "")


@pytest.mark.parametrize("path", ["/etc", "/etc/passwd", "../outside", "corpus/../../outside", "/"])
async def test_paths_outside_the_train_data_roots_are_denied(
    running: Running, train_roots: Path, path: str
) -> None:
    write_store(train_roots.parent / "outside")
    write_store(train_roots / "corpus")

    error = await train_failure(running.stub, tiny_request(path))

    assert error.code() == DENIED
    assert "is outside the folders this server may read" in (error.details() or "")
    assert "FEATURELENS_SAE_TRAIN_DATA_ROOTS" in (error.details() or "")


async def test_a_symlink_out_of_the_roots_is_denied(running: Running, train_roots: Path) -> None:
    outside = write_store(train_roots.parent / "outside")
    (train_roots / "link").symlink_to(outside, target_is_directory=True)

    error = await train_failure(running.stub, tiny_request("link"))

    assert error.code() == DENIED


async def test_train_is_disabled_without_train_data_roots(models_dir: Path, tmp_path: Path) -> None:
    write_store(tmp_path / "corpus")
    async with serve_sae(models_dir) as running:
        error = await train_failure(running.stub, tiny_request(str(tmp_path / "corpus")))

    assert error.code() == DENIED
    assert "FEATURELENS_SAE_TRAIN_DATA_ROOTS" in (error.details() or "")


async def test_the_first_sae_trained_on_an_empty_registry_becomes_the_default(tmp_path: Path) -> None:
    roots = tmp_path / "stores"
    write_store(roots / "corpus")
    async with serve_sae(tmp_path / "models", train_data_roots=[roots]) as running:
        no_sae = await asyncio.gather(
            running.stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(vectors(1)))), return_exceptions=True
        )
        messages = await train(running.stub, tiny_request("corpus"))
        encoded = await running.stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(vectors(1))))

    assert isinstance(no_sae[0], aio.AioRpcError)
    assert no_sae[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no SAE is registered yet" in (no_sae[0].details() or "")
    assert messages[-1].result.is_default
    assert encoded.sae_id == messages[-1].result.sae_id


async def test_a_run_with_more_weights_than_the_server_allows_is_refused_naming_the_setting(
    models_dir: Path, train_roots: Path
) -> None:
    write_store(train_roots / "corpus")
    async with serve_sae(models_dir, train_data_roots=[train_roots], max_train_parameters=1000) as running:
        error = await train_failure(running.stub, tiny_request("corpus"))

    assert error.code() == INVALID
    assert (
        "config.num_latents 64 × d_in 32 is 2,048 weights per matrix, above this server's limit of 1,000"
        in (error.details() or "")
    )
    assert "FEATURELENS_SAE_MAX_TRAIN_PARAMETERS" in (error.details() or "")


async def test_a_train_without_make_default_leaves_the_default_of_a_folder_without_a_marker(
    tmp_path: Path, train_roots: Path
) -> None:
    # Issue 8, item 9: with no marker (as the CLI trainer left folders), the newest SAE was the
    # default, so this Train silently changed the SAE every client gets.
    models = tmp_path / "unmarked"
    older = models / save_checkpoint(models, make_sae(seed=1), "older") / "config.json"
    older.write_text(older.read_text().replace('"created": "20', '"created": "19'))  # a century older
    newest = save_checkpoint(models, make_sae(seed=2), "newest")
    write_store(train_roots / "corpus")
    async with serve_sae(models, train_data_roots=[train_roots], train_progress_interval_s=0.0) as running:
        messages = await train(running.stub, tiny_request("corpus", make_default=False))
        encoded = await running.stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(vectors(1))))
        got = await running.stub.GetSae(sae_pb2.GetSaeRequest())

    trained = messages[-1].result
    assert not trained.is_default
    assert encoded.sae_id == got.sae.sae_id == newest
    assert (models / "default").read_text().strip() == newest
    async with serve_sae(models) as restarted:
        assert (await restarted.stub.GetSae(sae_pb2.GetSaeRequest())).sae.sae_id == newest
