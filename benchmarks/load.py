"""Load: concurrent clients sending mixed traffic to the embedded stack for a while; errors, latency
per RPC, throughput and the server's memory growth.

    .venv/bin/python benchmarks/load.py                  # 8 clients, 60 s (after a warm-up)
    .venv/bin/python benchmarks/load.py --quick          # 4 clients, 10 s
    .venv/bin/python benchmarks/load.py --stack small    # the small stack below even if the demo's exists

The stack: ``featurelens.kit.launcher.start_embedded`` (what ``featurelens up`` runs: every
service in one child process, qdrant-edge in process) on a data folder with an SAE, an index,
labels and families:

- ``demo`` (the default when it exists): ``.featurelens/demo`` as ``make demo`` left it
  (all-MiniLM-L6-v2 embeddings of the astro-ph abstracts, its SAE, every live feature labelled
  offline, its families);
- ``small`` (otherwise): built here once and cached under ``.featurelens/bench/load/``: the first
  ``--docs`` abstracts of ``arxiv_astro.jsonl.gz`` embedded with wordllama through the encoder, a
  small SAE trained through the sae service, the abstracts indexed, every feature labelled offline
  and the families built (about a minute on 2 cores; later runs reuse it).

The traffic: each client (its own ``AsyncFeaturelensClient``, so its own channels; all in this
process) sends one request after another, each drawn from ``MIX`` with a seeded generator:
``search`` (dense or hybrid, unsteered), ``search_steered`` (hybrid, 1-2 labelled features pushed
up or down), ``embed`` (1-4 titles), ``labels`` (GetLabels of a few labelled features, or
SearchFeatures by a phrase), ``families`` (FeatureFamilies of a few features, or GetFamily).
Query texts are real titles. A warm-up (``--warmup`` seconds of the same traffic) comes first; then
the server's RSS (``VmRSS`` of ``/proc/<pid>/status``, the launcher's child) is read, the clients
run for ``--seconds`` (the RSS read every 5 s meanwhile, printed as a series), and the RSS is read
again: ``rss_growth_mb`` is the difference (target: about 0; ``rss_growth_second_half_mb`` is the
part of it in the second half of the run, which tells a slow fill of bounded caches from a leak).
``errors``: every call that raised (target 0); ``p50_ms`` / ``p99_ms`` per kind of request;
``rps``: all requests per second. The clients share the 2 cores with the server, so latencies
include client-side time. The table goes to stdout, and one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from featurelens.client import AsyncFeaturelensClient, FeaturelensClient, Intervention
from featurelens.client.types import SaeConfig
from featurelens.corpus import read_corpus
from featurelens.embedding import EmbeddingStore, embed_corpus
from featurelens.kit.launcher import HostStartError, start_embedded

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEATURELENS_DATA_DIR", ROOT.parent / "shared" / "data"))
CORPUS_FILE = DATA / "arxiv_astro.jsonl.gz"
DEMO = ROOT / ".featurelens" / "demo"
SMALL = ROOT / ".featurelens" / "bench" / "load"
CORPUS = "astro"
SEED = 13

#: The traffic mix: kind of request -> weight.
MIX: dict[str, int] = {"search": 30, "search_steered": 25, "embed": 20, "labels": 15, "families": 10}
PHRASES = ("galaxy clusters", "dark matter", "stellar winds", "cosmic microwave background", "exoplanets")


# -- pure helpers (tested in tests/test_load_benchmark.py) ------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def traffic(rng: random.Random, count: int, mix: dict[str, int] = MIX) -> list[str]:
    """``count`` kinds of request drawn with the mix's weights."""
    kinds = list(mix)
    return rng.choices(kinds, weights=[mix[kind] for kind in kinds], k=count)


