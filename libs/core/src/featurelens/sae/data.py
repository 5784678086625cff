"""Embeddings as training data: numpy arrays, memmaps or tensors, moved to a device row by row."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "EmbeddingsLike",
    "data_fingerprint",
    "derived_seed",
    "epoch_permutation",
    "gather_rows",
    "iter_row_batches",
    "num_rows",
    "split_rows",
]

EmbeddingsLike = np.ndarray | Tensor
"""A 2-D float array of embeddings (n, d_in): numpy array, np.memmap or torch tensor."""

# Rows copied to the device at once when gathering (bounds the host-side temporary).
_GATHER_CHUNK = 65_536


def num_rows(embeddings: EmbeddingsLike) -> int:
    """Number of rows, checking that embeddings is 2-D."""
    if embeddings.ndim != 2:
        raise ValueError(f"Embeddings must be a 2-D (n, d_in) array, got shape {tuple(embeddings.shape)}.")
    return int(embeddings.shape[0])


def derived_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for one purpose (split, median sample, epoch e) from the run's seed."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def split_rows(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train_rows, val_rows): sorted int64 row numbers; round(n · val_fraction) rows held out by seed."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(seed, "split")))
    n_val = round(n * val_fraction)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order in which epoch `epoch` visits the n training rows (a function of seed and epoch only,
    so a resumed run replays the same batches)."""
    generator = torch.Generator().manual_seed(derived_seed(seed, f"epoch:{epoch}"))
    return torch.randperm(n, generator=generator)


def gather_rows(
    embeddings: EmbeddingsLike, rows: Tensor | None, *, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """The given rows (all when None) as one contiguous tensor on device, copied in chunks."""
    n = num_rows(embeddings)
    index = torch.arange(n) if rows is None else rows.cpu()
    out = torch.empty((index.numel(), embeddings.shape[1]), dtype=dtype, device=device)
    for start in range(0, index.numel(), _GATHER_CHUNK):
        part = index[start : start + _GATHER_CHUNK]
        if isinstance(embeddings, Tensor):
            chunk = embeddings.index_select(0, part.to(embeddings.device))
        else:
            chunk = torch.from_numpy(np.ascontiguousarray(embeddings[part.numpy()]))
        out[start : start + part.numel()] = chunk.to(device=device, dtype=dtype)
    return out


def iter_row_batches(
    embeddings: EmbeddingsLike, batch_size: int, *, device: torch.device, dtype: torch.dtype
) -> Iterator[Tensor]:
    """Consecutive batches of rows, each on device in dtype."""
    n = num_rows(embeddings)
    for start in range(0, n, batch_size):
        chunk = embeddings[start : start + batch_size]
        if isinstance(chunk, Tensor):
            yield chunk.to(device=device, dtype=dtype)
            continue
        array = np.ascontiguousarray(chunk)
        # torch.from_numpy warns on read-only arrays (a read-only memmap's slices): copy those.
        if not array.flags.writeable:
            array = array.copy()
        yield torch.from_numpy(array).to(device=device, dtype=dtype)


def data_fingerprint(embeddings: EmbeddingsLike) -> str:
    """sha256 of the shape, dtype and every byte of the embeddings (row-major), as 64 hex digits."""
    n = num_rows(embeddings)
    digest = hashlib.sha256()
    array_dtype = str(embeddings.dtype).removeprefix("torch.")
    digest.update(f"{tuple(embeddings.shape)}:{array_dtype}".encode())
    for start in range(0, n, _GATHER_CHUNK):
        chunk = embeddings[start : start + _GATHER_CHUNK]
        if isinstance(chunk, Tensor):
            chunk_np = chunk.detach().cpu().contiguous()
            # numpy has no bfloat16: hash such tensors through their raw 16-bit patterns.
            if chunk_np.dtype == torch.bfloat16:
                chunk_np = chunk_np.view(torch.int16)
            digest.update(chunk_np.numpy().tobytes())
        else:
            digest.update(np.ascontiguousarray(chunk).tobytes())
    return digest.hexdigest()
