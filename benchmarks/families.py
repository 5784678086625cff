"""Feature families at 60k real documents: build time and memory at 6,144 and 10,240 latents, the
paper's dense co-occurrence on a slice beside ours, and feature matching across SAE sizes.

    .venv/bin/python benchmarks/families.py                # all 60,419 cs abstracts (~2 min cold)
    .venv/bin/python benchmarks/families.py --quick        # the first 10,000 documents

Run it with ``OPENBLAS_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1`` as the other
benchmarks are. What runs, and what is cached under ``.featurelens/cache/`` (gitignored):

1. **Embeddings.** Title + abstract of the records of ``arxiv_cs.jsonl.gz`` the run uses, embedded
   with ``--model`` (default ``wordllama``, ~1,400 texts/s on 2 cores; ``minilm`` is 20-100/s) into
   the embedding store ``embeddings/arxiv_cs-<model_id>``: the same store, path and timing file as
   ``benchmarks/search.py``, resumable, so either benchmark reuses what the other embedded.
2. **SAEs.** Top-k SAEs (k 32) of 3,072, 6,144 and 10,240 latents trained by the library
   (``featurelens.sae.train_sae``, ``--epochs`` epochs, batch 512) on those embeddings, cached by
   ``sae_id`` under ``saes/`` (a first full run embeds for ~40 s and trains the three in ~30 s on
   2 cores; the whole run takes ~2 minutes cold, ~1.5 warm).
   Every document is encoded by each SAE to its top-k latent indices and values (not timed).
3. **Build** (the issue's figure), for the 6,144- and 10,240-latent SAEs, from activations to
   stored families, as the family service builds them but without its network calls: the top-k
   arrays → ``activations_from_topk`` → ``cooccurrence`` → ``thresholded_edges`` →
   ``extract_families`` with the library's defaults (threshold 0.1 for every pass, 4 passes, > 3
   children, Jaccard 0.6) → ``family_stats`` → each family's direction from the decoder
   (``family_directions``) → ``FamilyStore.replace_all`` into a new embedded Qdrant (qdrant-edge)
   store under the cache. ``build_s``: wall seconds, the median of ``--repeats`` untraced runs.
   ``peak_mb``: the peak of ``tracemalloc`` over one more run (a separate run: tracing slows
   Python code down); tracemalloc sees every numpy and scipy.sparse array and every Python object
   (networkx graphs, families, store payloads), not the input top-k arrays and decoder (allocated
   before) nor the C++ scratch of scipy's kernels and of qdrant-edge (Rust). ``families``:
   families kept; ``median_children``: the median of their sizes; ``largest_families``: the five
   largest sizes (the paper: 610 families, median 6.5, for its 9,216-latent astro SAE).
4. **Dense slice.** The paper's method written plainly with numpy on the first ``--slice-docs``
   documents (5,000) and every latent of the largest SAE: a dense float32 A (docs × latents),
   C = AᵀA, the paper's normalisation C_ij / (c_i + 1), threshold 0.1, the edges as index pairs;
   float32 rather than the paper's float64, which favours the dense side. Ours on the same slice,
   the same stage (``activations_from_topk`` → ``cooccurrence`` → ``thresholded_edges``; the
   normalisations differ by design, see ``featurelens.families.cooccurrence``, the work does
   not). ``dense_slice_ratio_s`` / ``dense_slice_ratio_mb``: dense / ours, seconds (median of
   ``--repeats``) and tracemalloc peaks; above 1 means ours is faster / smaller.
   ``dense_full_gb``: what the dense A and C alone would take at all documents (float32).
5. **Matching.** ``match_features`` of the 3,072-latent SAE's decoder against the 6,144-latent
   one's (each small feature's best decoder-cosine match): ``match_s`` (median of ``--repeats``),
   with the median max cosine and the splitting map's largest split beside it.

The top-level keys are for the largest SAE measured (10,240 latents); ``by_latents`` has the
figures of each. ``target_met``: ``build_s`` ≤ 10 and ``peak_mb`` ≤ 1024 (the issue's target at
10k latents × 60k documents; meaningful only for a full run). Progress goes to stderr
(logging); the figures are the one JSON line printed last on stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from cs_embeddings import CACHE, CORPUS_FILE, embedding_store

logger = logging.getLogger("benchmarks.families")

ROOT = Path(__file__).resolve().parents[1]
K = 32
#: SAE sizes: the two families are built for, and the small one matched against the middle one.
MATCH_SMALL, MEDIUM, LARGE = 3072, 6144, 10240
THRESHOLD = 0.1
#: The SAE id the stored families are filed under (one store per run, so any id will do).
SAE_ID = "bench-families"
MODELS = {"minilm": "sentence-transformers", "sentence-transformers": "sentence-transformers"}
MODELS["wordllama"] = "wordllama"

T = TypeVar("T")


# -- data and SAEs (cached) ---------------------------------------------------------------------------


def trained_sae(
    vectors: npt.NDArray[np.float32], model_id: str, num_latents: int, epochs: int
) -> tuple[str, Path]:
    """A top-k SAE (k 32) trained on ``vectors``, cached in ``saes/<sae_id>``; its id and folder."""
    from featurelens.sae import SaeConfig, TrainConfig, data_fingerprint, make_sae_id, train_sae
    from featurelens.sae.checkpoint import TRAIN_STATE_FILE

    sae_cfg = SaeConfig(d_in=vectors.shape[1], num_latents=num_latents, k=K)
    train_cfg = TrainConfig(batch_size=512, lr=5e-4, epochs=epochs, seed=0)
    sae_id = make_sae_id(sae_cfg, train_cfg, data_fingerprint(vectors))
    models = CACHE / "saes"
    folder = models / sae_id
    if not (folder / "config.json").is_file():
        logger.info(
            "training %s: %d rows, %d latents, k %d, %d epochs", sae_id, len(vectors), num_latents, K, epochs
        )
        staging = models / f".train-bench-{sae_id}"
        shutil.rmtree(staging, ignore_errors=True)
        started = time.perf_counter()
        result = train_sae(vectors, sae_cfg, train_cfg, checkpoint_dir=staging, embedding_model=model_id)
        assert result.sae_id == sae_id, (result.sae_id, sae_id)
        (staging / TRAIN_STATE_FILE).unlink(missing_ok=True)
        os.replace(staging, folder)
        logger.info("trained %s in %.0f s", sae_id, time.perf_counter() - started)
    return sae_id, folder


def encode_topk(
    folder: Path, vectors: npt.NDArray[np.float32], batch: int = 4096
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Every row's top-k (indices, values) under the SAE in ``folder``, and its decoder (n, d_in)."""
    import torch

    from featurelens.sae import load_sae

    sae = load_sae(folder)
    indices, values = [], []
    with torch.no_grad():
        for start in range(0, len(vectors), batch):
            code = sae.encode(torch.from_numpy(vectors[start : start + batch]))
            indices.append(code.indices.numpy())
            values.append(code.values.numpy())
        decoder = sae.W_dec.detach().numpy().copy()
    return np.concatenate(indices), np.concatenate(values), decoder


