"""Encoder service overhead: texts/s of each local model called directly vs through gRPC on loopback.

    .venv/bin/python benchmarks/encoder.py [--texts 2000] [--batch-size 64] [--repeats 3] [--engine-texts 512]

On real abstracts (title + abstract of arxiv_astro.jsonl.gz) in batches of ``--batch-size``:

- ``direct_texts_per_s``: ``backend.embed(batch)`` in this process, batch after batch.
- ``service_texts_per_s``: sequential ``Embed`` calls (one in flight at a time) to the encoder
  service on 127.0.0.1, in the kit's embedded host started as a child process
  (``featurelens.kit.launcher.start_embedded``, the same model spec and batch size), with the
  Redis cache on and cold (the benchmark's keys are deleted first), so every call looks up,
  embeds and writes back its rows.
- ``overhead_ratio``: service time / direct time of the same batch (1.05 = 5% overhead), the
  median over all batches. Each batch goes direct and through the service back to back (order
  swapped every batch), so drifting load on a shared machine hits both sides alike. The texts/s
  figures are per batch too: batch size / median direct seconds, and that divided by the ratio.
- ``cached_p50_ms`` (and p99): latency of a one-text ``Embed`` whose row is already in Redis,
  over 200 calls, as the client sees it.
- ``stream_texts_per_s``: the same batches through ``EmbedStream`` (up to 2 batches in flight
  inside the server), cold cache; extra, for information.

Engines of all-MiniLM-L6-v2 side by side (``--engine-texts``, default 512; 0 skips), in this
process on the same texts, batch by batch in a rotating order (torch, onnx, onnx-int8; then
onnx, onnx-int8, torch; ...), so load from elsewhere on the machine hits every engine alike:

- ``torch_texts_per_s``: the PyTorch backend (``engine="torch"``, as before this engine existed).
- ``onnx_texts_per_s`` / ``onnx_speedup``: the engine that ``auto`` picks on this machine
  (``onnx_engine``), its texts/s and that over torch's.
- ``onnx_fp32_texts_per_s``, ``onnx_int8_texts_per_s`` and their ``*_speedup``; and
  ``onnx_fp32_min_cosine``, ``onnx_int8_min_cosine``: the lowest cosine between a text's ONNX
  and PyTorch vectors over all the texts. ``onnx_int8_reduce_range``: whether the int8 export
  uses 7-bit weights here (no int8 dot-product instruction on this CPU).
- ``demo_embed_minutes_estimate``: 11,636 demo abstracts at ``onnx_texts_per_s`` and at
  ``torch_texts_per_s`` (an estimate from this rate, not a measured demo run).

The exported ONNX models are cached in ``.featurelens/cache/onnx`` (the first run exports them,
about 20 s each on 2 cores).

Needs Redis at 127.0.0.1:6379 (``scripts/ensure_redis.sh``). Progress goes to stderr; the
figures are the one JSON line printed last on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import redis
from grpc import aio

from featurelens.corpus import read_corpus
from featurelens.embedding.backends import EmbeddingBackend, load_backend, load_sentence_transformer_backend
from featurelens.kit.launcher import start_embedded
from featurelens.services.encoder.cache import cache_key
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEATURELENS_DATA_DIR", ROOT.parent / "shared" / "data"))
ONNX_CACHE = ROOT / ".featurelens" / "cache" / "onnx"
DEMO_TEXTS = 11_636
BACKENDS = ("wordllama", "sentence-transformers")
WARM_UP_TEXT = "benchmark warm-up call"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def forget(model_id: str, texts: Sequence[str]) -> None:
    """Delete the benchmark's own cache keys, so the next pass starts cold."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = [cache_key(model_id, text) for text in texts]
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()


@contextmanager
def served(spec: str, batch_size: int) -> Iterator[str]:
    """The encoder service with ``spec`` and the Redis cache, in a child process; its address."""
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        FEATURELENS_ENCODER_REDIS_URL=REDIS_URL,
        FEATURELENS_ENCODER_CACHE_TTL_S="3600",
        FEATURELENS_ENCODER_BATCH_SIZE=str(batch_size),
        FEATURELENS_ENCODER_ONNX_CACHE_DIR=str(ONNX_CACHE),
    )
    with tempfile.TemporaryDirectory() as data_dir:
        # WARNING: the one line per call at INFO is not what this benchmark measures.
        with start_embedded(
            data_dir=Path(data_dir),
            services=["encoder"],
            models=[spec],
            env=env,
            log_path=Path(data_dir) / "server.log",
            log_level="WARNING",
            timeout_s=300,
        ) as host:
            yield host.address


