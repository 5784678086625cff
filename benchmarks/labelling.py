"""Labelling: the LLM path's throughput and cache, and the offline labeller's speed and quality.

    .venv/bin/python benchmarks/labelling.py                  # 500 LLM features, 300 offline features
    .venv/bin/python benchmarks/labelling.py --quick          # 100 and 60

Both halves label features of a real SAE over the real astro-ph corpus, with the library's job
(``featurelens.interp``: ``run_job`` over ``label_feature``), in this process:

- **Data.** all-MiniLM-L6-v2 embeddings of the 11,636 abstracts (title + abstract), from the
  embedding store the demo and ``benchmarks/sae_train.py`` share under ``.featurelens/cache/``
  (the first run embeds the corpus: 15-30 minutes on 2 shared cores). A top-k SAE (3,072
  latents, k 32) trained by the library on them (cached under ``.featurelens/cache/saes/``), every
  document encoded, and the whole held in an ``ArraySource``. Label embeddings come from MiniLM
  in this process, behind an in-memory cache like the encoder service's.
- **LLM half.** ``--llm-features`` live features labelled through the real ``openai`` client
  against the fake OpenAI-compatible server of the tests (``libs/core/tests/fake_openai.py``,
  deterministic answers from the prompts) answering every call after ``--llm-delay-ms``
  milliseconds, in a child process (a real endpoint does not share the client's GIL); 32
  features in flight, 64 calls in flight; the answers cached in Redis
  (``--redis-url``, a fresh key prefix; in memory when Redis does not answer).
  ``llm_seconds``, ``llm_calls``, ``llm_tokens``, ``llm_usd`` (the default price table's
  gpt-4o-mini), then the same job again: ``rerun_calls`` (must be 0), ``rerun_seconds``.
  Targets: <= 20 s for 500 features; the rerun 0 calls in <= 3 s.
- **Offline half.** ``--offline-features`` live features (a seeded sample) labelled by the
  offline labeller (20 top documents shown, a background of 256 random abstracts):
  ``offline_features_per_s``, and the mean embedding AUROC of its labels
  against random negatives (``offline_auroc_random``) and hard negatives (``offline_auroc_hard``),
  next to two baselines scored on the very same held-out documents: a random other feature's
  label (``baseline_auroc_random_label``) and the title of the feature's top document
  (``baseline_auroc_top_title``). Targets: >= 50 features/s; mean AUROC >= 0.85 with random
  negatives and above both baselines by >= 0.05.

Progress goes to stderr; the figures are the one JSON line printed last on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from sae_train import load_minilm_embeddings  # noqa: E402

from featurelens.corpus import read_corpus  # noqa: E402
from featurelens.embedding.backends import load_backend  # noqa: E402
from featurelens.interp.arrays import ArraySource  # noqa: E402
from featurelens.interp.embedding_scorer import EmbeddingPredictor, score_label_embedding  # noqa: E402
from featurelens.interp.examples import gather_examples  # noqa: E402
from featurelens.interp.job import EventKind, run_job  # noqa: E402
from featurelens.interp.labelling import LabelSettings, label_feature  # noqa: E402
from featurelens.interp.llm import ChatCache, ChatClient, InMemoryChatCache, LlmConfig  # noqa: E402
from featurelens.interp.llm_labeller import LlmInterpreter, LlmPredictor  # noqa: E402
from featurelens.interp.offline import OFFLINE_EXAMPLES, OfflineInterpreter  # noqa: E402
from featurelens.interp.pricing import DEFAULT_PRICES  # noqa: E402
from featurelens.sae import SaeConfig, TrainConfig, load_sae, save_sae, train_sae  # noqa: E402

logger = logging.getLogger("benchmarks.labelling")

CORPUS = ROOT.parent / "shared" / "data" / "arxiv_astro.jsonl.gz"
CACHE = ROOT / ".featurelens" / "cache"
MODEL = "gpt-4o-mini"
DOMAIN = "astrophysics arXiv abstracts (astro-ph)"
SAE_CONFIG = SaeConfig(d_in=384, num_latents=3072, k=32)
TRAIN_CONFIG = TrainConfig(batch_size=256, lr=5e-4, epochs=30, seed=0)


class CachedEmbedder:
    """MiniLM in this process behind an LRU cache (the encoder service caches the same way)."""

    def __init__(self, size: int = 100_000) -> None:
        self.backend = load_backend("minilm")
        self.cache: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self.size = size

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for text, row in zip(missing, self.backend.embed(missing).vectors, strict=True):
                self.cache[text] = row
                if len(self.cache) > self.size:
                    self.cache.popitem(last=False)
        return np.stack([self.cache[t] for t in texts])


def load_source() -> tuple[ArraySource, dict[str, str]]:
    """The corpus, its MiniLM embeddings and a trained SAE's latents; also each document's title."""
    records = list(read_corpus(CORPUS))
    embeddings = load_minilm_embeddings()
    sae_dir = CACHE / "saes" / "labelling-bench"
    if (sae_dir / "config.json").exists():
        sae = load_sae(sae_dir)
    else:
        logger.info("training a %s SAE on %d embeddings (cached for later runs)", SAE_CONFIG, len(embeddings))
        result = train_sae(embeddings, SAE_CONFIG, TRAIN_CONFIG)
        save_sae(result.sae, sae_dir, train_cfg=TRAIN_CONFIG, data_fingerprint=result.data_fingerprint)
        sae = result.sae
    import torch

    with torch.no_grad():
        code = sae.encode(torch.from_numpy(embeddings))
    source = ArraySource.from_rows(
        [r.id for r in records],
        [f"{r.title}. {r.text}" for r in records],
        embeddings,
        code.indices.numpy(),
        code.values.numpy(),
        SAE_CONFIG.num_latents,
    )
    return source, {r.id: r.title for r in records}


def pick_features(source: ArraySource, n: int, seed: int) -> list[int]:
    """A seeded sample of live latents that fire on enough documents to make a test set."""
    counts = np.asarray((source.latents > 0).sum(axis=0)).ravel()
    usable = np.flatnonzero(counts >= 30)
    rng = np.random.default_rng(seed)
    return sorted(int(f) for f in rng.choice(usable, size=min(n, usable.size), replace=False))


_SERVE = """
import sys
sys.path.insert(0, {tests!r})
from fake_openai import labelling_responder, serve_fake_openai
with serve_fake_openai(responder=labelling_responder, delay_s={delay!r}) as fake:
    print(fake.base_url, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
"""


@contextlib.contextmanager
def fake_endpoint(delay_s: float) -> Iterator[str]:
    """The tests' fake OpenAI-compatible server in a child process; its base URL."""
    code = _SERVE.format(tests=str(ROOT / "libs" / "core" / "tests"), delay=delay_s)
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def redis_cache(url: str) -> ChatCache:
    """The service's Redis cache under a fresh prefix, or an in-memory one when Redis is down."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        logger.warning("Redis does not answer at %s: caching in memory", url)
        return InMemoryChatCache()
    from featurelens.services.labelling.cache import RedisChatCache

    return RedisChatCache(url, ttl_s=3600, prefix=f"fl:llm-bench:{uuid.uuid4().hex[:8]}")


async def llm_job(
    source: ArraySource, features: list[int], base_url: str, cache: ChatCache, embedder: CachedEmbedder
) -> dict[str, Any]:
    """One LLM labelling job: seconds, calls, tokens, dollars, cache hits, labels."""
    config = LlmConfig(base_url=base_url, api_key="bench", max_concurrency=64, max_retries=2)
    densities = source.densities()
    started = time.perf_counter()
    async with ChatClient(config, DEFAULT_PRICES, None, cache) as client:
        label_one = functools.partial(
            _label_one,
            source=source,
            densities=densities,
            interpreter=LlmInterpreter(client, MODEL),
            predictor=LlmPredictor(client, MODEL),
            embedder=embedder,
            settings=LabelSettings(domain=DOMAIN, threshold=0.5),
        )
        labelled = failed = 0
        async for event in run_job(features, label_one, concurrency=32):
            labelled += event.kind is EventKind.LABELLED
            failed += event.kind is EventKind.FAILED
        seconds = time.perf_counter() - started
        usage = client.stats.usage
    return {
        "seconds": round(seconds, 2),
        "calls": usage.calls,
        "cache_hits": usage.cache_hits,
        "tokens": usage.tokens,
        "usd": round(usage.cost_usd, 4),
        "labelled": labelled,
        "failed": failed,
    }


async def _label_one(
    feature: int, *, source: ArraySource, densities: npt.NDArray[np.float64], **parts: Any
) -> Any:
    return await label_feature(
        feature, sae_id="bench", corpus="astro", density=float(densities[feature]), source=source, **parts
    )


async def offline_half(
    source: ArraySource, titles: dict[str, str], features: list[int], embedder: CachedEmbedder
) -> dict[str, Any]:
    """Offline labels of ``features``, timed, and their embedding AUROCs beside the baselines."""
    config = OFFLINE_EXAMPLES
    rows = np.random.default_rng(3).choice(source.num_documents, size=256, replace=False)
    documents = [source.document(int(row)) for row in rows]
    background = np.stack([d.embedding for d in documents if d.embedding is not None])
    interpreter = OfflineInterpreter(
        embedder, background=background, background_texts=[d.text for d in documents]
    )
    settings = LabelSettings(examples=config, domain=DOMAIN, threshold=None)
    densities = source.densities()
    label_one = functools.partial(
        _label_one,
        source=source,
        densities=densities,
        interpreter=interpreter,
        predictor=EmbeddingPredictor(embedder),
        embedder=embedder,
        settings=settings,
    )
    started = time.perf_counter()
    outcomes = {}
    async for event in run_job(features, label_one, concurrency=4):
        if event.outcome is not None:
            outcomes[event.feature] = event.outcome.record
    seconds = time.perf_counter() - started
    labelled = sorted(outcomes)
    rng = np.random.default_rng(7)
    own_random, own_hard, other_random, title_random, examples_list = [], [], [], [], []
    for feature in labelled:
        record = outcomes[feature]
        examples = await gather_examples(source, feature, config, settings.seed, float(densities[feature]))
        other = outcomes[int(rng.choice([f for f in labelled if f != feature]))].label
        top_title = titles[examples.train_firing[0].doc_id]
        vectors = await embedder.embed([record.label, other, top_title])
        own = score_label_embedding(vectors[0], examples)
        own_random.append(own.auroc)
        own_hard.append(own.auroc_hard)
        other_random.append(score_label_embedding(vectors[1], examples).auroc)
        title_random.append(score_label_embedding(vectors[2], examples).auroc)
        examples_list.append((feature, record.label, round(own.auroc, 3), round(own.auroc_hard, 3)))
    for feature, label, auroc, hard in examples_list[:15]:
        logger.info("feature %5d  AUROC %.3f  hard %.3f  %s", feature, auroc, hard, label)
    return {
        "offline_features": len(labelled),
        "offline_seconds": round(seconds, 2),
        "offline_features_per_s": round(len(labelled) / seconds, 1),
        "offline_auroc_random": round(float(np.mean(own_random)), 4),
        "offline_auroc_hard": round(float(np.mean(own_hard)), 4),
        "baseline_auroc_random_label": round(float(np.mean(other_random)), 4),
        "baseline_auroc_top_title": round(float(np.mean(title_random)), 4),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    source, titles = load_source()
    embedder = CachedEmbedder()
    out: dict[str, Any] = {
        "documents": source.num_documents,
        "live_latents": int(source.live_features().size),
    }

    llm_features = pick_features(source, args.llm_features, seed=1)
    cache = redis_cache(args.redis_url)
    with fake_endpoint(args.llm_delay_ms / 1000) as base_url:
        first = await llm_job(source, llm_features, base_url, cache, embedder)
        logger.info("LLM job: %s", first)
        rerun = await llm_job(source, llm_features, base_url, cache, embedder)
        logger.info("rerun: %s", rerun)
    close = getattr(cache, "close", None)
    if close is not None:
        await close()
    out |= {
        "llm_features": len(llm_features),
        "llm_labelled": first["labelled"],
        "llm_seconds": first["seconds"],
        "llm_calls": first["calls"],
        "llm_tokens": first["tokens"],
        "llm_usd": first["usd"],
        "rerun_calls": rerun["calls"],
        "rerun_cache_hits": rerun["cache_hits"],
        "rerun_seconds": rerun["seconds"],
        "llm_delay_ms": args.llm_delay_ms,
    }
    offline_features = pick_features(source, args.offline_features, seed=2)
    out |= await offline_half(source, titles, offline_features, embedder)
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 LLM and 60 offline features")
    parser.add_argument("--llm-features", type=int, default=None)
    parser.add_argument("--offline-features", type=int, default=None)
    parser.add_argument("--llm-delay-ms", type=float, default=200.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    args.llm_features = args.llm_features or (100 if args.quick else 500)
    args.offline_features = args.offline_features or (60 if args.quick else 300)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per LLM call otherwise
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = asyncio.run(run(args))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