# -- measuring ----------------------------------------------------------------------------------------


def timed(call: Callable[[], T], repeats: int) -> tuple[T, float]:
    """The last result of ``repeats`` calls and the median of their wall seconds."""
    seconds = []
    results: list[T] = []
    for _ in range(max(1, repeats)):
        results.clear()  # the previous result is freed before the next run
        gc.collect()
        started = time.perf_counter()
        results.append(call())
        seconds.append(time.perf_counter() - started)
    return results[0], statistics.median(seconds)


def traced_peak_mb(call: Callable[[], Any]) -> float:
    """Peak MB allocated (tracemalloc) while ``call`` runs, above what was allocated before."""
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = call()
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return (peak - base) / 2**20


# -- the methods measured -----------------------------------------------------------------------------


def build_families(
    indices: npt.NDArray[np.int64],
    values: npt.NDArray[np.float32],
    num_latents: int,
    decoder: npt.NDArray[np.float32],
    store_dir: Path,
) -> Any:
    """Top-k arrays → families stored in Qdrant, the family service's build without its network
    calls: the library's pipeline with its defaults, the family statistics, each family's
    direction from the decoder, and ``FamilyStore.replace_all`` into an embedded (qdrant-edge)
    store in ``store_dir`` (a new one each run); (families, edges)."""
    from featurelens.families import (
        GraphConfig,
        activations_from_topk,
        cooccurrence,
        extract_families,
        family_directions,
        family_stats,
        thresholded_edges,
        unit_rows,
    )
    from featurelens.store import EdgeDocumentStore, FamilyRecord, FamilyStore

    cooc = cooccurrence(activations_from_topk(indices, num_latents, values))
    edges = thresholded_edges(cooc, GraphConfig(threshold=THRESHOLD))
    families = extract_families(edges, cooc.densities, cooc.num_docs)
    family_stats(families, cooc)
    members = sorted({m for family in families for m in family.members})
    directions = family_directions(families, members, unit_rows(decoder[members]))
    items = [
        (
            FamilyRecord.of(
                SAE_ID,
                family,
                corpus="arxiv_cs",
                threshold=THRESHOLD,
                member_counts=[int(cooc.densities[m]) for m in family.members],
                documents=cooc.num_docs,
                direction_norm=norm,
            ),
            direction,
        )
        for family, (direction, norm) in zip(families, directions, strict=True)
    ]
    shutil.rmtree(store_dir, ignore_errors=True)
    store = EdgeDocumentStore(store_dir)
    try:
        FamilyStore(store).replace_all(SAE_ID, items)
    finally:
        store.close()
    return families, edges.num_edges


