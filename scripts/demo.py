"""`make demo`: the whole featurelens pipeline on real arXiv astro-ph abstracts.

1. Start the embedded server (`featurelens up`: every service in one process, one port).
2. Embed title + abstract of every paper with all-MiniLM-L6-v2 through the encoder service into
   an on-disk embedding store (a rerun finds the rows done and skips them).
3. Train a top-k SAE on those embeddings through the sae service (reused when it exists).
4. Index the corpus into Qdrant (dense vectors from the store, SAE latents as sparse vectors).
5. Find the feature that fires most selectively on cosmology (astro-ph.CO) papers and run one
   neutral query three times: unsteered, with that feature turned up, and turned down.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from featurelens.client import FeaturelensClient
from featurelens.client.types import Intervention, SaeConfig, SearchResult, SparseVector
from featurelens.corpus import count_records, read_corpus
from featurelens.embedding import EmbeddingStore, embed_corpus
from featurelens.kit.launcher import HostStartError, start_embedded

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEATURELENS_DATA_DIR", ROOT.parent / "shared" / "data"))
CORPUS_FILE = DATA / "arxiv_astro.jsonl.gz"
WORK = ROOT / ".featurelens" / "demo"
# Shared with benchmarks/sae_train.py: whichever runs first embeds the corpus, the other reuses it.
CACHE = ROOT / ".featurelens" / "cache"
STORE = CACHE / "embeddings" / "arxiv_astro-all-MiniLM-L6-v2"
CORPUS = "astro"
TARGET_CATEGORY = "astro-ph.CO"
QUERY = "We present new observations and a statistical analysis of a large sample."
STEER_WEIGHT = 0.35

# Wide tables also when the output is not a terminal (make, CI logs).
console = Console(width=None if sys.stdout.isatty() else 120)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
    )


@contextmanager
def embedded_server() -> Iterator[str]:
    """`featurelens up` in a child process, SERVING, until the block ends; its address.

    Its log goes to .featurelens/demo/server.log.
    """
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    # The services may read embedding stores and corpora only under these folders.
    roots = f'["{WORK}", "{CACHE}", "{DATA}"]'
    env.setdefault("FEATURELENS_SAE_TRAIN_DATA_ROOTS", roots)
    env.setdefault("FEATURELENS_SEARCH_CORPUS_ROOTS", roots)
    log = WORK / "server.log"
    with ExitStack() as stack:
        try:
            with console.status("starting the embedded server (loading all-MiniLM-L6-v2)..."):
                host = stack.enter_context(start_embedded(data_dir=WORK, env=env, log_path=log))
        except HostStartError as error:
            raise SystemExit(str(error)) from None
        yield host.address


def embed(client: FeaturelensClient, store_path: Path, limit: int | None) -> EmbeddingStore:
    model = next(m for m in client.encoder.list_models() if m.is_default)
    store = EmbeddingStore.open_or_create(store_path, model.id, model.dim, source_path=str(CORPUS_FILE))
    total = min(count_records(CORPUS_FILE), limit or sys.maxsize)
    with progress_bar() as bar:
        task = bar.add_task(f"embed with {model.id}", total=total, completed=len(store), rate="")
        started, done_before = time.monotonic(), len(store)

        def on_progress(processed: int, embedded: int) -> None:
            rate = embedded / max(time.monotonic() - started, 1e-9)
            label = f"{rate:,.0f} texts/s" if embedded else "cached"
            bar.update(task, completed=done_before + embedded, rate=label)

        embed_corpus(
            read_corpus(CORPUS_FILE, limit=limit),
            store,
            lambda texts: client.encoder.embed(texts).vectors,
            batch_size=128,
            progress=on_progress,
        )
        bar.update(task, completed=len(store))
    console.print(f"embedding store: {len(store):,} rows of dim {store.dim} at {store_path}")
    return store


def train(
    client: FeaturelensClient,
    store: EmbeddingStore,
    config: SaeConfig,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
) -> str:
    # Reuse the SAE of an earlier run only if it was trained on the store as it is now.
    state_file = WORK / "sae.json"
    known = {sae.sae_id for sae in client.sae.list_saes()}
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    wanted = {"rows": len(store), "config": [config.num_latents, config.k]}
    if state.get("sae_id") in known and {key: state.get(key) for key in wanted} == wanted:
        console.print(f"reusing SAE {state['sae_id']} (trained on {len(store):,} rows)")
        return str(state["sae_id"])
    with progress_bar() as bar:
        task = bar.add_task(f"train SAE latents={config.num_latents} k={config.k}", total=None, rate="")
        result = None
        for update in client.sae.train(
            str(store.path), config, epochs=epochs, batch_size=batch_size, learning_rate=lr, make_default=True
        ):
            p = update.progress
            bar.update(
                task,
                total=p.total or None,
                completed=p.done,
                rate=f"NMSE {update.nmse:.3f} dead {update.dead_fraction:.1%} {p.rate_per_s:,.0f}/s",
            )
            result = update.result or result
    if result is None:
        raise SystemExit("training ended without a result")
    state_file.write_text(json.dumps({"sae_id": result.sae_id, **wanted}))
    m = result.metrics
    console.print(
        f"trained {result.sae_id}: train NMSE {m.train_nmse:.3f}, validation NMSE {m.val_nmse:.3f}, "
        f"dead {m.dead_fraction:.1%}, dense {m.dense_fraction:.1%}"
    )
    return result.sae_id


def index(client: FeaturelensClient, store: EmbeddingStore, sae_id: str, limit: int | None) -> None:
    for corpus in client.search.list_corpora():
        if corpus.corpus == CORPUS and sae_id in corpus.sae_ids and corpus.documents >= (limit or len(store)):
            console.print(f"corpus '{CORPUS}' already indexed ({corpus.documents:,} documents)")
            return
    with progress_bar() as bar:
        task = bar.add_task("index into Qdrant", total=min(len(store), limit or sys.maxsize), rate="")
        for update in client.search.index_documents(
            CORPUS,
            corpus_path=str(CORPUS_FILE),
            embeddings_path=str(store.path),
            embedding_model=store.model_id,
            sae_ids=[sae_id],
            limit=limit,
        ):
            bar.update(task, completed=update.indexed, rate=f"{update.progress.rate_per_s:,.0f} docs/s")
            if update.failed_ids:
                console.print(f"[red]{len(update.failed_ids)} documents failed: {update.failure_reason}")


def cosmology_feature(client: FeaturelensClient, sae_id: str, categories: dict[str, tuple[str, ...]]) -> int:
    """The feature whose activation mass lies most on astro-ph.CO papers (among features that
    fire on at least 1% of the corpus, so that it is a topic rather than a quirk)."""
    fires: collections.Counter[int] = collections.Counter()
    mass: collections.Counter[int] = collections.Counter()
    on_target: collections.Counter[int] = collections.Counter()
    documents = 0
    for batch in client.search.export_activations(CORPUS, sae_id=sae_id):
        for doc_id, latents in zip(batch.doc_ids, batch.latents, strict=True):
            documents += 1
            is_target = TARGET_CATEGORY in categories.get(doc_id, ())
            for feature, value in zip(latents.indices.tolist(), latents.values.tolist(), strict=True):
                fires[feature] += 1
                mass[feature] += value
                on_target[feature] += value * is_target
    candidates = [f for f, n in fires.items() if n >= documents // 100]
    return max(candidates, key=lambda f: on_target[f] / mass[f])


def share(result: SearchResult, categories: dict[str, tuple[str, ...]]) -> float:
    hits = result.hits
    return sum(TARGET_CATEGORY in categories.get(h.document.id, ()) for h in hits) / max(len(hits), 1)


def show(title: str, result: SearchResult, categories: dict[str, tuple[str, ...]]) -> None:
    table = Table(title=f"{title}   ({TARGET_CATEGORY} in top 10: {share(result, categories):.0%})")
    table.add_column("rank", justify="right")
    table.add_column("was", justify="right")
    table.add_column("categories")
    table.add_column("title")
    for hit in result.hits:
        was = "" if not result.dropped and hit.rank_before == 0 else str(hit.rank_before or "new")
        cats = ", ".join(categories.get(hit.document.id, ())[:2])
        table.add_row(str(hit.rank), was, cats, hit.document.title[:80])
    console.print(table)


def as_dict(latents: SparseVector) -> dict[int, float]:
    return dict(zip(latents.indices.tolist(), latents.values.tolist(), strict=True))


def moved_features(client: FeaturelensClient, sae_id: str, query: np.ndarray, steer: Intervention) -> None:
    steered = client.sae.steer(query, [steer], sae_id=sae_id)
    before = as_dict(steered.latents_before)
    after = as_dict(steered.latents_after)
    changes = {f: after.get(f, 0.0) - before.get(f, 0.0) for f in before.keys() | after.keys()}
    top = sorted(changes.items(), key=lambda kv: -abs(kv[1]))[:6]
    moved = ", ".join(f"{f}: {before.get(f, 0):.2f}→{after.get(f, 0):.2f}" for f, _ in top)
    console.print(f"  query latents that moved most (feature: before→after): {moved}")
    console.print(f"  cosine(original, steered query) = {steered.cosine_to_original:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latents", type=int, default=3072)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N papers (a quicker first run)"
    )
    args = parser.parse_args()
    if not CORPUS_FILE.exists():
        raise SystemExit(f"corpus not found: {CORPUS_FILE} (set FEATURELENS_DATA_DIR)")

    with embedded_server() as address, FeaturelensClient(address, timeout_s=120) as client:
        console.rule("1. embed")
        store = embed(client, STORE, args.limit)
        console.rule("2. train a top-k SAE")
        config = SaeConfig(num_latents=args.latents, k=args.k)
        sae_id = train(client, store, config, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
        console.rule("3. index into Qdrant")
        index(client, store, sae_id, args.limit)

        console.rule("4. steer a search")
        categories = {r.id: r.categories for r in read_corpus(CORPUS_FILE)}
        feature = cosmology_feature(client, sae_id, categories)
        top = client.search.top_documents(CORPUS, feature, sae_id=sae_id, n=3)
        console.print(f"feature {feature} fires most selectively on {TARGET_CATEGORY}; its top papers:")
        for doc in top:
            console.print(f"  {doc.activation:.2f}  {doc.document.title[:90]}")
        console.print(f'\nquery: "{QUERY}"  (hybrid dense + sparse search, top 10)\n')
        query_vector = client.encoder.embed([QUERY]).vectors[0]
        baseline = client.search.search(CORPUS, vector=query_vector, mode="hybrid", sae_id=sae_id)
        show("unsteered", baseline, categories)
        for sign, name in ((+1, "up"), (-1, "down")):
            steer = Intervention(feature=feature, weight=sign * STEER_WEIGHT)
            result = client.search.search(
                CORPUS,
                vector=query_vector,
                mode="hybrid",
                sae_id=sae_id,
                interventions=[steer],
                with_rank_changes=True,
            )
            show(f"feature {feature} turned {name} (weight {steer.weight:+.2f})", result, categories)
            moved_features(client, sae_id, query_vector, steer)


if __name__ == "__main__":
    main()
