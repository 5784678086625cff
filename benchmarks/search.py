"""Search service at 60k real documents: IndexDocuments throughput and steered hybrid search through gRPC.

    .venv/bin/python benchmarks/search.py --model wordllama            # 60,000 cs abstracts indexed
    .venv/bin/python benchmarks/search.py --model wordllama --quick    # 10,000 documents (< 3 min warm)

What runs, and what is cached under ``.featurelens/cache/`` (gitignored):

1. **Embeddings.** The title + abstract of every record of ``arxiv_cs.jsonl.gz`` that the run
   needs, embedded with ``--model`` in this process into the embedding store
   ``embeddings/arxiv_cs-<model_id>`` (resumable: a quick run embeds its slice, a full run the
   rest). ``embed_texts_per_s`` / ``embed_s`` are this run's figures; when everything was cached
   they come from the run that built the store (``embed_cached: true``). MiniLM (the default)
   embeds ~20-100 texts/s on 2 shared cores, so the first full run takes 10-50 minutes;
   ``--model wordllama`` ~1,400 texts/s.
2. **SAE.** A top-k SAE (6144 latents, k 32) trained by the library on the embeddings of the
   documents to index, cached by its ``sae_id`` under ``saes/`` (the sae service's models folder).
3. **Server.** encoder + sae + search in the kit's embedded host (what ``featurelens up`` runs)
   on 127.0.0.1, started as a child process by ``featurelens.kit.launcher.start_embedded``, so
   the client below does not share the server's GIL (it does share the 2 cores).
   Qdrant runs in process (qdrant-edge) in a fresh temporary folder. The encoder caches query
   embeddings in Redis at ``--redis-url`` (the in-process cache when it is empty or Redis does
   not answer). The server logs every request at INFO (JSON, to ``server.log``), as in production.
4. **Indexing.** One ``IndexDocuments`` job: the corpus as a server-side file (``corpus_path``,
   the held-out documents left out) and the dense vectors from the embedding store
   (``embeddings_path``), so no embedding happens here: SAE encode (sae service) + upsert.
   ``index_docs_per_s`` is documents / seconds until the last batch is stored;
   ``index_total_docs_per_s`` includes the HNSW build the job runs at its end (``optimize_s``).
   ``index_health_max_ms``: the slowest of the health checks sent every 0.25 s meanwhile (the
   engine holds the GIL while it builds, so the whole server stops answering).
5. **Queries.** The vectors of ``--holdout`` held-out documents (real embeddings of documents
   that are not in the index), each steered with 1-3 interventions on latents that fire on it
   (additive weights ±0.3-1.0, seeded), hybrid mode (RRF), top 10, through the async SDK client
   (``AsyncFeaturelensClient``). ``p50_ms`` / ``p99_ms`` / ``qps_1``: one client, sequential;
   ``qps_8``: 8 async SDK clients (one channel each, one process) calling back to back for
   ``--seconds``. ``unsteered_p50_ms`` / ``dense_p50_ms``: the same queries without steering /
   dense only. ``text_p50_ms``: steered hybrid with the query as text (held-out titles), the
   encoder's cache warm (the texts are repeated). ``server_p50_ms``: the server's own
   ``took_ms`` of the steered queries (the rest of p50 is gRPC and the client).
   ``server_cpu_ms_per_query``: the server process's CPU time (all threads) during the 8-client
   run per query; ``client_cpu_ms_per_query``: this process's (the 8 clients share the 2 cores
   with the server, so ``qps_8`` is at most ``2000 / (server + client CPU ms per query)``).
   ``query_cache_hits`` / ``_misses``: the encoder's cache counters at shutdown.
6. **The raw engine, side by side.** Each steered query's steered vector (unit length) and
   re-encoded latents, as the sae service returns them (``Steer``), are kept; once the server has
   stopped, its Qdrant folder is opened in this process (``EdgeDocumentStore``, the same search
   threads as the service) and the same queries run there: the same hybrid request (RRF, top 10,
   the hit fields) the service sends the store. ``engine_p50_ms`` / ``engine_p99_ms`` /
   ``engine_qps_1``: one thread, sequential; ``engine_qps_8``: 8 threads calling back to back for
   ``--seconds``. ``service_to_engine_qps`` = ``qps_8 / engine_qps_8``; ``service_minus_engine_p50_ms``
   = ``p50_ms - engine_p50_ms`` (what the service, gRPC and the client add to one query). The
   issue's targets: ``p50_ms`` <= 5, ``p99_ms`` <= 20, ``qps_8`` >= 500, or where the engine itself
   cannot, ``service_to_engine_qps`` >= 0.8 and ``service_minus_engine_p50_ms`` <= 1.5.

Progress goes to stderr (logging); the figures are the one JSON line printed last on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cs_embeddings import CACHE, CORPUS, CORPUS_FILE, embedding_store

from featurelens.client import AsyncFeaturelensClient, Intervention, SearchResult, SparseVector
from featurelens.corpus import Record
from featurelens.kit.launcher import start_embedded
from featurelens.store import QueryRequest, SearchMode, SparseVec

logger = logging.getLogger("benchmarks.search")

ROOT = Path(__file__).resolve().parents[1]
NUM_LATENTS = 6144
K = 32
#: --model choices and the backend spec each loads.
MODELS = {
    "sentence-transformers": "sentence-transformers",
    "minilm": "sentence-transformers",
    "wordllama": "wordllama",
}


# -- data -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """The documents a run indexes and the held-out ones whose vectors are the queries."""

    indexed: list[Record]
    held_out: list[Record]


def _hash(doc_id: str) -> str:
    return hashlib.sha1(doc_id.encode()).hexdigest()


def split_corpus(docs: int, holdout: int) -> Split:
    """The first ``docs + holdout`` records; the ``holdout`` with the smallest sha1(id) are held out."""
    from featurelens.corpus import read_corpus

    records = list(read_corpus(CORPUS_FILE, limit=docs + holdout))
    held = {r.id for r in sorted(records, key=lambda r: _hash(r.id))[:holdout]}
    return Split([r for r in records if r.id not in held], [r for r in records if r.id in held])


def write_corpus(ids: set[str], target: Path) -> None:
    """The raw JSONL lines of ``ids`` from the corpus file (same fields the server reads)."""
    with gzip.open(CORPUS_FILE, "rt", encoding="utf-8") as source, target.open("w", encoding="utf-8") as out:
        for line in source:
            if line.strip() and json.loads(line)["id"] in ids:
                out.write(line)


def trained_sae(store_path: Path, ids: Sequence[str], epochs: int) -> tuple[str, dict[str, Any]]:
    """An SAE trained on the embeddings of ``ids`` (cached in ``saes/<sae_id>``); its id and facts."""
    from featurelens.embedding import EmbeddingStore
    from featurelens.sae import (
        SaeConfig,
        TrainConfig,
        data_fingerprint,
        make_sae_id,
        read_checkpoint,
        train_sae,
    )
    from featurelens.sae.checkpoint import TRAIN_STATE_FILE

    with EmbeddingStore.open(store_path, read_only=True) as store:
        vectors = store.get(list(ids))
        model_id = store.model_id
    sae_cfg = SaeConfig(d_in=vectors.shape[1], num_latents=NUM_LATENTS, k=K)
    train_cfg = TrainConfig(batch_size=512, lr=5e-4, epochs=epochs, seed=0)
    sae_id = make_sae_id(sae_cfg, train_cfg, data_fingerprint(vectors))
    models = CACHE / "saes"
    folder = models / sae_id
    if not (folder / "config.json").is_file():
        logger.info(
            "training %s: %d rows, %d latents, k %d, %d epochs", sae_id, len(vectors), NUM_LATENTS, K, epochs
        )
        staging = models / f".train-bench-{sae_id}"
        shutil.rmtree(staging, ignore_errors=True)
        started = time.perf_counter()
        result = train_sae(vectors, sae_cfg, train_cfg, checkpoint_dir=staging, embedding_model=model_id)
        assert result.sae_id == sae_id, (result.sae_id, sae_id)
        (staging / TRAIN_STATE_FILE).unlink(missing_ok=True)
        os.replace(staging, folder)
        logger.info("trained %s in %.0f s", sae_id, time.perf_counter() - started)
    metrics = read_checkpoint(folder).metrics or {}
    return sae_id, {
        "sae_val_nmse": metrics.get("final_val_nmse"),
        "sae_dead_fraction": metrics.get("dead_fraction"),
    }


# -- the server (child process) ---------------------------------------------------------------------


def server_env(config: dict[str, Any]) -> dict[str, str]:
    """The embedded host's environment: this process's, with the services' settings for this run."""
    roots = json.dumps(config["roots"])
    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        FEATURELENS_ENCODER_REDIS_URL=config["redis_url"],
        FEATURELENS_ENCODER_BATCH_SIZE="64",
        FEATURELENS_SAE_MODELS_DIR=config["models_dir"],
        FEATURELENS_SAE_DEFAULT_SAE_ID=config["sae_id"],
        FEATURELENS_SAE_TRAIN_DATA_ROOTS=roots,
        FEATURELENS_SEARCH_EDGE_PATH=config["edge_path"],
        FEATURELENS_SEARCH_CORPUS_ROOTS=roots,
    )