def ours_graph(indices: npt.NDArray[np.int64], values: npt.NDArray[np.float32], num_latents: int) -> int:
    """Ours up to the thresholded graph (the stage the dense method is compared on); edges."""
    from featurelens.families import GraphConfig, activations_from_topk, cooccurrence, thresholded_edges

    cooc = cooccurrence(activations_from_topk(indices, num_latents, values))
    return thresholded_edges(cooc, GraphConfig(threshold=THRESHOLD)).num_edges


def dense_graph(indices: npt.NDArray[np.int64], values: npt.NDArray[np.float32], num_latents: int) -> int:
    """The paper's method as its code does it: dense A, dense C = AᵀA, C_ij/(c_i + 1), threshold; edges."""
    a = np.zeros((indices.shape[0], num_latents), dtype=np.float32)
    rows = np.repeat(np.arange(indices.shape[0]), indices.shape[1]).reshape(indices.shape)
    a[rows[values > 0], indices[values > 0]] = 1.0
    c = a.T @ a
    del a
    density = np.diag(c).copy()
    normalised = c / (density[:, None] + 1.0)
    del c
    np.fill_diagonal(normalised, 0.0)
    source, _target = np.nonzero(normalised >= THRESHOLD)  # directed entries, as the paper wrote them
    return int(source.shape[0])


# -- the run ------------------------------------------------------------------------------------------


def measure_build(
    indices: npt.NDArray[np.int64],
    values: npt.NDArray[np.float32],
    num_latents: int,
    decoder: npt.NDArray[np.float32],
    repeats: int,
) -> dict[str, Any]:
    store_dir = CACHE / f"families-store-{num_latents}"

    def run() -> Any:
        return build_families(indices, values, num_latents, decoder, store_dir)

    (families, num_edges), build_s = timed(run, repeats)
    peak_mb = traced_peak_mb(run)
    shutil.rmtree(store_dir, ignore_errors=True)
    sizes = sorted((f.size for f in families), reverse=True)
    figures = {
        "documents": int(indices.shape[0]),
        "latents": num_latents,
        "build_s": round(build_s, 3),
        "peak_mb": round(peak_mb, 1),
        "families": len(families),
        "median_children": float(statistics.median(sizes)) if sizes else 0.0,
        "mean_children": round(statistics.fmean(sizes), 2) if sizes else 0.0,
        "largest_families": sizes[:5],
        "nested_families": sum(f.nested_in is not None for f in families),
        "graph_edges": num_edges,
        "dead_latents": int(num_latents - np.unique(indices[values > 0]).shape[0]),
    }
    logger.info("build at %d latents: %s", num_latents, figures)
    return figures


