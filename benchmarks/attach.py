"""Attach throughput: an SAE attached to a qdrant-edge shard that featurelens did not create.

Builds a shard with plain qdrant-edge (a named 384-d dense vector, a second named vector and the
user's own payload; synthetic vectors), then times ``featurelens.store.attach.attach`` with a
real top-k SAE (random weights, in process, CPU) encoding each batch: scroll, encode, set the
payload key, write the sparse vector. Encoding is timed apart so the store's share shows.

    .venv/bin/python benchmarks/attach.py --points 60000

Prints progress lines, then one JSON line: points, seconds, points_per_s (and the encode share).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import qdrant_edge as qe
import torch

from featurelens.sae.config import SaeConfig
from featurelens.sae.model import SparseAutoencoder
from featurelens.store.attach import attach
from featurelens.store.attach_engines import EdgeShardCollection
from featurelens.store.types import SparseVec


def _build(path: Path, points: int, dim: int) -> qe.EdgeShard:
    config = qe.EdgeConfig(
        vectors={
            "emb": qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            "other": qe.EdgeVectorParams(size=8, distance=qe.Distance.Dot),
        }
    )
    shard = qe.EdgeShard.create(str(path), config)
    rng = np.random.default_rng(0)
    for start in range(0, points, 2000):
        n = min(2000, points - start)
        dense = rng.standard_normal((n, dim)).astype(np.float32)
        other = rng.standard_normal((n, 8)).astype(np.float32)
        batch = [
            qe.Point(
                start + i,
                {"emb": dense[i].tolist(), "other": other[i].tolist()},
                {"tenant": f"t{i % 7}", "n": i},
            )
            for i in range(n)
        ]
        shard.update(qe.UpdateOperation.upsert_points(batch))
    shard.flush()
    return shard


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=60_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--latents", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    torch.manual_seed(0)
    sae = SparseAutoencoder(SaeConfig(d_in=args.dim, num_latents=args.latents, k=args.k), seed=0)
    encode_seconds = 0.0

    def encode(dense: npt.NDArray[np.float32]) -> list[SparseVec]:
        nonlocal encode_seconds
        started = time.perf_counter()
        with torch.no_grad():
            out = sae.encode(torch.from_numpy(dense))
        vectors = [SparseVec(i.numpy(), v.numpy()) for i, v in zip(out.indices, out.values, strict=True)]
        encode_seconds += time.perf_counter() - started
        return vectors

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        shard = _build(Path(folder) / "shard", args.points, args.dim)
        print(f"built {args.points} points in {time.perf_counter() - started:.1f}s", flush=True)
        collection = EdgeShardCollection(shard, "theirs")
        started = time.perf_counter()
        last = 0
        for progress in attach(collection, "bench-sae", "emb", encode, batch_size=args.batch_size):
            if progress.done - last >= 10_000:
                print(f"attached {progress.done}/{progress.total}", flush=True)
                last = progress.done
        seconds = time.perf_counter() - started
        attached = collection.count() - collection.count(missing="sae_bench-sae")
        shard.close()
    print(
        json.dumps(
            {
                "points": attached,
                "seconds": round(seconds, 2),
                "points_per_s": round(attached / seconds, 1),
                "encode_seconds": round(encode_seconds, 2),
                "dim": args.dim,
                "num_latents": args.latents,
                "k": args.k,
                "batch_size": args.batch_size,
            }
        )
    )


if __name__ == "__main__":
    main()