async def interleaved_pass(
    backend: EmbeddingBackend, stub: encoder_pb2_grpc.EncoderServiceAsyncStub, batches: list[list[str]]
) -> list[tuple[float, float]]:
    """(direct seconds, service seconds) of each batch, the two measured back to back."""
    timings = []
    for number, batch in enumerate(batches):
        seconds = {}
        for side in ("direct", "service") if number % 2 == 0 else ("service", "direct"):
            started = time.perf_counter()
            if side == "direct":
                backend.embed(batch)
            else:
                reply = await stub.Embed(encoder_pb2.EmbedRequest(texts=batch))
                assert reply.cached_count == 0
                assert reply.embeddings.count == len(batch)
            seconds[side] = time.perf_counter() - started
        timings.append((seconds["direct"], seconds["service"]))
    return timings


async def stream_pass(stub: encoder_pb2_grpc.EncoderServiceAsyncStub, batches: list[list[str]]) -> float:
    async def requests() -> AsyncIterator[encoder_pb2.EmbedStreamRequest]:
        for number, batch in enumerate(batches):
            yield encoder_pb2.EmbedStreamRequest(batch_id=number, texts=batch)

    started = time.perf_counter()
    count = 0
    async for reply in stub.EmbedStream(requests()):
        count += reply.embeddings.count
    assert count == sum(map(len, batches))
    return time.perf_counter() - started


async def cached_latencies_ms(
    stub: encoder_pb2_grpc.EncoderServiceAsyncStub, texts: list[str]
) -> list[float]:
    for text in texts:  # warm the cache
        await stub.Embed(encoder_pb2.EmbedRequest(texts=[text]))
    latencies = []
    for text in texts:
        started = time.perf_counter()
        reply = await stub.Embed(encoder_pb2.EmbedRequest(texts=[text]))
        latencies.append((time.perf_counter() - started) * 1000)
        assert reply.cached_count == 1
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def bench_backend(
    spec: str, texts: list[str], args: argparse.Namespace, figures: dict[str, Any]
) -> None:
    progress(f"[{spec}] loading")
    options: dict[str, Any] = {"onnx_cache_dir": ONNX_CACHE} if spec == "sentence-transformers" else {}
    backend = load_backend(spec, batch_size=args.batch_size, **options)
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    repeats = args.repeats if spec == "wordllama" else 1
    # Blocks this loop while the server starts; nothing else runs on it yet.
    with served(spec, args.batch_size) as address:
        async with aio.insecure_channel(address) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            backend.embed(batches[0])  # warm both paths before timing
            await stub.Embed(encoder_pb2.EmbedRequest(texts=[WARM_UP_TEXT]))
            timings: list[tuple[float, float]] = []
            for repeat in range(repeats):
                forget(backend.model_id, texts)
                timings += (pass_timings := await interleaved_pass(backend, stub, batches))
                direct_s = sum(direct for direct, _ in pass_timings)
                service_s = sum(service for _, service in pass_timings)
                progress(
                    f"[{spec}] pass {repeat + 1}/{repeats}: direct {len(texts) / direct_s:.0f} texts/s, "
                    f"service {len(texts) / service_s:.0f} texts/s, ratio {service_s / direct_s:.3f}"
                )
            # Per-batch pairs, measured back to back, and their median: a burst of load from
            # elsewhere on the machine skews one pair, not the figure.
            ratio = statistics.median(service / direct for direct, service in timings)
            direct_s = statistics.median(direct for direct, _ in timings)
            texts_per_batch = len(texts) / len(batches)
            figures["direct_texts_per_s"][spec] = round(texts_per_batch / direct_s, 1)
            figures["service_texts_per_s"][spec] = round(texts_per_batch / (direct_s * ratio), 1)
            figures["overhead_ratio"][spec] = round(ratio, 4)
            if spec == "wordllama":
                forget(backend.model_id, texts)
                stream_s = await stream_pass(stub, batches)
                figures["stream_texts_per_s"][spec] = round(len(texts) / stream_s, 1)
                progress(f"[{spec}] EmbedStream: {len(texts) / stream_s:.0f} texts/s")
            if spec == args.cached_model:
                probe = texts[: args.cached_calls]
                forget(backend.model_id, probe)
                latencies = await cached_latencies_ms(stub, probe)
                figures["cached_p50_ms"] = round(statistics.median(latencies), 3)
                figures["cached_p99_ms"] = round(percentile(latencies, 99), 3)
                figures["cached_model"] = backend.model_id
                progress(f"[{spec}] cached one-text Embed: p50 {figures['cached_p50_ms']} ms")
            forget(backend.model_id, [*texts, WARM_UP_TEXT])