def rss_mb(pid: int) -> float:
    """The resident set size of process ``pid``, MiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


#: Seconds between readings of the server's RSS during the measured phase (printed as a series).
RSS_EVERY_S = 5.0
#: The readings of the running phase, by pid.
RSS_SAMPLES: dict[int, list[float]] = {}


async def sample_rss(pid: int, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        RSS_SAMPLES.setdefault(pid, []).append(rss_mb(pid))


# -- the stack --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """A data folder to serve and what the traffic needs from it."""

    folder: Path
    models: tuple[str, ...]
    env: dict[str, str]


@dataclass
class Targets:
    """Ids the traffic uses: found on the running stack."""

    sae_id: str
    titles: list[str]
    features: list[int]
    family_ids: list[str]


def server_env(*roots: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    folders = json.dumps([str(root) for root in roots])
    env.setdefault("FEATURELENS_SAE_TRAIN_DATA_ROOTS", folders)
    env.setdefault("FEATURELENS_SEARCH_CORPUS_ROOTS", folders)
    return env


def demo_stack() -> Stack | None:
    needed = [DEMO / "sae.json", DEMO / "qdrant", DEMO / "labels", DEMO / "families"]
    if not all(path.exists() for path in needed):
        return None
    return Stack(DEMO, (), server_env(DEMO, DATA))


def small_stack(docs: int) -> Stack:
    """The small stack, built on the first run (embeddings, SAE, index, labels, families)."""
    stack = Stack(SMALL, ("wordllama",), server_env(SMALL, DATA))
    ready = SMALL / "ready.json"
    if ready.exists() and json.loads(ready.read_text()).get("docs") == docs:
        return stack
    print(
        f"building the small stack under {SMALL} ({docs:,} abstracts; cached for later runs)...", flush=True
    )
    started = time.monotonic()
    SMALL.mkdir(parents=True, exist_ok=True)
    with start_embedded(
        data_dir=SMALL, models=stack.models, env=stack.env, log_path=SMALL / "build-server.log"
    ) as host:
        with FeaturelensClient(host.address, timeout_s=600) as client:
            model = next(m for m in client.encoder.list_models() if m.is_default)
            store = EmbeddingStore.open_or_create(
                SMALL / "embeddings", model.id, model.dim, source_path=str(CORPUS_FILE)
            )
            embed_corpus(
                read_corpus(CORPUS_FILE, limit=docs),
                store,
                lambda texts: client.encoder.embed(texts).vectors,
                batch_size=128,
            )
            result = None
            config = SaeConfig(num_latents=1024, k=16)
            for update in client.sae.train(str(store.path), config, epochs=8, seed=SEED, make_default=True):
                result = update.result or result
            if result is None:
                raise SystemExit("training ended without a result")
            sae_id = result.sae_id
            for _ in client.search.index_documents(
                CORPUS,
                read_corpus(CORPUS_FILE, limit=docs),
                embeddings_path=str(store.path),
                embedding_model=store.model_id,
                sae_ids=[sae_id],
            ):
                pass
            for _ in client.labelling.label_features(sae_id, CORPUS):
                pass
            for _ in client.families.build_families(CORPUS, sae_id=sae_id):
                pass
    ready.write_text(json.dumps({"docs": docs, "sae_id": sae_id}))
    print(f"built in {time.monotonic() - started:.0f} s", flush=True)
    return stack


async def find_targets(client: AsyncFeaturelensClient, titles: int) -> Targets:
    sae_id = next(sae.sae_id for sae in await client.sae.list_saes() if sae.is_default)
    labels = await client.labelling.list_labels(sae_id, page_size=200)
    features = [label.feature for label in labels.items]
    families = await client.families.list_families(sae_id, page_size=100)
    texts = [record.title for record in read_corpus(CORPUS_FILE, limit=titles)]
    if not features or not families.items:
        raise SystemExit(f"SAE {sae_id} has no labels or no families: the data folder is incomplete")
    return Targets(sae_id, texts, features, [family.family_id for family in families.items])


# -- the traffic ------------------------------------------------------------------------------------


@dataclass
class Record:
    """Latencies (ms) by kind of request, and the errors, of one phase."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def requests(self) -> int:
        return sum(len(values) for values in self.latencies.values()) + sum(self.errors.values())


async def one_request(
    client: AsyncFeaturelensClient, kind: str, rng: random.Random, targets: Targets
) -> None:
    title = rng.choice(targets.titles)
    sae_id = targets.sae_id
    if kind == "search":
        await client.search.search(CORPUS, title, mode=rng.choice(["dense", "hybrid"]), sae_id=sae_id)
    elif kind == "search_steered":
        interventions = [
            Intervention(feature=feature, weight=rng.choice([-1.0, -0.5, 0.5, 1.0]))
            for feature in rng.sample(targets.features, rng.randint(1, 2))
        ]
        await client.search.search(CORPUS, title, mode="hybrid", sae_id=sae_id, interventions=interventions)
    elif kind == "embed":
        await client.encoder.embed(rng.sample(targets.titles, rng.randint(1, 4)))
    elif kind == "labels":
        if rng.random() < 0.5:
            await client.labelling.get_labels(sae_id, rng.sample(targets.features, 5))
        else:
            await client.labelling.search_features(sae_id, rng.choice(PHRASES), top_k=5)
    elif kind == "families":
        if rng.random() < 0.5:
            await client.families.feature_families(rng.sample(targets.features, 3), sae_id)
        else:
            await client.families.get_family(rng.choice(targets.family_ids), sae_id)
    else:
        raise ValueError(f"unknown kind of request {kind!r}")