def redis_answers(url: str) -> bool:
    if not url:
        return False
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=1.0)
        answered = bool(client.ping())
        client.close()
        return answered
    except redis.RedisError:
        return False


def cache_counts(log_path: Path) -> dict[str, int]:
    """The encoder's embedding-cache hits and misses, from the line it logs when it stops."""
    found = re.findall(r"embedding cache: (\d+) hits, (\d+) misses", log_path.read_text())
    if not found:
        return {}
    hits, misses = found[-1]
    return {"query_cache_hits": int(hits), "query_cache_misses": int(misses)}


# -- the client ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def health_probe(address: str, latencies: list[float], stop: asyncio.Event) -> None:
    """Health checks every 0.25 s until ``stop``: how long the server took to answer each."""
    async with AsyncFeaturelensClient(address) as client:
        while not stop.is_set():
            started = time.perf_counter()
            # No deadline: on shared cores the index build can stall the server for minutes.
            await client.health("search", timeout=None)
            latencies.append((time.perf_counter() - started) * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def interventions_for(latents: SparseVector, rng: np.random.Generator) -> list[Intervention]:
    """1-3 additive interventions on latents that fire on the query, weights ±0.3-1.0."""
    firing = latents.indices[latents.values > 0]
    count = min(len(firing), int(rng.integers(1, 4)))
    chosen = rng.choice(firing, size=count, replace=False)
    weights = rng.uniform(0.3, 1.0, size=count) * rng.choice([-1.0, 1.0], size=count)
    return [Intervention(weight=float(w), feature=int(f)) for f, w in zip(chosen, weights, strict=True)]


async def sequential(
    call: Callable[[int], Awaitable[SearchResult]], count: int
) -> tuple[list[float], list[float], float]:
    """Latencies (ms), server took_ms and wall seconds of ``count`` calls one after the other."""
    latencies, took = [], []
    started = time.perf_counter()
    for number in range(count):
        t = time.perf_counter()
        result = await call(number)
        latencies.append((time.perf_counter() - t) * 1000)
        took.append(result.took_ms)
    return latencies, took, time.perf_counter() - started


async def concurrent(
    clients: Sequence[AsyncFeaturelensClient],
    call: Callable[[AsyncFeaturelensClient, int], Awaitable[SearchResult]],
    seconds: float,
) -> tuple[int, float, list[float]]:
    """Calls completed by all clients calling back to back for ``seconds``; wall time; latencies."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(position: int, client: AsyncFeaturelensClient) -> int:
        done = 0
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            await call(client, position + done * len(clients))
            latencies.append((time.perf_counter() - t) * 1000)
            done += 1
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(worker(i, c) for i, c in enumerate(clients)))
    return sum(counts), time.perf_counter() - started, latencies


async def index_corpus(
    client: AsyncFeaturelensClient, address: str, paths: dict[str, Path], sae_id: str, batch_size: int
) -> dict[str, Any]:
    """One IndexDocuments job over the corpus file with the embedding store's vectors; its figures."""
    probe_ms: list[float] = []
    probe_stop = asyncio.Event()
    probe = asyncio.create_task(health_probe(address, probe_ms, probe_stop))
    started = time.perf_counter()
    batches_done = started
    optimize_started = None
    last = None
    async for progress in client.search.index_documents(
        CORPUS,
        corpus_path=str(paths["corpus"]),
        embeddings_path=str(paths["store"]),
        sae_ids=[sae_id],
        batch_size=batch_size,
    ):
        last = progress
        stage = progress.progress.stage
        if stage == "index":
            batches_done = time.perf_counter()
            if progress.failure_reason:
                logger.warning("failed: %s", progress.failure_reason)
            if progress.indexed % (batch_size * 40) < batch_size:
                logger.info("  %s", progress.progress.message)
        elif stage == "optimize":
            optimize_started = time.perf_counter()
            logger.info("  %s", progress.progress.message)
    finished = time.perf_counter()
    probe_stop.set()
    await probe
    assert last is not None, "IndexDocuments sent nothing"
    assert last.progress.stage == "done", last
    upsert_s = (optimize_started or batches_done) - started
    figures = {
        "documents": last.indexed,
        "index_failed": last.failed,
        "index_docs_per_s": round(last.indexed / upsert_s, 1),
        "index_s": round(upsert_s, 2),
        "optimize_s": round(finished - optimize_started, 2) if optimize_started else 0.0,
        "index_total_docs_per_s": round(last.indexed / (finished - started), 1),
        # The engine holds the GIL while it builds the indexes: the whole server stops answering.
        "index_health_max_ms": round(max(probe_ms), 1),
    }
    logger.info(
        "indexed %d docs: %.0f docs/s (upserts), %.1f s index build, %.0f docs/s in all",
        last.indexed, figures["index_docs_per_s"], figures["optimize_s"], figures["index_total_docs_per_s"],
    )  # fmt: skip
    return figures


async def query_figures(
    client: AsyncFeaturelensClient,
    address: str,
    vectors: npt.NDArray[np.float32],
    texts: Sequence[str],
    sae_id: str,
    args: argparse.Namespace,
    server_pid: int,
    engine_queries: list[EngineQuery],
) -> dict[str, Any]:
    """Latency and throughput of steered hybrid search (vector and text queries) and references;
    the steered queries as the engine will see them go into ``engine_queries``."""
    rng = np.random.default_rng(0)
    latents = (await client.sae.encode(vectors, sae_id)).rows
    steers = [interventions_for(row, rng) for row in latents]
    text_latents = (await client.sae.encode((await client.encoder.embed(texts)).vectors, sae_id)).rows
    text_steers = [interventions_for(row, rng) for row in text_latents]
    n = len(vectors)
    for i in range(n):  # what the service will search with, for the engine's run (step 6)
        steered_vector = await client.sae.steer(vectors[i], steers[i], sae_id)
        unit = steered_vector.vector / np.linalg.norm(steered_vector.vector)
        after = steered_vector.latents_after
        engine_queries.append(
            EngineQuery(unit.astype(np.float32), SparseVec(after.indices.tolist(), after.values.tolist()))
        )

    def steered(number: int, on: AsyncFeaturelensClient = client) -> Awaitable[SearchResult]:
        i = number % n
        return on.search.search(CORPUS, vector=vectors[i], mode="hybrid", interventions=steers[i])

    def unsteered(number: int) -> Awaitable[SearchResult]:
        return client.search.search(CORPUS, vector=vectors[number % n], mode="hybrid")

    def dense(number: int) -> Awaitable[SearchResult]:
        return client.search.search(CORPUS, vector=vectors[number % n], mode="dense")

    def by_text(number: int) -> Awaitable[SearchResult]:
        i = number % len(texts)
        return client.search.search(CORPUS, texts[i], mode="hybrid", interventions=text_steers[i])

    figures: dict[str, Any] = {}
    await sequential(steered, min(n, 100))  # warm-up
    await sequential(by_text, len(texts))  # and the encoder's cache
    cosines = [(await steered(i)).steer_cosine for i in range(min(n, 50))]
    logger.info("timing %d steered hybrid queries, one client", args.requests)
    latencies, took, wall = await sequential(steered, args.requests)
    figures["p50_ms"] = round(statistics.median(latencies), 3)
    figures["p99_ms"] = round(percentile(latencies, 99), 3)
    figures["qps_1"] = round(args.requests / wall, 1)
    figures["server_p50_ms"] = round(statistics.median(took), 3)
    figures["steer_cosine_median"] = round(statistics.median(cosines), 4)
    latencies, _, _ = await sequential(unsteered, args.requests // 2)
    figures["unsteered_p50_ms"] = round(statistics.median(latencies), 3)
    figures["unsteered_p99_ms"] = round(percentile(latencies, 99), 3)
    latencies, _, _ = await sequential(dense, args.requests // 2)
    figures["dense_p50_ms"] = round(statistics.median(latencies), 3)
    latencies, took, _ = await sequential(by_text, args.requests // 2)
    figures["text_p50_ms"] = round(statistics.median(latencies), 3)
    figures["text_p99_ms"] = round(percentile(latencies, 99), 3)
    figures["text_server_p50_ms"] = round(statistics.median(took), 3)
    logger.info(
        "steered p50 %.2f ms p99 %.2f ms (server %.2f ms), %.0f qps; unsteered p50 %.2f; text p50 %.2f",
        figures["p50_ms"], figures["p99_ms"], figures["server_p50_ms"], figures["qps_1"],
        figures["unsteered_p50_ms"], figures["text_p50_ms"],
    )  # fmt: skip

    logger.info("8 concurrent clients for %.0f s", args.seconds)
    clients = [AsyncFeaturelensClient(address, timeout_s=60) for _ in range(8)]
    try:
        for other in clients:  # open the channels
            await steered(0, other)
        cpu_before, client_cpu_before = cpu_seconds(server_pid), time.process_time()
        calls, wall, latencies = await concurrent(
            clients, lambda on, number: steered(number, on), args.seconds
        )
        cpu_used = cpu_seconds(server_pid) - cpu_before
        client_cpu_used = time.process_time() - client_cpu_before
    finally:
        for other in clients:
            await other.close()
    figures["qps_8"] = round(calls / wall, 1)
    figures["qps_8_p50_ms"] = round(statistics.median(latencies), 3)
    figures["qps_8_p99_ms"] = round(percentile(latencies, 99), 3)
    figures["server_cpu_ms_per_query"] = round(cpu_used / calls * 1000, 3)
    figures["client_cpu_ms_per_query"] = round(client_cpu_used / calls * 1000, 3)
    logger.info("8 clients: %.0f qps (p50 %.1f ms)", figures["qps_8"], figures["qps_8_p50_ms"])
    return figures


@dataclass(frozen=True)
class EngineQuery:
    """One steered query as the search service hands it to the store: unit vector and latents."""

    dense: npt.NDArray[np.float32]
    sparse: SparseVec


def engine_figures(
    edge_path: Path, queries: Sequence[EngineQuery], sae_id: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The raw engine on the steered queries: the store's hybrid query in this process (step 6)."""
    from featurelens.store import EdgeDocumentStore

    fields = ["title", "categories", "date"]  # the service's hit fields (convert.HIT_FIELDS)

    def request(number: int) -> QueryRequest:
        query = queries[number % len(queries)]
        return QueryRequest(
            SearchMode.HYBRID, dense=query.dense, sparse=query.sparse, sae_id=sae_id, top_k=10,
            with_payload=fields,
        )  # fmt: skip

    figures: dict[str, Any] = {}
    with EdgeDocumentStore(edge_path, max_search_threads=1) as store:
        for number in range(min(len(queries), 100)):  # warm-up
            store.query(CORPUS, request(number))
        latencies = []
        started = time.perf_counter()
        for number in range(args.requests):
            t = time.perf_counter()
            store.query(CORPUS, request(number))
            latencies.append((time.perf_counter() - t) * 1000)
        wall = time.perf_counter() - started
        figures["engine_p50_ms"] = round(statistics.median(latencies), 3)
        figures["engine_p99_ms"] = round(percentile(latencies, 99), 3)
        figures["engine_qps_1"] = round(args.requests / wall, 1)

        stop_at = time.perf_counter() + args.seconds
        thread_latencies: list[float] = []

        def worker(position: int) -> int:
            done = 0
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                store.query(CORPUS, request(position + done * 8))
                thread_latencies.append((time.perf_counter() - t) * 1000)
                done += 1
            return done

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            calls = sum(pool.map(worker, range(8)))
        wall = time.perf_counter() - started
        figures["engine_qps_8"] = round(calls / wall, 1)
        figures["engine_qps_8_p50_ms"] = round(statistics.median(thread_latencies), 3)
    logger.info(
        "engine: p50 %.2f ms p99 %.2f ms, %.0f qps one thread, %.0f qps 8 threads",
        figures["engine_p50_ms"], figures["engine_p99_ms"], figures["engine_qps_1"], figures["engine_qps_8"],
    )  # fmt: skip
    return figures


async def bench(
    args: argparse.Namespace,
    split: Split,
    paths: dict[str, Path],
    sae_id: str,
    server_pid: int,
    engine_queries: list[EngineQuery],
) -> dict[str, Any]:
    from featurelens.embedding import EmbeddingStore

    address = f"127.0.0.1:{args.port}"
    async with AsyncFeaturelensClient(address, timeout_s=600) as client:
        logger.info("indexing %d documents (batches of %d)", len(split.indexed), args.batch_size)
        figures = await index_corpus(client, address, paths, sae_id, args.batch_size)
        with EmbeddingStore.open(paths["store"], read_only=True) as store:
            vectors = store.get([r.id for r in split.held_out])
        texts = [r.title for r in split.held_out[: args.text_queries]]
        figures |= await query_figures(
            client, address, vectors, texts, sae_id, args, server_pid, engine_queries
        )
    return figures


# -- main -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="sentence-transformers", choices=sorted(MODELS))
    parser.add_argument("--quick", action="store_true", help="a 10,000-document slice, fewer queries")
    parser.add_argument(
        "--docs", type=int, default=None, help="documents to index (default 60,000; quick 10,000)"
    )
    parser.add_argument("--holdout", type=int, default=None, help="held-out query documents (419; quick 200)")
    parser.add_argument(
        "--requests", type=int, default=None, help="sequential queries timed (2000; quick 600)"
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="length of the 8-client run (10; quick 4)"
    )
    parser.add_argument("--text-queries", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256, help="IndexDocuments batch size")
    parser.add_argument("--epochs", type=int, default=2, help="SAE training epochs")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="empty: in-process cache")
    parser.add_argument("--log-level", default="INFO", help="the server's log level")
    parser.add_argument("--keep", type=Path, default=None, help="keep the Qdrant folder and server log here")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    docs = args.docs or (10_000 if args.quick else 60_000)
    holdout = args.holdout or (200 if args.quick else 419)
    args.requests = args.requests or (600 if args.quick else 2000)
    args.seconds = args.seconds or (4.0 if args.quick else 10.0)
    spec = MODELS[args.model]

    split = split_corpus(docs, holdout)
    logger.info("%d documents to index, %d held out as queries", len(split.indexed), len(split.held_out))
    store_path, model_id, embed_timing = embedding_store(spec, split.indexed + split.held_out, 256)
    sae_id, sae_facts = trained_sae(store_path, [r.id for r in split.indexed], args.epochs)
    redis_url = args.redis_url if redis_answers(args.redis_url) else ""

    work = Path(tempfile.mkdtemp(prefix="bench-search-", dir=CACHE))
    try:
        corpus_path = work / "corpus.jsonl"
        write_corpus({r.id for r in split.indexed}, corpus_path)
        config = {
            "redis_url": redis_url,
            "models_dir": str(CACHE / "saes"),
            "sae_id": sae_id,
            "edge_path": str(work / "qdrant"),
            "roots": [str(work), str(CACHE / "embeddings")],
        }
        with start_embedded(
            data_dir=work,
            services=["encoder", "sae", "search"],
            models=[spec],
            env=server_env(config),
            log_path=work / "server.log",
            log_level=args.log_level,
            log_format="json",
        ) as host:
            args.port = host.port
            logger.info("server pid %d on port %d", host.pid, host.port)
            paths = {"corpus": corpus_path, "store": store_path}
            engine_queries: list[EngineQuery] = []
            figures = asyncio.run(bench(args, split, paths, sae_id, host.pid, engine_queries))
        figures |= cache_counts(work / "server.log")
        # The server has closed the Qdrant folder: the engine alone, on the same steered queries.
        figures |= engine_figures(work / "qdrant", engine_queries, sae_id, args)
        figures["service_to_engine_qps"] = round(figures["qps_8"] / figures["engine_qps_8"], 3)
        figures["service_minus_engine_p50_ms"] = round(figures["p50_ms"] - figures["engine_p50_ms"], 3)
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(work / "server.log", args.keep / "server.log")
            shutil.copytree(work / "qdrant", args.keep / "qdrant", dirs_exist_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        json.dumps(
            {
                "benchmark": "search",
                "quick": args.quick,
                "model": model_id,
                "sae_id": sae_id,
                "num_latents": NUM_LATENTS,
                "k": K,
                **sae_facts,
                **figures,
                "held_out_queries": len(split.held_out),
                "index_batch_size": args.batch_size,
                "qps_8_clients": "8 AsyncFeaturelensClient (one channel each), one process",
                "query_cache": "redis" if redis_url else "in-process",
                **embed_timing,
                "mode": "hybrid rrf, top 10, 1-3 additive interventions on firing latents",
            }
        )
    )


if __name__ == "__main__":
    main()
