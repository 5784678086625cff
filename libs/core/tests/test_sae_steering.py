"""Steering primitives: additive shifts along decoder directions and clamping in the sparse code."""

from __future__ import annotations

import pytest
import torch

from featurelens.sae import SaeConfig, SparseAutoencoder, steer_additive, steer_clamp


@pytest.fixture
def sae() -> SparseAutoencoder:
    model = SparseAutoencoder(SaeConfig(d_in=16, num_latents=64, k=4), seed=0)
    with torch.no_grad():
        model.b_pre.copy_(0.1 * torch.randn(16, generator=torch.Generator().manual_seed(1)))
    return model


def embeddings(n: int = 5) -> torch.Tensor:
    return torch.randn(n, 16, generator=torch.Generator().manual_seed(2))


def test_additive_steering_with_zero_weights_returns_x_bit_exactly(sae: SparseAutoencoder) -> None:
    x = embeddings()
    x[0, 0] = -0.0
    out = steer_additive(sae, x, [3, 10], [0.0, 0.0])
    assert torch.equal(out, x)
    assert out.data_ptr() != x.data_ptr()
    assert torch.equal(out.view(torch.int32), x.view(torch.int32))  # -0.0 stays -0.0
    assert torch.equal(steer_additive(sae, x[0], [], []), x[0])


def test_additive_steering_adds_weighted_unit_decoder_directions(sae: SparseAutoencoder) -> None:
    x = embeddings()
    out = steer_additive(sae, x, [3, 10], [2.0, -0.5])
    expected = x + 2.0 * sae.W_dec[3].detach() - 0.5 * sae.W_dec[10].detach()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(steer_additive(sae, x[1], [3], [1.0]), x[1] + sae.W_dec[3].detach())


def test_clamp_keeps_the_reconstruction_error(sae: SparseAutoencoder) -> None:
    x = embeddings()
    code = sae.encode(x)
    error = x - sae.decode(code.values, code.indices)
    feature = int(code.indices[0, 0])
    out = steer_clamp(sae, x, [feature], [5.0])
    # out = decode(steered code) + error: what the SAE does not capture survives the steer.
    steered_values = code.values.masked_fill(code.indices == feature, 0.0)
    steered = sae.decode(
        torch.cat([steered_values, torch.full((5, 1), 5.0)], 1),
        torch.cat([code.indices, torch.full((5, 1), feature)], 1),
    )
    torch.testing.assert_close(out, steered + error)


def test_clamp_to_current_values_changes_nothing(sae: SparseAutoencoder) -> None:
    x = embeddings(1)
    code = sae.encode(x)
    out = steer_clamp(sae, x[0], code.indices[0, :2].tolist(), code.values[0, :2].tolist())
    torch.testing.assert_close(out, x[0], rtol=0, atol=1e-6)


def test_clamp_adds_an_absent_feature_and_keeps_the_others(sae: SparseAutoencoder) -> None:
    x = embeddings(1)
    code = sae.encode(x)
    absent = next(i for i in range(64) if i not in code.indices[0].tolist())
    out = steer_clamp(sae, x, [absent], [3.0])
    torch.testing.assert_close(out, x + 3.0 * sae.W_dec[absent].detach(), rtol=0, atol=1e-5)


def test_clamping_to_zero_removes_the_feature(sae: SparseAutoencoder) -> None:
    x = embeddings(1)
    code = sae.encode(x)
    top, value = int(code.indices[0, 0]), float(code.values[0, 0].detach())
    out = steer_clamp(sae, x, [top], [0.0])
    torch.testing.assert_close(out, x - value * sae.W_dec[top].detach(), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("features", "amounts", "message"),
    [
        ([1, 2], [1.0], "Got 2 features but 1 weights"),
        ([64], [1.0], r"Feature indices must be in \[0, 64\)"),
        ([1], [float("inf")], "must be finite"),
    ],
)
def test_bad_steering_requests_are_rejected(
    sae: SparseAutoencoder, features: list[int], amounts: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        steer_additive(sae, embeddings(), features, amounts)


def test_clamping_a_feature_twice_is_rejected(sae: SparseAutoencoder) -> None:
    with pytest.raises(ValueError, match="clamped once"):
        steer_clamp(sae, embeddings(), [1, 1], [1.0, 2.0])
