"""SAE service Encode throughput and latency through gRPC, and what micro-batching buys.

    .venv/bin/python benchmarks/sae_encode.py [--d-in 384] [--num-latents 6144] [--k 32] [--seconds 3]

Setting (a) of the issue: d_in 384, 6144 latents, k 32. The SAE is randomly initialised (the
library's seeded init, saved with ``save_sae``): encode cost does not depend on the weights'
values, so it stands in for a trained one. The service runs in its own process (the kit's
embedded host with only sae, ``featurelens.kit.launcher.start_embedded``, CPU) on 127.0.0.1, so
client and server do not share a GIL; on a 2-core machine they do share the cores.

- ``direct_batch256_vectors_per_s`` / ``direct_single_ms``: ``sae.encode`` in this process
  (no gRPC), for comparison with the figures through the service.
- ``pair_idle_ms`` / ``pair_idle_ms_rows_first``: one 2-row encode (what a steered query costs
  the sae service) with 5 ms of idle between calls, as a service sees queries; the first is
  ``sae.encode`` (W_enc times the rows' transpose, ``FEW_ROWS``), the second the same top-k of
  the rows times W_encᵀ, the product every batch above ``FEW_ROWS`` rows uses. ``pair_idle_speedup``
  is their ratio, measured alternately in one run; ``pair_busy_ms`` / ``pair_busy_ms_rows_first``
  are the same called back to back.
- ``batch256_vectors_per_s``: sequential ``Encode`` calls of 256 vectors each.
- ``single_p50_ms`` / ``single_p99_ms``: sequential one-vector ``Encode`` calls as the client
  sees them (target p50 ≤ 2 ms), with the default 1 ms batching window and with the window at 0.
- ``concurrent8_vectors_per_s``: 8 clients (asyncio tasks, one channel each) each sending
  one-vector calls back to back for ``--seconds``; ``sequential_single_vectors_per_s`` is the
  same with one client. Their ratio is the micro-batching speed-up, and
  ``concurrent8_requests_per_pass`` (from the server's batcher counters, logged at shutdown)
  shows the batching itself.

Each setting is measured twice in A-B-B-A order (fresh server processes); the figures are the
medians of the two, and within a run the medians over calls. Progress goes to stderr; the
figures are the one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch
from grpc import aio

from featurelens.kit.launcher import start_embedded
from featurelens.sae import SaeConfig, SparseAutoencoder, make_sae_id, save_sae
from featurelens.v1 import sae_pb2, sae_pb2_grpc
from featurelens.wire.arrays import to_dense_matrix


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Server:
    """A running sae service process; ``log`` gets its batcher line when it stops."""

    port: int
    log: list[dict[str, Any]] = field(default_factory=list)

    def batcher_stats(self) -> dict[str, int]:
        """requests, rows and forward passes of the encode batcher, from its shutdown log line."""
        for entry in self.log:
            found = BATCHER_LINE.search(entry.get("message", ""))
            if found:
                return {name: int(value) for name, value in found.groupdict().items()}
        return {}


BATCHER_LINE = re.compile(r"(?P<requests>\d+) requests, (?P<rows>\d+) rows in (?P<passes>\d+) forward passes")


@contextmanager
def sae_process(models_dir: Path, window_ms: float) -> Iterator[Server]:
    """The sae service alone, in the kit's embedded host (a child process), until the block ends."""
    env = os.environ | {
        "FEATURELENS_SAE_MODELS_DIR": str(models_dir),
        "FEATURELENS_SAE_BATCH_WINDOW_MS": str(window_ms),
    }
    with tempfile.TemporaryDirectory() as data_dir:
        log = Path(data_dir) / "server.log"
        with start_embedded(
            data_dir=Path(data_dir),
            services=["sae"],
            env=env,
            log_path=log,
            log_level="INFO",
            log_format="json",
            timeout_s=120,
        ) as host:
            server = Server(host.port)
            yield server
        server.log.extend(batcher_lines(log))


def batcher_lines(log: Path) -> list[dict[str, Any]]:
    """The encode batcher's JSON log lines (it logs its counters when the service stops)."""
    with log.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if "encode batcher" in line and line.startswith("{")]


def direct(sae: SparseAutoencoder, x: np.ndarray, repeats: int) -> dict[str, float]:
    batch = torch.from_numpy(x[:256].copy())
    single = torch.from_numpy(x[:1].copy())
    with torch.inference_mode():
        for _ in range(5):
            sae.encode(batch)
            sae.encode(single)
        batch_s = []
        for _ in range(repeats):
            start = time.perf_counter()
            sae.encode(batch)
            batch_s.append(time.perf_counter() - start)
        single_s = []
        for _ in range(repeats * 10):
            start = time.perf_counter()
            sae.encode(single)
            single_s.append(time.perf_counter() - start)
    return {
        "direct_batch256_vectors_per_s": 256 / statistics.median(batch_s),
        "direct_single_ms": statistics.median(single_s) * 1000,
    }


def few_rows(sae: SparseAutoencoder, x: np.ndarray, calls: int) -> dict[str, float]:
    """A 2-row encode both ways, alternating, with idle gaps between calls and back to back."""
    pair = torch.from_numpy(x[:2].copy())

    def rows_first() -> None:
        centred = pair - sae.b_pre
        torch.addmm(sae.b_lat, centred, sae.W_enc.t()).topk(sae.k, dim=1, sorted=True)

    def ours() -> None:
        sae.encode(pair)

    figures: dict[str, float] = {}
    with torch.inference_mode():
        for gap_s, name in ((0.005, "pair_idle_ms"), (0.0, "pair_busy_ms")):
            times: dict[str, list[float]] = {"": [], "_rows_first": []}
            for number in range(calls):
                for suffix, function in (("", ours), ("_rows_first", rows_first)):
                    start = time.perf_counter()
                    function()
                    if number >= 20:  # warm-up
                        times[suffix].append(time.perf_counter() - start)
                    if gap_s:
                        time.sleep(gap_s)
            for suffix, values in times.items():
                figures[f"{name}{suffix}"] = statistics.median(values) * 1000
    figures["pair_idle_speedup"] = figures["pair_idle_ms_rows_first"] / figures["pair_idle_ms"]
    return figures


