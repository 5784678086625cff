"""Helpers of the sae service tests: small real SAEs saved as checkpoints, a loopback server.

The SAEs are built with the library (``SparseAutoencoder`` + ``save_sae``), small enough that a
test pays milliseconds for them: d_in 32, 256 latents, k 8.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from grpc import aio

from featurelens.embedding.store import EmbeddingStore
from featurelens.kit import GrpcServer
from featurelens.sae import SaeConfig, SparseAutoencoder, make_sae_id, save_sae
from featurelens.services.sae.registry import SaeRegistry
from featurelens.services.sae.servicer import SaeServicer
from featurelens.v1 import common_pb2, sae_pb2_grpc
from featurelens.wire.arrays import from_dense_matrix, to_dense_matrix

SERVICE = "featurelens.v1.SaeService"
D_IN = 32
NUM_LATENTS = 256
K = 8


def make_sae(
    seed: int = 0, *, d_in: int = D_IN, num_latents: int = NUM_LATENTS, k: int = K
) -> SparseAutoencoder:
    """A library SAE with seeded weights and non-zero biases (so decode is not just W_dec·z)."""
    sae = SparseAutoencoder(SaeConfig(d_in=d_in, num_latents=num_latents, k=k), seed=seed)
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        sae.b_pre.copy_(0.1 * torch.randn(d_in, generator=generator))
        sae.b_lat.copy_(0.05 * torch.randn(num_latents, generator=generator))
    sae.eval()
    return sae


def save_checkpoint(models_dir: Path, sae: SparseAutoencoder, tag: str) -> str:
    """Save ``sae`` under ``models_dir/<sae_id>/``; ``tag`` makes the id unique; returns the id."""
    sae_id = make_sae_id(sae.cfg, None, f"test-{tag}")
    save_sae(sae, models_dir / sae_id, data_fingerprint=f"test-{tag}", embedding_model="test-model")
    return sae_id


def vectors(count: int, seed: int = 0, dim: int = D_IN) -> np.ndarray:
    """Seeded Gaussian rows, float32."""
    return np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)


def write_store(path: Path, count: int = 300, dim: int = D_IN, seed: int = 0) -> Path:
    """An embedding store of ``count`` rows that live near a 6-dimensional subspace (learnable)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((6, dim))
    rows = rng.standard_normal((count, 6)) @ basis + 0.05 * rng.standard_normal((count, dim))
    with EmbeddingStore.create(path, "test-model", dim, sync=False) as store:
        store.append([f"doc-{i}" for i in range(count)], rows.astype(np.float32))
    return path


@dataclass
class Running:
    """A started server with its servicer and an aio stub."""

    server: GrpcServer
    servicer: SaeServicer
    channel: aio.Channel
    stub: sae_pb2_grpc.SaeServiceAsyncStub


def build_servicer(
    models_dir: Path, *, pinned_default: str = "", max_loaded: int = 4, **options: Any
) -> SaeServicer:
    registry = SaeRegistry(models_dir, max_loaded=max_loaded, pinned_default=pinned_default)
    settings: dict[str, Any] = {"max_batch": 64} | options
    return SaeServicer(registry, **settings)


@asynccontextmanager
async def serve_sae(
    models_dir: Path | SaeServicer, *, wait_ready: bool = True, **options: Any
) -> AsyncIterator[Running]:
    """Serve the SAEs of ``models_dir`` (or a built servicer) on 127.0.0.1:0; stop afterwards."""
    servicer = models_dir if isinstance(models_dir, SaeServicer) else build_servicer(models_dir, **options)
    server = GrpcServer([servicer], host="127.0.0.1", port=0, grace_period_s=5.0)
    await server.start()
    try:
        if wait_ready:
            await server.wait_ready(timeout=60)
        async with aio.insecure_channel(server.address) as channel:
            yield Running(server, servicer, channel, sae_pb2_grpc.SaeServiceStub(channel))
    finally:
        await server.stop(0)


def matrix(rows: np.ndarray) -> common_pb2.DenseMatrix:
    return to_dense_matrix(rows)


def rows_of(message: common_pb2.DenseMatrix) -> np.ndarray:
    return from_dense_matrix(message)


async def failure_of(call: Awaitable[object]) -> aio.AioRpcError:
    """The status error a call ends with (fails the test when the call succeeds)."""
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value
