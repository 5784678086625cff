"""The SAE module: top-k codes, decoding, constraints, and the fast path against the dense reference.

Tolerances for fast == dense: float64 atol 1e-10 (observed ~1e-16); float32 rtol 1e-4 with
atol 1e-6 (observed ~1e-7). Both paths compute the same sums in different orders.
"""

from __future__ import annotations

import pytest
import torch

from featurelens.sae import SaeConfig, SparseAutoencoder, TrainingWorkspace, sparse_ops
from featurelens.sae.model import FEW_ROWS

D_IN, NUM_LATENTS, K = 32, 256, 8


def make_sae(dtype: torch.dtype = torch.float64, device: str = "cpu", **cfg: object) -> SparseAutoencoder:
    sae = SparseAutoencoder(
        SaeConfig(d_in=D_IN, num_latents=NUM_LATENTS, k=K, **cfg),  # type: ignore[arg-type]
        dtype=dtype,
        device=device,
        seed=1,
    )
    with torch.no_grad():
        # Non-zero biases and an encoder no longer tied to the decoder, as after some training.
        gen = torch.Generator().manual_seed(2)
        sae.b_lat.copy_(0.1 * torch.randn(NUM_LATENTS, generator=gen, dtype=torch.float64))
        sae.b_pre.copy_(0.1 * torch.randn(D_IN, generator=gen, dtype=torch.float64))
        sae.W_enc.add_(0.05 * torch.randn(NUM_LATENTS, D_IN, generator=gen, dtype=torch.float64).to(device))
    return sae


def batch(n: int = 64, dtype: torch.dtype = torch.float64, device: str = "cpu") -> torch.Tensor:
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(3), dtype=dtype).to(device)


def dead_latents() -> torch.Tensor:
    dead = torch.zeros(NUM_LATENTS, dtype=torch.bool)
    # 86 latents, of which those not selected by the 64-row batch (dozens) count as dead: more than
    # k_aux = 16, so AuxK picks among them.
    dead[::3] = True
    return dead


def grads_of(
    sae: SparseAutoencoder, x: torch.Tensor, **forward: object
) -> tuple[object, dict[str, torch.Tensor]]:
    sae.zero_grad(set_to_none=True)
    out = sae(x, **forward)
    out.loss.backward()
    return out, {name: p.grad.clone() for name, p in sae.named_parameters() if p.grad is not None}


def test_encode_keeps_exactly_k_non_negative_activations_per_row() -> None:
    sae = make_sae()
    code = sae.encode(batch())
    assert code.values.shape == code.indices.shape == (64, K)
    assert code.indices.dtype == torch.int64
    assert (code.values >= 0).all()
    assert all(len(set(row)) == K for row in code.indices.tolist())
    assert (code.values[:, :-1] >= code.values[:, 1:]).all()


def test_encode_picks_the_largest_pre_activations() -> None:
    sae = make_sae()
    x = batch()
    pre = sae.pre_activations(x)
    code = sae.encode(x)
    kth = pre.gather(1, code.indices).min(dim=1).values
    others = pre.scatter(1, code.indices, float("-inf")).max(dim=1).values
    assert (kth >= others).all()


@pytest.mark.parametrize("rows", [1, 2, FEW_ROWS])
def test_a_few_rows_encode_as_they_do_within_a_large_batch(rows: int) -> None:
    # Up to FEW_ROWS rows take the product the other way round (W_enc times the rows' transpose).
    sae = make_sae(dtype=torch.float32)
    x = batch(4 * FEW_ROWS, dtype=torch.float32)
    alone, within = sae.encode(x[:rows]), sae.encode(x)
    torch.testing.assert_close(
        sae.pre_activations(x[:rows]), sae.pre_activations(x)[:rows], rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(alone.values, within.values[:rows], rtol=1e-5, atol=1e-6)
    assert torch.equal(alone.indices, within.indices[:rows])


def test_sparse_decode_equals_dense_decode() -> None:
    sae = make_sae()
    code = sae.encode(batch())
    z = torch.zeros(64, NUM_LATENTS, dtype=torch.float64).scatter(1, code.indices, code.values)
    torch.testing.assert_close(sae.decode(code.values, code.indices), sae.decode_dense(z), rtol=0, atol=1e-12)


def test_decoder_directions_are_unit_norm_rows_of_w_dec() -> None:
    sae = make_sae()
    directions = sae.decoder_directions([3, 7])
    torch.testing.assert_close(directions, sae.W_dec[[3, 7]])
    torch.testing.assert_close(directions.norm(dim=1), torch.ones(2, dtype=torch.float64))
    assert sae.W_dec.is_contiguous()


def test_init_ties_encoder_to_decoder_with_zero_latent_bias() -> None:
    sae = SparseAutoencoder(SaeConfig(d_in=D_IN, num_latents=NUM_LATENTS, k=K), seed=5)
    assert torch.equal(sae.W_enc, sae.W_dec)
    assert not sae.b_lat.any()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(NUM_LATENTS))
    assert torch.equal(SparseAutoencoder(sae.cfg, seed=5).W_dec, sae.W_dec)