async def run_client(
    client: AsyncFeaturelensClient, rng: random.Random, targets: Targets, until: float, record: Record
) -> None:
    while time.monotonic() < until:
        [kind] = traffic(rng, 1)
        started = time.perf_counter()
        try:
            await one_request(client, kind, rng, targets)
        except Exception as error:  # counted, with one example each, and the load goes on
            name = f"{kind}: {type(error).__name__}"
            record.errors[name] += 1
            record.examples.setdefault(name, str(error)[:200])
            continue
        record.latencies.setdefault(kind, []).append((time.perf_counter() - started) * 1000)


async def run_phase(
    clients: Sequence[AsyncFeaturelensClient], targets: Targets, seconds: float, seed: int
) -> Record:
    record = Record()
    until = time.monotonic() + seconds
    await asyncio.gather(
        *(
            run_client(client, random.Random(seed * 1000 + index), targets, until, record)
            for index, client in enumerate(clients)
        )
    )
    return record


async def load(address: str, pid: int, args: argparse.Namespace) -> dict[str, object]:
    clients = [AsyncFeaturelensClient(address, timeout_s=60) for _ in range(args.clients)]
    try:
        targets = await find_targets(clients[0], titles=500)
        warm = await run_phase(clients, targets, args.warmup, SEED)
        rss_start = rss_mb(pid)
        started = time.monotonic()
        sampler = asyncio.create_task(sample_rss(pid, RSS_EVERY_S))
        record = await run_phase(clients, targets, args.seconds, SEED + 1)
        elapsed = time.monotonic() - started
        rss_end = rss_mb(pid)
        sampler.cancel()
        samples = [rss_start, *RSS_SAMPLES.pop(pid, []), rss_end]
    finally:
        for client in clients:
            await client.close()
    print(f"warm-up: {warm.requests():,} requests in {args.warmup:.0f} s, {sum(warm.errors.values())} errors")
    print(f"{'request':<16}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for kind in MIX:
        values = record.latencies.get(kind, [])
        print(
            f"{kind:<16}{len(values):>8,}{percentile(values, 50):>10.1f}{percentile(values, 99):>10.1f}"
            f"{max(values, default=math.nan):>10.1f}"
        )
    for name, count in record.errors.most_common():
        print(f"error {name}: {count} (e.g. {record.examples[name]})")
    requests = record.requests()
    print(
        f"{requests:,} requests in {elapsed:.1f} s ({requests / elapsed:,.1f}/s) by {args.clients} clients; "
        f"server RSS {rss_start:,.1f} -> {rss_end:,.1f} MiB"
    )
    print("server RSS every", RSS_EVERY_S, "s (MiB):", " ".join(f"{value:.0f}" for value in samples))
    half = samples[len(samples) // 2]
    return {
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": requests,
        "errors": sum(record.errors.values()),
        "rss_growth_mb": round(rss_end - rss_start, 1),
        "rps": round(requests / elapsed, 1),
        "p50_ms": {kind: round(percentile(record.latencies.get(kind, []), 50), 1) for kind in MIX},
        "p99_ms": {kind: round(percentile(record.latencies.get(kind, []), 99), 1) for kind in MIX},
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_growth_second_half_mb": round(rss_end - half, 1),
        "warmup_s": args.warmup,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--clients", type=int, default=None, help="concurrent clients (default 8; 4 with --quick)"
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="measured seconds (default 60; 10 with --quick)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="warm-up seconds (default 30; 3 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="4 clients for 10 s")
    parser.add_argument(
        "--stack", choices=["auto", "demo", "small"], default="auto", help="data folder to serve"
    )
    parser.add_argument("--docs", type=int, default=1000, help="abstracts of the small stack")
    args = parser.parse_args(argv)
    args.clients = args.clients or (4 if args.quick else 8)
    args.seconds = args.seconds or (10.0 if args.quick else 60.0)
    args.warmup = args.warmup if args.warmup is not None else (3.0 if args.quick else 30.0)
    stack = demo_stack() if args.stack in ("auto", "demo") else None
    if stack is None and args.stack == "demo":
        raise SystemExit(f"{DEMO} is missing or incomplete: run `make demo` first")
    if stack is None:
        stack = small_stack(args.docs)
    log_path = ROOT / ".featurelens" / "bench" / "load-server.log"
    print(f"serving {stack.folder} on the embedded stack (log: {log_path})...", flush=True)
    try:
        with start_embedded(
            data_dir=stack.folder, models=stack.models, env=stack.env, log_path=log_path
        ) as host:
            out = asyncio.run(load(host.address, host.pid, args))
    except HostStartError as error:
        raise SystemExit(str(error)) from None
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
