"""Query latency of the edge document store (qdrant-edge, in process).

Builds a synthetic corpus (unit dense vectors, top-k-like sparse latents with a skewed latent
popularity, categories and dates), ingests it, optimizes (HNSW), then times dense, sparse,
hybrid and filtered hybrid queries through the public ``DocumentStore`` API; then what the engine
offers past one core: hybrid queries per second from 1, 2 and 4 threads (``hybrid_qps_threads_N``;
qdrant-edge holds the GIL while it searches, so they do not scale), and one ``query_batch`` of 8
queries' 16 legs against 8 calls of 2 legs (``legs_batch8_ms_per_query`` / ``legs_single_ms``).

    .venv/bin/python benchmarks/store_query.py --points 50000

Prints progress lines, then one JSON line with the figures (milliseconds, medians and p99).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from featurelens.store import (
    DocFilter,
    EdgeDocumentStore,
    FusionMethod,
    PointRecord,
    QueryRequest,
    SearchMode,
    SparseVec,
)

CATEGORIES = ["astro-ph.CO", "astro-ph.GA", "astro-ph.SR", "astro-ph.HE", "cs.LG", "cs.CL", "stat.ML"]
SAE = "bench-sae"


def _records(rng: np.random.Generator, start: int, n: int, args: argparse.Namespace) -> list[PointRecord]:
    dense = rng.standard_normal((n, args.dim)).astype(np.float32)
    popularity = 1.0 / (np.arange(args.latents) + 20.0)
    popularity /= popularity.sum()
    out = []
    for i in range(n):
        latents = rng.choice(args.latents, size=args.nnz, replace=False, p=popularity)
        values = rng.lognormal(0.0, 0.6, size=args.nnz)
        year = 2007 + int(rng.integers(0, 18))
        out.append(
            PointRecord(
                f"doc-{start + i}",
                dense=dense[i],
                sparse={SAE: SparseVec(latents, values)},
                payload={
                    "title": f"Document {start + i}",
                    "categories": [CATEGORIES[int(rng.integers(0, len(CATEGORIES)))]],
                    "date": f"{year}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}",
                },
            )
        )
    return out


def _time(call: Callable[[], object], repeats: int) -> dict[str, float]:
    call()  # warm
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t) * 1000.0)
    return {
        "p50_ms": round(float(np.median(samples)), 3),
        "p99_ms": round(float(np.percentile(samples, 99)), 3),
    }


def _thread_scaling(call: Callable[[], object], seconds: float = 3.0) -> dict[str, float]:
    """Calls per second from 1, 2 and 4 threads calling back to back."""
    out = {}
    for threads in (1, 2, 4):
        stop_at = time.perf_counter() + seconds

        def worker(_: int, stop_at: float = stop_at) -> int:
            done = 0
            while time.perf_counter() < stop_at:
                call()
                done += 1
            return done

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            calls = sum(pool.map(worker, range(threads)))
        out[f"hybrid_qps_threads_{threads}"] = round(calls / (time.perf_counter() - started), 1)
    return out


def _batching(store: EdgeDocumentStore, queries: list[PointRecord], rounds: int = 50) -> dict[str, float]:
    """The legs of 8 hybrid queries in one engine ``query_batch`` against 8 calls of 2 legs each."""
    import qdrant_edge as qe

    from featurelens.store.edge import _leg
    from featurelens.store.plan import CheckedQuery, check_query

    handle, current = store._collection("bench")
    plans = [
        check_query(
            QueryRequest(SearchMode.HYBRID, dense=q.dense, sparse=q.sparse[SAE], sae_id=SAE, top_k=10),
            current,
            "bench",
        )
        for q in queries
    ]

    def legs(plan: CheckedQuery) -> list[qe.QueryRequest]:
        return [_leg(plan, mode, 100, None) for mode in (SearchMode.DENSE, SearchMode.SPARSE)]

    def single(start: int) -> None:
        for j in range(8):
            handle.shard.query_batch(qe.QueryBatchRequest(legs(plans[(start + j) % len(plans)])))

    def batched(start: int) -> None:
        requests = [leg for j in range(8) for leg in legs(plans[(start + j) % len(plans)])]
        handle.shard.query_batch(qe.QueryBatchRequest(requests))

    timings = {}
    for name, call in (("legs_single_ms", single), ("legs_batch8_ms_per_query", batched)):
        call(0)
        started = time.perf_counter()
        for r in range(rounds):
            call(r * 8)
        timings[name] = round((time.perf_counter() - started) / (rounds * 8) * 1000, 3)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--latents", type=int, default=6144)
    parser.add_argument("--nnz", type=int, default=32)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--path", type=Path, default=None, help="store folder (default: a temp folder)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp, EdgeDocumentStore(args.path or Path(tmp)) as store:
        store.ensure_collection("bench", args.dim, [SAE])
        t = time.perf_counter()
        for start in range(0, args.points, 1000):
            store.upsert("bench", _records(rng, start, min(1000, args.points - start), args))
        ingest_s = time.perf_counter() - t
        print(f"ingested {args.points} points in {ingest_s:.1f} s", flush=True)
        t = time.perf_counter()
        store.optimize("bench")
        optimize_s = time.perf_counter() - t
        print(f"optimized in {optimize_s:.1f} s", flush=True)

        queries = _records(rng, 10**9, args.queries, args)
        it = iter(range(10**9))

        def request(mode: SearchMode, **extra: object) -> Callable[[], object]:
            def call() -> object:
                q = queries[next(it) % len(queries)]
                return store.query(
                    "bench",
                    QueryRequest(
                        mode,
                        dense=q.dense,
                        sparse=q.sparse[SAE],
                        sae_id=SAE,
                        top_k=args.top_k,
                        with_payload=["title", "categories", "date"],
                        **extra,  # type: ignore[arg-type]
                    ),
                )

            return call

        filtered = DocFilter(categories=("cs.LG", "stat.ML"), date_from="2015-01-01")
        figures = {
            "dense": _time(request(SearchMode.DENSE), args.queries),
            "sparse": _time(request(SearchMode.SPARSE), args.queries),
            "hybrid_rrf": _time(request(SearchMode.HYBRID), args.queries),
            "hybrid_dbsf": _time(request(SearchMode.HYBRID, fusion=FusionMethod.DBSF), args.queries),
            "hybrid_rrf_filtered": _time(request(SearchMode.HYBRID, filter=filtered), args.queries),
            "sample_100": _time(lambda: store.sample("bench", 100, seed=next(it)), 50),
        }
        for name, figure in figures.items():
            print(f"{name:>20}: p50 {figure['p50_ms']:.2f} ms, p99 {figure['p99_ms']:.2f} ms", flush=True)
        scaling = _thread_scaling(request(SearchMode.HYBRID))
        scaling |= _batching(store, queries)
        print(f"past one core: {scaling}", flush=True)
        print(
            json.dumps(
                {
                    "benchmark": "store_query",
                    "adapter": "edge",
                    "points": args.points,
                    "dim": args.dim,
                    "latents": args.latents,
                    "nnz": args.nnz,
                    "top_k": args.top_k,
                    "ingest_s": round(ingest_s, 2),
                    "optimize_s": round(optimize_s, 2),
                    **{f"{k}_{m}": v for k, f in figures.items() for m, v in f.items()},
                    **scaling,
                }
            )
        )


if __name__ == "__main__":
    main()