def sequential(port: int, x: np.ndarray, repeats: int, singles: int) -> dict[str, float]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = sae_pb2_grpc.SaeServiceStub(channel)
        batch = sae_pb2.EncodeRequest(vectors=to_dense_matrix(x[:256]))
        one = [sae_pb2.EncodeRequest(vectors=to_dense_matrix(x[i : i + 1])) for i in range(64)]
        for _ in range(10):
            stub.Encode(batch)
            stub.Encode(one[0])
        batch_s = []
        for _ in range(repeats):
            start = time.perf_counter()
            stub.Encode(batch)
            batch_s.append(time.perf_counter() - start)
        single_s = []
        for i in range(singles):
            start = time.perf_counter()
            stub.Encode(one[i % len(one)])
            single_s.append(time.perf_counter() - start)
    single_ms = sorted(s * 1000 for s in single_s)
    return {
        "batch256_vectors_per_s": 256 / statistics.median(batch_s),
        "single_p50_ms": statistics.median(single_ms),
        "single_p99_ms": single_ms[int(0.99 * (len(single_ms) - 1))],
    }


async def clients(port: int, x: np.ndarray, count: int, seconds: float) -> float:
    """Vectors/s of ``count`` clients each sending one-vector calls back to back."""
    requests = [sae_pb2.EncodeRequest(vectors=to_dense_matrix(x[i : i + 1])) for i in range(64)]
    channels = [aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(count)]
    stubs = [sae_pb2_grpc.SaeServiceStub(channel) for channel in channels]
    done = [0] * count
    stop_at = 0.0

    async def client(number: int) -> None:
        i = number
        while time.perf_counter() < stop_at:
            await stubs[number].Encode(requests[i % len(requests)])
            done[number] += 1
            i += count

    try:
        for stub in stubs:
            await stub.Encode(requests[0])
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(client(n) for n in range(count)))
        elapsed = time.perf_counter() - start
    finally:
        for channel in channels:
            await channel.close(None)
    return sum(done) / elapsed


def measure(models: Path, window_ms: float, x: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    """Every service figure for one batching window, each from a fresh server process."""
    with sae_process(models, window_ms) as server:
        figures = sequential(server.port, x, args.repeats, args.singles)
        one = asyncio.run(clients(server.port, x, 1, args.seconds))
    # A fresh server for the 8 clients, so its batcher counts cover only them.
    with sae_process(models, window_ms) as server:
        eight = asyncio.run(clients(server.port, x, 8, args.seconds))
    batched = server.batcher_stats()
    figures |= {
        "sequential_single_vectors_per_s": one,
        "concurrent8_vectors_per_s": eight,
        "concurrent8_speedup": eight / one,
        "concurrent8_requests_per_pass": batched["requests"] / batched["passes"] if batched else math.nan,
    }
    progress(
        f"window {window_ms} ms: batch 256 {figures['batch256_vectors_per_s']:,.0f} vectors/s; "
        f"single p50 {figures['single_p50_ms']:.2f} ms p99 {figures['single_p99_ms']:.2f} ms; "
        f"1 client {one:,.0f}/s, 8 clients {eight:,.0f}/s ({eight / one:.1f}x, "
        f"{batched.get('requests', 0):,} calls in {batched.get('passes', 0):,} passes)"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--d-in", type=int, default=384)
    parser.add_argument("--num-latents", type=int, default=6144)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30, help="batch-256 calls per measurement")
    parser.add_argument("--singles", type=int, default=1000, help="one-vector calls per latency measurement")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each concurrent-clients run")
    args = parser.parse_args()

    cfg = SaeConfig(d_in=args.d_in, num_latents=args.num_latents, k=args.k)
    sae = SparseAutoencoder(cfg, seed=0).eval().requires_grad_(False)  # as the service loads it
    x = np.random.default_rng(0).standard_normal((512, args.d_in)).astype(np.float32)
    figures: dict[str, Any] = {
        "benchmark": "sae_encode",
        "d_in": args.d_in,
        "num_latents": args.num_latents,
        "k": args.k,
        "weights": "random init (seed 0)",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
    }
    figures |= direct(sae, x, args.repeats)
    progress(f"direct: {figures['direct_batch256_vectors_per_s']:,.0f} vectors/s at 256, "
             f"{figures['direct_single_ms']:.3f} ms for one")  # fmt: skip
    figures |= few_rows(sae, x, args.singles // 2)
    progress(f"2 rows between idle gaps: {figures['pair_idle_ms']:.3f} ms (rows x W_enc.T: "
             f"{figures['pair_idle_ms_rows_first']:.3f} ms)")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        save_sae(sae, models / make_sae_id(cfg, None, "benchmark"), data_fingerprint="benchmark")
        # A-B-B-A order and the median per setting, so load drifting on a shared host hits both.
        rounds: dict[float, list[dict[str, float]]] = {1.0: [], 0.0: []}
        for window_ms in (1.0, 0.0, 0.0, 1.0):
            rounds[window_ms].append(measure(models, window_ms, x, args))
        for window_ms, results in rounds.items():
            suffix = "" if window_ms == 1.0 else "_window0"
            for name in results[0]:
                figures[f"{name}{suffix}"] = statistics.median(r[name] for r in results)

    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
