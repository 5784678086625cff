"""Encode, Decode and DecoderDirections through gRPC agree with the library."""

from __future__ import annotations

import numpy as np
import torch
from sae_testing import NUM_LATENTS, K, matrix, rows_of, vectors

from featurelens.sae import SparseAutoencoder
from featurelens.v1 import common_pb2, sae_pb2, sae_pb2_grpc


async def test_encode_keeps_at_most_k_non_negative_latents_per_row_largest_first(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, sae_id: str
) -> None:
    reply = await stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(vectors(20))))

    assert reply.sae_id == sae_id
    assert len(reply.rows) == 20
    for row in reply.rows:
        values = np.asarray(row.values)
        assert 0 < len(row.indices) <= K
        assert len(set(row.indices)) == len(row.indices)
        assert all(index < NUM_LATENTS for index in row.indices)
        assert (values > 0).all()
        assert (np.diff(values) <= 0).all()


async def test_encode_equals_the_library_encode(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, sae: SparseAutoencoder
) -> None:
    x = vectors(12, seed=3)
    reply = await stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(x)))

    with torch.no_grad():
        expected = sae.encode(torch.from_numpy(x))
    for row, values, indices in zip(
        reply.rows, expected.values.numpy(), expected.indices.numpy(), strict=True
    ):
        keep = values > 0
        assert list(row.indices) == indices[keep].tolist()
        np.testing.assert_array_equal(np.asarray(row.values, dtype=np.float32), values[keep])


async def test_encode_by_id_uses_that_sae(stub: sae_pb2_grpc.SaeServiceAsyncStub, other_id: str) -> None:
    x = vectors(4)
    default = await stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(x)))
    other = await stub.Encode(sae_pb2.EncodeRequest(sae_id=other_id, vectors=matrix(x)))

    assert other.sae_id == other_id
    assert [list(r.indices) for r in other.rows] != [list(r.indices) for r in default.rows]


async def test_decode_equals_the_library_decode(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, sae: SparseAutoencoder
) -> None:
    rows = [
        common_pb2.SparseVector(indices=[3, 17, 200], values=[1.5, 0.25, 2.0]),
        common_pb2.SparseVector(indices=[255], values=[0.5]),
        common_pb2.SparseVector(),
    ]
    reply = await stub.Decode(sae_pb2.DecodeRequest(rows=rows))

    decoded = rows_of(reply.vectors)
    assert decoded.shape == (3, sae.d_in)
    with torch.no_grad():
        first = sae.decode(torch.tensor([[1.5, 0.25, 2.0]]), torch.tensor([[3, 17, 200]]))[0].numpy()
        second = sae.decode(torch.tensor([[0.5]]), torch.tensor([[255]]))[0].numpy()
    np.testing.assert_allclose(decoded[0], first, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(decoded[1], second, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(decoded[2], sae.b_pre.detach().numpy())


async def test_decode_of_encoded_rows_gives_the_library_reconstruction(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, sae: SparseAutoencoder
) -> None:
    x = vectors(8, seed=5)
    encoded = await stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(x)))
    decoded = await stub.Decode(sae_pb2.DecodeRequest(rows=encoded.rows))

    with torch.no_grad():
        code = sae.encode(torch.from_numpy(x))
        expected = sae.decode(code.values, code.indices).numpy()
    np.testing.assert_allclose(rows_of(decoded.vectors), expected, rtol=1e-5, atol=1e-6)


async def test_decoder_directions_are_unit_norm_and_equal_the_library_ones_in_request_order(
    stub: sae_pb2_grpc.SaeServiceAsyncStub, sae: SparseAutoencoder, sae_id: str
) -> None:
    features = [200, 0, 17, 17]
    reply = await stub.DecoderDirections(sae_pb2.DecoderDirectionsRequest(features=features))

    directions = rows_of(reply.directions)
    assert reply.sae_id == sae_id
    assert directions.shape == (4, sae.d_in)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(directions, sae.decoder_directions(features).detach().numpy())
