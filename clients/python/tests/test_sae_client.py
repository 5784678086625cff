"""The SDK's sae sub-client against an in-test sae servicer on loopback (latent i = coordinate i)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import numpy as np
import pytest

from featurelens.client import (
    APIStatusError,
    ArrayFormatError,
    AsyncFeaturelensClient,
    FeaturelensClient,
    Intervention,
    InvalidArgumentError,
    NotFoundError,
    SaeConfig,
    SparseVector,
    convert,
)
from featurelens.v1 import sae_pb2

DEFAULT_SAE = "sae-32-k2"
VECTORS = np.array(
    [[0.1, 0.9, 0.0, 0.3, 0.0, 0.0, 0.7, 0.0], [0.5, 0.0, 0.0, 0.0, 0.2, 0.8, 0.0, 0.0]], dtype=np.float32
)


@pytest.fixture
def client(services_address: str) -> Iterator[FeaturelensClient]:
    with FeaturelensClient(services_address) as client:
        yield client


@pytest.fixture
async def aclient(services_address: str) -> AsyncIterator[AsyncFeaturelensClient]:
    async with AsyncFeaturelensClient(services_address) as client:
        yield client


def test_encode_returns_each_rows_latents_as_sparse_vectors(client: FeaturelensClient) -> None:
    latents = client.sae.encode(VECTORS)

    assert latents.sae_id == DEFAULT_SAE
    assert len(latents) == 2
    assert latents.rows[0].indices.tolist() == [1, 6]
    np.testing.assert_allclose(latents.rows[0].values, [0.9, 0.7])
    assert latents.rows[1].to_dict() == pytest.approx({5: 0.8, 0: 0.5})


def test_decode_accepts_sparse_vectors_and_index_value_pairs(client: FeaturelensClient) -> None:
    rows = [SparseVector(np.array([1, 6]), np.array([0.9, 0.7], dtype=np.float32)), ([5], [0.8])]

    decoded = client.sae.decode(rows, sae_id=DEFAULT_SAE)

    assert decoded.vectors.shape == (2, 8)
    np.testing.assert_allclose(decoded.vectors[0], [0, 0.9, 0, 0, 0, 0, 0.7, 0])
    assert decoded.vectors[1, 5] == pytest.approx(0.8)


def test_steer_sends_each_intervention_with_its_mode(client: FeaturelensClient) -> None:
    steered = client.sae.steer(
        VECTORS[0], [Intervention(weight=2.0, feature=3), Intervention(weight=0.0, feature=1, mode="clamp")]
    )

    np.testing.assert_allclose(steered.vector, [0.1, 0.0, 0.0, 2.3, 0.0, 0.0, 0.7, 0.0], rtol=1e-6)
    assert steered.latents_before.indices.tolist() == [1, 6]
    assert steered.latents_after.indices.tolist() == [3, 6]
    assert 0 < steered.cosine_to_original < 1


def test_an_intervention_needs_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Intervention(weight=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        Intervention(weight=1.0, feature=1, family_id="fam-1")


def test_decoder_directions_come_back_in_request_order(client: FeaturelensClient) -> None:
    directions = client.sae.decoder_directions([2, 0])

    assert directions.directions.shape == (2, 8)
    assert directions.directions[0].argmax() == 2
    assert directions.directions[1].argmax() == 0


def test_train_yields_progress_and_ends_with_the_new_sae(client: FeaturelensClient) -> None:
    messages = list(client.sae.train("/data/store", SaeConfig(num_latents=32, k=2), max_steps=4, seed=1))

    assert [m.progress.done for m in messages[:-1]] == [1, 2, 3, 4]
    assert all(m.result is None for m in messages[:-1])
    result = messages[-1].result
    assert result is not None
    assert result.sae_id == DEFAULT_SAE
    assert result.config == SaeConfig(num_latents=32, k=2, d_in=8)


def test_list_and_get_give_the_registry_entries(client: FeaturelensClient) -> None:
    [listed] = client.sae.list_saes()

    assert listed == client.sae.get_sae(DEFAULT_SAE)
    assert listed.is_default
    assert listed.metrics.steps == 30


def test_the_metrics_say_which_epoch_was_kept_and_whether_training_stopped_early(
    client: FeaturelensClient,
) -> None:
    metrics = client.sae.get_sae(DEFAULT_SAE).metrics

    assert metrics.best_epoch == 3
    assert metrics.stopped_early


def test_an_sae_without_a_best_epoch_reports_none_not_epoch_0() -> None:
    message = sae_pb2.SaeInfo(sae_id="sae-1", metrics=sae_pb2.SaeMetrics(steps=4))

    metrics = convert.sae_info(message).metrics

    assert metrics.best_epoch is None
    assert not metrics.stopped_early
    assert convert.sae_info(sae_pb2.SaeInfo(metrics=sae_pb2.SaeMetrics(best_epoch=0))).metrics.best_epoch == 0


async def test_sync_and_async_sae_clients_agree(
    client: FeaturelensClient, aclient: AsyncFeaturelensClient
) -> None:
    sync_latents, async_latents = client.sae.encode(VECTORS), await aclient.sae.encode(VECTORS)
    for a, b in zip(sync_latents.rows, async_latents.rows, strict=True):
        assert a.to_dict() == b.to_dict()
    np.testing.assert_array_equal(
        client.sae.decode(sync_latents.rows).vectors, (await aclient.sae.decode(async_latents.rows)).vectors
    )
    interventions = [Intervention(weight=-0.5, feature=6)]
    np.testing.assert_array_equal(
        client.sae.steer(VECTORS[1], interventions).vector,
        (await aclient.sae.steer(VECTORS[1], interventions)).vector,
    )
    np.testing.assert_array_equal(
        client.sae.decoder_directions([4]).directions, (await aclient.sae.decoder_directions([4])).directions
    )
    config = SaeConfig(num_latents=32, k=2)
    assert list(client.sae.train("/data/store", config)) == [
        m async for m in aclient.sae.train("/data/store", config)
    ]
    assert client.sae.list_saes() == await aclient.sae.list_saes()
    assert client.sae.get_sae(DEFAULT_SAE) == await aclient.sae.get_sae(DEFAULT_SAE)


def test_an_unknown_sae_is_a_not_found_error(client: FeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="no SAE with id 'nope'"):
        client.sae.get_sae("nope")


async def test_a_training_error_surfaces_while_iterating(aclient: AsyncFeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="no embedding store"):
        [m async for m in aclient.sae.train("missing", SaeConfig(num_latents=32, k=2))]


def test_a_vector_of_the_wrong_dimension_is_an_invalid_argument_error(client: FeaturelensClient) -> None:
    with pytest.raises(InvalidArgumentError, match="d_in is 8"):
        client.sae.encode(np.ones((1, 4), dtype=np.float32))


def test_a_one_dimensional_array_is_refused_locally(client: FeaturelensClient) -> None:
    with pytest.raises(ArrayFormatError, match="2-d array"):
        client.sae.encode(VECTORS[0])


def test_an_unexpected_server_error_is_internal_and_names_the_request_id_the_sdk_sent(
    client: FeaturelensClient,
) -> None:
    with pytest.raises(APIStatusError) as caught:
        client.sae.get_sae("boom")

    error = caught.value
    assert error.code == grpc.StatusCode.INTERNAL
    assert error.request_id is not None
    assert error.request_id in error.details
    assert "corrupt" not in error.details