def test_init_pre_bias_is_the_coordinate_wise_median() -> None:
    sae = make_sae()
    x = batch(101)
    sae.init_pre_bias_(x)
    torch.testing.assert_close(sae.b_pre.detach(), x.median(dim=0).values)


def test_remove_parallel_decoder_grad_leaves_a_gradient_orthogonal_to_each_direction() -> None:
    sae = make_sae()
    _, grads = grads_of(sae, batch())
    assert (grads["W_dec"] * sae.W_dec).sum(dim=1).abs().max() > 1e-6
    sae.remove_parallel_decoder_grad_()
    assert sae.W_dec.grad is not None
    assert (sae.W_dec.grad * sae.W_dec).sum(dim=1).abs().max() < 1e-12


@pytest.mark.parametrize("multik_coef", [0.0, 0.5])
@pytest.mark.parametrize("with_dead", [False, True])
def test_fast_path_matches_dense_path_in_values_and_every_gradient_float64(
    with_dead: bool, multik_coef: float
) -> None:
    x = batch()
    dead = dead_latents() if with_dead else None
    fast_out, fast_grads = grads_of(make_sae(multik_coef=multik_coef), x, dead_mask=dead, fast=True)
    dense_out, dense_grads = grads_of(make_sae(multik_coef=multik_coef), x, dead_mask=dead, fast=False)
    assert torch.equal(fast_out.indices, dense_out.indices)
    for name in ("x_hat", "values", "nmse", "auxk_loss", "multik_nmse", "loss"):
        torch.testing.assert_close(getattr(fast_out, name), getattr(dense_out, name), rtol=0, atol=1e-10)
    assert set(fast_grads) == set(dense_grads) == {"W_enc", "b_lat", "W_dec", "b_pre"}
    for name, grad in dense_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=0, atol=1e-10, msg=name)
    if with_dead:
        assert fast_out.auxk_loss > 0
        # Only dead latents (and the selected ones) receive AuxK gradient: sanity of the setup.
        assert fast_grads["W_enc"][dead_latents()].abs().sum() > 0


def test_generic_sparse_kernels_for_cuda_match_the_dense_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Off CPU the backward uses embedding_bag's backward and a gather-dot instead of MKL CSR
    # kernels; forcing that branch here tests it without a GPU.
    monkeypatch.setattr(sparse_ops, "_use_csr", lambda _t: False)
    x = batch()
    fast_out, fast_grads = grads_of(make_sae(multik_coef=0.5), x, dead_mask=dead_latents(), fast=True)
    dense_out, dense_grads = grads_of(make_sae(multik_coef=0.5), x, dead_mask=dead_latents(), fast=False)
    torch.testing.assert_close(fast_out.loss, dense_out.loss, rtol=0, atol=1e-10)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=0, atol=1e-10, msg=name)


def _dead_mask(count: int) -> torch.Tensor:
    dead = torch.zeros(NUM_LATENTS, dtype=torch.bool)
    dead[NUM_LATENTS - count :] = True
    return dead