def measure_dense_slice(
    indices: npt.NDArray[np.int64], values: npt.NDArray[np.float32], num_latents: int, repeats: int
) -> dict[str, Any]:
    dense_edges, dense_s = timed(lambda: dense_graph(indices, values, num_latents), repeats)
    dense_mb = traced_peak_mb(lambda: dense_graph(indices, values, num_latents))
    ours_edges, ours_s = timed(lambda: ours_graph(indices, values, num_latents), repeats)
    ours_mb = traced_peak_mb(lambda: ours_graph(indices, values, num_latents))
    figures = {
        "slice_documents": int(indices.shape[0]),
        "slice_latents": num_latents,
        "dense_slice_s": round(dense_s, 3),
        "dense_slice_mb": round(dense_mb, 1),
        "ours_slice_s": round(ours_s, 4),
        "ours_slice_mb": round(ours_mb, 1),
        "dense_slice_ratio_s": round(dense_s / ours_s, 1),
        "dense_slice_ratio_mb": round(dense_mb / ours_mb, 1),
        "dense_slice_edges": dense_edges,
        "ours_slice_edges": ours_edges,
    }
    logger.info("dense slice: %s", figures)
    return figures


def measure_match(
    small: npt.NDArray[np.float32], large: npt.NDArray[np.float32], repeats: int
) -> dict[str, Any]:
    from featurelens.families import match_features, splitting_map

    match, match_s = timed(lambda: match_features(small, large), repeats)
    splits = splitting_map(small, large)
    figures = {
        "match_latents": [int(small.shape[0]), int(large.shape[0])],
        "match_s": round(match_s, 3),
        "match_median_cosine": round(float(np.median(match.cosine)), 3),
        "match_largest_split": max(len(s) for s in splits),
    }
    logger.info("match: %s", figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="wordllama", choices=sorted(MODELS), help="embedding backend")
    parser.add_argument("--quick", action="store_true", help="the first 10,000 documents")
    parser.add_argument("--docs", type=int, default=None, help="documents (all 60,419; quick 10,000)")
    parser.add_argument("--epochs", type=int, default=2, help="SAE training epochs (cached by sae_id)")
    parser.add_argument("--slice-docs", type=int, default=5000, help="documents of the dense slice")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (median)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    from featurelens.corpus import read_corpus
    from featurelens.embedding import EmbeddingStore

    docs = args.docs or (10_000 if args.quick else None)
    records = list(read_corpus(CORPUS_FILE, limit=docs))
    store_path, model_id, _ = embedding_store(MODELS[args.model], records, 256)
    with EmbeddingStore.open(store_path, read_only=True) as store:
        vectors = store.get([r.id for r in records])
    logger.info("embeddings: %s (%s)", vectors.shape, model_id)

    codes: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}
    decoders: dict[int, npt.NDArray[np.float32]] = {}
    for num_latents in (MATCH_SMALL, MEDIUM, LARGE):
        _sae_id, folder = trained_sae(vectors, model_id, num_latents, args.epochs)
        started = time.perf_counter()
        indices, values, decoders[num_latents] = encode_topk(folder, vectors)
        codes[num_latents] = (indices, values)
        logger.info(
            "encoded %d documents at %d latents in %.1f s",
            len(vectors),
            num_latents,
            time.perf_counter() - started,
        )

    by_latents = {n: measure_build(*codes[n], n, decoders[n], args.repeats) for n in (MEDIUM, LARGE)}
    indices, values = codes[LARGE]
    dense = measure_dense_slice(indices[: args.slice_docs], values[: args.slice_docs], LARGE, args.repeats)
    match = measure_match(decoders[MATCH_SMALL], decoders[MEDIUM], args.repeats)

    out: dict[str, Any] = dict(by_latents[LARGE])
    out.update(dense)
    out.update(match)
    out["target_met"] = bool(out["build_s"] <= 10 and out["peak_mb"] <= 1024)
    out["dense_full_gb"] = round((len(vectors) * LARGE + LARGE * LARGE) * 4 / 2**30, 2)
    out["by_latents"] = {str(n): figures for n, figures in by_latents.items()}
    out["model"] = model_id
    out["k"] = K
    out["sae_epochs"] = args.epochs
    out["threshold"] = THRESHOLD
    out["process_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