def engines_side_by_side(texts: list[str], batch_size: int, figures: dict[str, Any]) -> None:
    """texts/s of MiniLM on PyTorch, ONNX fp32 and ONNX int8 on the same batches, in rotating order."""
    engines: dict[str, EmbeddingBackend] = {
        name: load_sentence_transformer_backend(engine=name, batch_size=batch_size, onnx_cache_dir=ONNX_CACHE)
        for name in ("torch", "onnx", "onnx-int8")
    }
    chosen = load_sentence_transformer_backend(
        engine="auto", batch_size=batch_size, onnx_cache_dir=ONNX_CACHE
    )
    chosen_engine = str(getattr(chosen, "engine", "torch"))
    del chosen
    names = list(engines)
    for backend in engines.values():
        backend.embed(texts[:batch_size])  # warm each engine before timing
    seconds = dict.fromkeys(names, 0.0)
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in names}
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    for number, batch in enumerate(batches):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            vectors[name].append(engines[name].embed(batch).vectors)
            seconds[name] += time.perf_counter() - started
        done = sum(map(len, batches[: number + 1]))
        progress(
            f"[engines] {done}/{len(texts)}: "
            + ", ".join(f"{name} {done / seconds[name]:.1f} texts/s" for name in names)
        )
    rates = {name: len(texts) / seconds[name] for name in names}
    reference = np.concatenate(vectors["torch"])
    for name, key in (("onnx", "onnx_fp32"), ("onnx-int8", "onnx_int8")):
        cosines = np.sum(np.concatenate(vectors[name]) * reference, axis=1)
        figures[f"{key}_texts_per_s"] = round(rates[name], 1)
        figures[f"{key}_speedup"] = round(rates[name] / rates["torch"], 2)
        figures[f"{key}_min_cosine"] = round(float(cosines.min()), 5)
    figures["torch_texts_per_s"] = round(rates["torch"], 1)
    figures["onnx_engine"] = chosen_engine
    figures["onnx_int8_reduce_range"] = bool(getattr(engines["onnx-int8"], "reduce_range", False))
    onnx_rate = rates.get(chosen_engine, rates["torch"])
    figures["onnx_texts_per_s"] = round(onnx_rate, 1)
    figures["onnx_speedup"] = round(onnx_rate / rates["torch"], 2)
    figures["engine_texts"] = len(texts)
    figures["demo_embed_minutes_estimate"] = {
        "onnx": round(DEMO_TEXTS / onnx_rate / 60, 1),
        "torch": round(DEMO_TEXTS / rates["torch"] / 60, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="passes for wordllama (MiniLM runs one)")
    parser.add_argument(
        "--backends",
        nargs="*",
        default=list(BACKENDS),
        help="backends for the service overhead; none skips it",
    )
    parser.add_argument("--cached-model", default="sentence-transformers")
    parser.add_argument("--cached-calls", type=int, default=200)
    parser.add_argument(
        "--engine-texts", type=int, default=512, help="texts for the MiniLM engines side by side; 0 skips"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    texts = [record.embedding_text for record in read_corpus(DATA / "arxiv_astro.jsonl.gz", limit=args.texts)]
    progress(f"{len(texts)} abstracts, batches of {args.batch_size}, sequential calls")
    figures: dict[str, Any] = {
        "direct_texts_per_s": {},
        "service_texts_per_s": {},
        "overhead_ratio": {},
        "stream_texts_per_s": {},
        "cached_p50_ms": None,
        "texts": len(texts),
        "batch_size": args.batch_size,
    }
    if args.backends and args.cached_model not in args.backends:
        args.cached_model = args.backends[0]
    if args.engine_texts:
        engine_texts = [
            record.embedding_text
            for record in read_corpus(DATA / "arxiv_astro.jsonl.gz", limit=args.engine_texts)
        ]
        progress(f"{len(engine_texts)} abstracts for the engines side by side, batches of {args.batch_size}")
        engines_side_by_side(engine_texts, args.batch_size, figures)
    for spec in args.backends:
        await bench_backend(spec, texts, args, figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