@pytest.mark.parametrize("dead_count", [0, 3, 200])
def test_the_fixed_width_auxk_selection_for_cuda_matches_the_dense_path_whatever_the_number_of_dead(
    monkeypatch: pytest.MonkeyPatch, dead_count: int
) -> None:
    # Off CPU the AuxK selection keeps k_aux entries, padded when fewer latents are dead (none, or
    # 3 < k_aux = 16 here), so that no step waits for the GPU to count them.
    monkeypatch.setattr(sparse_ops, "_use_csr", lambda _t: False)
    x = batch()
    dead = _dead_mask(dead_count)
    fast_out, fast_grads = grads_of(make_sae(), x, dead_mask=dead, fast=True)
    dense_out, dense_grads = grads_of(make_sae(), x, dead_mask=dead, fast=False)
    torch.testing.assert_close(fast_out.auxk_loss, dense_out.auxk_loss, rtol=0, atol=1e-10)
    torch.testing.assert_close(fast_out.loss, dense_out.loss, rtol=0, atol=1e-10)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=0, atol=1e-10, msg=name)
    if dead_count in (0, 200):  # (3 dead latents may all fire in this batch and so not count)
        assert (fast_out.auxk_loss > 0) == (dead_count > 0)


def test_fast_path_matches_dense_path_float32() -> None:
    x = batch(dtype=torch.float32)
    fast_out, fast_grads = grads_of(make_sae(torch.float32), x, dead_mask=dead_latents(), fast=True)
    dense_out, dense_grads = grads_of(make_sae(torch.float32), x, dead_mask=dead_latents(), fast=False)
    torch.testing.assert_close(fast_out.loss, dense_out.loss, rtol=1e-4, atol=1e-6)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fast_path_gives_the_input_gradient_too() -> None:
    sae = make_sae()
    x_fast = batch().requires_grad_()
    x_dense = batch().requires_grad_()
    sae(x_fast, dead_mask=dead_latents(), fast=True).loss.backward()
    sae(x_dense, dead_mask=dead_latents(), fast=False).loss.backward()
    assert x_fast.grad is not None
    assert x_dense.grad is not None
    torch.testing.assert_close(x_fast.grad, x_dense.grad, rtol=0, atol=1e-10)


def test_auxk_loss_is_zero_when_no_latent_is_dead() -> None:
    sae = make_sae()
    out = sae(batch(), dead_mask=torch.zeros(NUM_LATENTS, dtype=torch.bool))
    assert out.auxk_loss.item() == 0.0
    assert out.loss.item() == out.nmse.item()


def test_latents_selected_in_the_batch_never_count_as_dead() -> None:
    sae = make_sae()
    x = batch()
    selected = sae.encode(x).indices.unique()
    only_selected = torch.zeros(NUM_LATENTS, dtype=torch.bool)
    only_selected[selected] = True
    assert sae(x, dead_mask=only_selected).auxk_loss.item() == 0.0


def test_workspace_recycles_gradient_storage_without_changing_results() -> None:
    x = batch()
    plain_sae, ws_sae = make_sae(), make_sae()
    workspace = TrainingWorkspace()
    _, plain_grads = grads_of(plain_sae, x, dead_mask=dead_latents())
    ws_sae(x, dead_mask=dead_latents(), workspace=workspace).loss.backward()
    for name, param in ws_sae.named_parameters():
        assert param.grad is not None
        assert torch.equal(param.grad, plain_grads[name]), name
    storage = {p.grad.data_ptr() for p in (ws_sae.W_enc, ws_sae.W_dec) if p.grad is not None}
    workspace.recycle_grads(ws_sae.parameters())
    assert all(p.grad is None for p in ws_sae.parameters())
    ws_sae(x, dead_mask=dead_latents(), workspace=workspace).loss.backward()
    # The second backward wrote the big gradients into the storage handed back after the first.
    assert {p.grad.data_ptr() for p in (ws_sae.W_enc, ws_sae.W_dec) if p.grad is not None} == storage
    for name, param in ws_sae.named_parameters():
        assert param.grad is not None
        assert torch.equal(param.grad, plain_grads[name]), name


def test_inputs_of_the_wrong_width_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"Expected inputs of shape \(n, 32\)"):
        make_sae().encode(torch.zeros(4, 31, dtype=torch.float64))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_path_matches_dense_path_on_cuda() -> None:
    x = batch(device="cuda")
    fast_out, fast_grads = grads_of(make_sae(device="cuda"), x, dead_mask=dead_latents().cuda(), fast=True)
    dense_out, dense_grads = grads_of(make_sae(device="cuda"), x, dead_mask=dead_latents().cuda(), fast=False)
    torch.testing.assert_close(fast_out.loss, dense_out.loss, rtol=0, atol=1e-10)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=0, atol=1e-10, msg=name)
