"""Concurrent Encode calls share forward passes, and every caller still gets its own rows."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from sae_testing import matrix, serve_sae, vectors

from featurelens.sae import SparseAutoencoder
from featurelens.services.sae.batcher import EncodeBatcher
from featurelens.v1 import sae_pb2


def library_encode(sae: SparseAutoencoder, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        code = sae.encode(torch.from_numpy(x))
    return code.values.numpy(), code.indices.numpy()


async def test_64_concurrent_single_row_encodes_get_their_own_rows_in_fewer_passes(
    models_dir: Path, sae: SparseAutoencoder, sae_id: str
) -> None:
    x = vectors(64, seed=21)
    # A wide window makes the batching certain on a busy machine; only the count is checked.
    async with serve_sae(models_dir, batch_window_ms=50.0) as running:
        batcher = running.servicer.batcher(running.servicer.registry.loaded(sae_id))  # type: ignore[arg-type]
        passes_before, requests_before = batcher.stats.forward_passes, batcher.stats.requests
        replies = await asyncio.gather(
            *(running.stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(x[i : i + 1]))) for i in range(64))
        )
        passes = batcher.stats.forward_passes - passes_before
        requests = batcher.stats.requests - requests_before

    values, indices = library_encode(sae, x)
    for i, reply in enumerate(replies):
        keep = values[i] > 0
        assert list(reply.rows[0].indices) == indices[i][keep].tolist()
        np.testing.assert_allclose(reply.rows[0].values, values[i][keep], rtol=1e-6, atol=1e-6)
    assert requests == 64
    assert passes < 64
    assert batcher.stats.largest_pass_rows > 1


async def test_the_batcher_splits_a_shared_pass_back_into_each_callers_rows(sae: SparseAutoencoder) -> None:
    executor = ThreadPoolExecutor(1)
    batcher = EncodeBatcher(lambda rows: library_encode(sae, rows), executor, max_rows=16, window_s=0.05)
    sizes = [1, 3, 5, 2, 7, 1]
    inputs = [vectors(size, seed=30 + i) for i, size in enumerate(sizes)]

    results = await asyncio.gather(*(batcher.encode(x) for x in inputs))
    await batcher.close()
    executor.shutdown()

    for x, (values, indices) in zip(inputs, results, strict=True):
        expected_values, expected_indices = library_encode(sae, x)
        np.testing.assert_array_equal(indices, expected_indices)
        np.testing.assert_allclose(values, expected_values, rtol=1e-6, atol=1e-6)
    # 19 rows with at most 16 per pass: at least two passes, no request split across them.
    assert 2 <= batcher.stats.forward_passes < len(sizes)
    assert batcher.stats.largest_pass_rows <= 16


async def test_a_request_of_max_rows_or_more_runs_on_its_own(sae: SparseAutoencoder) -> None:
    executor = ThreadPoolExecutor(1)
    batcher = EncodeBatcher(lambda rows: library_encode(sae, rows), executor, max_rows=8, window_s=0.0)

    values, _ = await batcher.encode(vectors(20))
    await batcher.close()
    executor.shutdown()

    assert values.shape == (20, sae.k)
    assert batcher.stats.forward_passes == 1
    assert batcher.stats.largest_pass_rows == 20


async def test_an_encode_failure_reaches_every_caller_of_the_pass() -> None:
    executor = ThreadPoolExecutor(1)

    def broken(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise RuntimeError("device lost")

    batcher = EncodeBatcher(broken, executor, max_rows=16, window_s=0.05)
    results = await asyncio.gather(*(batcher.encode(vectors(1)) for _ in range(3)), return_exceptions=True)
    await batcher.close()
    executor.shutdown()

    assert all(isinstance(result, RuntimeError) for result in results)


async def test_a_closed_batcher_refuses_new_work(sae: SparseAutoencoder) -> None:
    executor = ThreadPoolExecutor(1)
    batcher = EncodeBatcher(lambda rows: library_encode(sae, rows), executor)
    await batcher.encode(vectors(1))
    await batcher.close()
    executor.shutdown()

    with pytest.raises(RuntimeError, match="closed"):
        await batcher.encode(vectors(1))
