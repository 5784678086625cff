"""Steer: additive shifts along decoder directions, clamps that keep the reconstruction error."""

from __future__ import annotations

import numpy as np
import torch
from sae_testing import vectors

from featurelens.sae import SparseAutoencoder
from featurelens.steering import MAX_STEER_WEIGHT
from featurelens.v1 import common_pb2, sae_pb2, sae_pb2_grpc
from featurelens.wire.arrays import from_dense_vector, to_dense_vector

ADDITIVE = common_pb2.STEER_MODE_ADDITIVE
CLAMP = common_pb2.STEER_MODE_CLAMP


def direction(sae: SparseAutoencoder, feature: int) -> np.ndarray:
    return sae.decoder_directions([feature])[0].detach().numpy()


def reconstruction(sae: SparseAutoencoder, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        code = sae.encode(torch.from_numpy(x)[None])
        return sae.decode(code.values, code.indices)[0].numpy()


async def test_zero_additive_weights_return_the_input_bit_for_bit(
    stub: sae_pb2_grpc.SaeServiceAsyncStub,
) -> None:
    x = vectors(1, seed=7)[0]
    request = sae_pb2.SteerRequest(
        vector=to_dense_vector(x),
        interventions=[
            common_pb2.Intervention(feature=5, weight=0.0),
            common_pb2.Intervention(feature=9, weight=-0.0, mode=ADDITIVE),
        ],
    )
    reply = await stub.Steer(request)

    assert reply.vector.data == request.vector.data
    assert reply.cosine_to_original == 1.0
    assert list(reply.latents_after.indices) == list(reply.latents_before.indices)


async def test_additive_steering_adds_the_weighted_unit_decoder_directions(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, sae: SparseAutoencoder
) -> None:
    x = vectors(1, seed=8)[0]
    reply = await stub.Steer(
        sae_pb2.SteerRequest(
            vector=to_dense_vector(x),
            interventions=[
                common_pb2.Intervention(feature=40, weight=2.5),
                common_pb2.Intervention(feature=41, weight=-1.0, mode=ADDITIVE),
            ],
        )
    )

    steered = from_dense_vector(reply.vector)
    expected_shift = 2.5 * direction(sae, 40) - 1.0 * direction(sae, 41)
    np.testing.assert_allclose(steered - x, expected_shift, atol=1e-5)
    cosine = float(np.dot(x, steered) / (np.linalg.norm(x) * np.linalg.norm(steered)))
    assert abs(reply.cosine_to_original - cosine) < 1e-5


async def test_a_large_additive_weight_makes_the_feature_fire(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, sae: SparseAutoencoder
) -> None:
    x = vectors(1, seed=9)[0]
    x /= np.linalg.norm(x)  # queries are unit-norm, so the largest weight allowed dominates them
    before = await stub.Steer(sae_pb2.SteerRequest(vector=to_dense_vector(x)))
    feature = next(f for f in range(256) if f not in before.latents_before.indices)

    reply = await stub.Steer(
        sae_pb2.SteerRequest(
            vector=to_dense_vector(x),
            interventions=[common_pb2.Intervention(feature=feature, weight=MAX_STEER_WEIGHT)],
        )
    )

    assert feature not in reply.latents_before.indices
    assert reply.latents_after.indices[0] == feature
    assert reply.cosine_to_original < 0.9


async def test_clamp_sets_the_latent_and_keeps_the_reconstruction_error(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, sae: SparseAutoencoder
) -> None:
    x = vectors(1, seed=10)[0]
    plain = await stub.Steer(sae_pb2.SteerRequest(vector=to_dense_vector(x)))
    active = list(plain.latents_before.indices)
    boosted = active[-1]
    silenced = active[0]

    reply = await stub.Steer(
        sae_pb2.SteerRequest(
            vector=to_dense_vector(x),
            interventions=[
                common_pb2.Intervention(feature=boosted, weight=6.0, mode=CLAMP),
                common_pb2.Intervention(feature=silenced, weight=0.0, mode=CLAMP),
            ],
        )
    )

    steered = from_dense_vector(reply.vector)
    # steered = decode(code with the clamps) + (x − x̂): the error term is carried over unchanged.
    values = dict(zip(plain.latents_before.indices, plain.latents_before.values, strict=True))
    values[boosted] = 6.0
    values[silenced] = 0.0
    with torch.no_grad():
        clamped = sae.decode(torch.tensor([list(values.values())]), torch.tensor([list(values)]))[0].numpy()
    np.testing.assert_allclose(steered - clamped, x - reconstruction(sae, x), atol=1e-5)
    after = dict(zip(reply.latents_after.indices, reply.latents_after.values, strict=True))
    # Re-encoding is not an exact inverse of decoding, so the clamped latent comes back near 6.
    assert abs(after[boosted] - 6.0) < 1.0
    assert silenced not in after
    assert reply.cosine_to_original < 1.0


async def test_clamp_on_a_latent_the_input_lacks_makes_it_fire_near_the_value(
    stub: sae_pb2_grpc.SaeServiceAsyncStub,
) -> None:
    x = vectors(1, seed=11)[0]
    plain = await stub.Steer(sae_pb2.SteerRequest(vector=to_dense_vector(x)))
    feature = next(f for f in range(256) if f not in plain.latents_before.indices)

    reply = await stub.Steer(
        sae_pb2.SteerRequest(
            vector=to_dense_vector(x),
            interventions=[common_pb2.Intervention(feature=feature, weight=8.0, mode=CLAMP)],
        )
    )

    after = dict(zip(reply.latents_after.indices, reply.latents_after.values, strict=True))
    assert feature in after
    assert abs(after[feature] - 8.0) < 1.0


async def test_mixed_modes_apply_the_clamps_first_then_the_additive_shifts(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, sae: SparseAutoencoder
) -> None:
    x = vectors(1, seed=12)[0]
    clamp = common_pb2.Intervention(feature=3, weight=4.0, mode=CLAMP)
    clamped_only = await stub.Steer(sae_pb2.SteerRequest(vector=to_dense_vector(x), interventions=[clamp]))
    mixed = await stub.Steer(
        sae_pb2.SteerRequest(
            vector=to_dense_vector(x),
            interventions=[common_pb2.Intervention(feature=77, weight=1.5), clamp],
        )
    )

    difference = from_dense_vector(mixed.vector) - from_dense_vector(clamped_only.vector)
    np.testing.assert_allclose(difference, 1.5 * direction(sae, 77), atol=1e-5)
