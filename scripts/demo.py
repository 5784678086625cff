"""`make demo`: the whole featurelens pipeline on real arXiv astro-ph abstracts.

1. Start the embedded server (`featurelens up`: every service in one process, one port).
2. Embed title + abstract of every paper with all-MiniLM-L6-v2 through the encoder service into
   an on-disk embedding store (a rerun finds the rows done and skips them).
3. Train a top-k SAE on those embeddings through the sae service (reused when it exists).
4. Index the corpus into Qdrant (dense vectors from the store, SAE latents as sparse vectors),
   all but 5% of the papers, held out (by id) as queries for `make eval`.
5. Find the feature that fires most selectively on cosmology (astro-ph.CO) papers and run one
   neutral query three times: unsteered, with that feature turned up, and turned down.
6. Label every live feature (the offline labeller; or an OpenAI-compatible endpoint named by
   FEATURELENS_LLM_BASE_URL, whose answers Redis caches so that a second run makes no calls),
   show the best and the worst labels with their scores, and steer the query by a phrase.
7. Build the feature families (co-occurrence trees, labelled from their members' labels), print
   their statistics beside the paper's, draw the family of the cosmology feature as a tree, and
   run the query steered by the whole family.
8. Serve the web explorer (the HTTP gateway) on the stack just built and print its URL; keep
   serving until Ctrl-C when stdin is a terminal or --serve is given, else stop. The HTTP port
   (--http-port, default 8080) is taken at the start: when it is busy the demo says so and stops
   before doing any work.

LLM settings, all optional (the key is read by the server, never printed):
  FEATURELENS_LLM_BASE_URL        e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1
  FEATURELENS_LLM_API_KEY_FILE    a file holding the key (or FEATURELENS_LABELLING_LLM_API_KEY)
  FEATURELENS_LLM_INTERPRETER / FEATURELENS_LLM_PREDICTOR    models (default gpt-4o-mini)
  FEATURELENS_LLM_FEATURES        how many features to label with the LLM (default 100)
  FEATURELENS_LLM_BUDGET_USD      the job's budget (default 1)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from featurelens.cli.families import family_tree
from featurelens.client import FeaturelensClient
from featurelens.client.types import (
    Family,
    FamilyBuildResult,
    FeatureLabel,
    Intervention,
    SaeConfig,
    SearchResult,
    SparseVector,
)
from featurelens.corpus import count_records, held_out, read_corpus
from featurelens.embedding import EmbeddingStore, embed_corpus
from featurelens.kit.launcher import HostStartError, start_embedded
from featurelens.services.gateway.server import Gateway, bind
from featurelens.services.gateway.settings import GatewaySettings

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
PHRASE = "cosmic microwave background"
#: A family is steered along its normalised direction, so one unit moves the unit query as far as
#: a feature's weight of 1; a family is broader than one feature, so it takes a larger weight.
FAMILY_WEIGHT = 1.0
#: The paper's figures for its astro-ph SAE of 9,216 latents (O'Neill et al. 2024, section 5).
PAPER_FAMILIES = 610
PAPER_MEDIAN_CHILDREN = 6.5
DOMAIN = "astrophysics arXiv abstracts (astro-ph)"
LLM_BASE_URL = os.environ.get("FEATURELENS_LLM_BASE_URL", "")
REDIS_URL = "redis://127.0.0.1:6379/0"

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


def server_env() -> dict[str, str]:
    """The embedded server's environment: the folders its services may read, and the LLM endpoint
    (with Redis for its answers) when FEATURELENS_LLM_BASE_URL is set."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    # The encoder's engine is its own rule (FEATURELENS_ENCODER_ENGINE, default auto: ONNX Runtime
    # on CPU when it agrees with PyTorch); its one-time ONNX export is shared with the benchmarks.
    env.setdefault("FEATURELENS_ENCODER_ONNX_CACHE_DIR", str(CACHE / "onnx"))
    # The services may read embedding stores and corpora only under these folders.
    roots = f'["{WORK}", "{CACHE}", "{DATA}"]'
    env.setdefault("FEATURELENS_SAE_TRAIN_DATA_ROOTS", roots)
    env.setdefault("FEATURELENS_SEARCH_CORPUS_ROOTS", roots)
    if LLM_BASE_URL:
        # The server reads the key itself; Redis keeps the LLM's answers from one run to the next.
        if "FEATURELENS_LLM_API_KEY_FILE" in env:
            env.setdefault("FEATURELENS_LABELLING_LLM_API_KEY_FILE", env["FEATURELENS_LLM_API_KEY_FILE"])
        env.setdefault("FEATURELENS_LABELLING_LLM_ALLOWED_BASE_URLS", json.dumps([LLM_BASE_URL]))
        if redis_answers():
            env.setdefault("FEATURELENS_REDIS_URL", REDIS_URL)
        else:
            console.print(
                "[yellow]Redis does not answer at 127.0.0.1:6379: LLM answers are cached only until "
                "the server stops"
            )
    return env


@contextmanager
def embedded_server() -> Iterator[str]:
    """`featurelens up` in a child process, SERVING, until the block ends; its address.

    Its log goes to .featurelens/demo/server.log.
    """
    env = server_env()
    log = WORK / "server.log"
    with ExitStack() as stack:
        try:
            with console.status(
                "starting the embedded server (loading all-MiniLM-L6-v2; a first run exports it to ONNX)..."
            ):
                host = stack.enter_context(start_embedded(data_dir=WORK, env=env, log_path=log))
        except HostStartError as error:
            raise SystemExit(str(error)) from None
        yield host.address


#: Where the explorer listens: loopback only (the demo's stack is for this machine).
HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8080


def reserve_http_port(port: int) -> socket.socket:
    """The explorer's listening socket, bound now so that a busy port stops the demo at once."""
    try:
        return bind(HTTP_HOST, port)
    except OSError as error:
        raise SystemExit(
            f"cannot serve the explorer on {HTTP_HOST}:{port} ({error.strerror or error}): stop what "
            f"uses that port, or choose another with make demo DEMO_ARGS='--http-port {port + 1}'"
        ) from None


def explorer_url(port: int, sae_id: str, query: str = QUERY) -> str:
    """The explorer's search page on the demo's corpus and SAE, with the demo's query."""
    params = urlencode({"corpus": CORPUS, "sae": sae_id, "mode": "hybrid", "q": query})
    return f"http://{HTTP_HOST}:{port}/search?{params}"


def keep_serving(serve: bool, stdin_is_terminal: bool) -> bool:
    """Serve until Ctrl-C when asked (--serve) or when someone sits at a terminal."""
    return serve or stdin_is_terminal


@contextmanager
def serving_explorer(grpc_address: str, sock: socket.socket) -> Iterator[int]:
    """The HTTP gateway (JSON API and explorer) on ``sock`` in front of the embedded server, served
    from a thread of its own until the block ends; its port."""
    settings = GatewaySettings(
        host=HTTP_HOST,
        port=int(sock.getsockname()[1]),
        encoder_address=grpc_address,
        sae_address=grpc_address,
        search_address=grpc_address,
        labelling_address=grpc_address,
        family_address=grpc_address,
    )
    gateway = Gateway(settings, sock)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failed: list[BaseException] = []

    async def serve() -> None:
        gateway.start()
        try:
            await gateway.wait_started()
        except BaseException as error:
            failed.append(error)
            raise
        finally:
            started.set()
        await gateway.server_task()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="explorer", daemon=True)
    thread.start()
    started.wait(timeout=60)
    if failed or not started.is_set():
        raise SystemExit(f"the explorer did not start: {failed[0] if failed else 'timed out'}")
    try:
        yield gateway.port
    finally:
        asyncio.run_coroutine_threadsafe(gateway.stop(), loop).result(timeout=30)
        thread.join(timeout=30)
        loop.close()


def wait_for_ctrl_c() -> None:
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("\nstopping")


def redis_answers() -> bool:
    """Whether a Redis server answers PING at 127.0.0.1:6379."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


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
    *,
    latents: int | None,
    k: int,
    epochs: int | None,
    batch_size: int,
    lr: float,
    input_noise: float,
) -> str:
    """Train the demo's SAE through the sae service and print its held-out (validation) NMSE first.

    With --latents 0 / --epochs 0 the run is sized from the corpus by featurelens-core's
    default_train_size. The service keeps the epoch with the best validation NMSE and stops early
    when it stalls; ``input_noise`` regularises the run (seeded noise on each training batch); the
    validation NMSE is the figure printed first.
    """
    from featurelens.sae import default_train_size  # torch-free: the configs and the size rule

    size = default_train_size(len(store), k=k)
    config = SaeConfig(num_latents=latents or size.num_latents, k=k)
    epochs = epochs or size.epochs
    # Reuse the SAE of an earlier run only if it was trained on the store as it is now.
    state_file = WORK / "sae.json"
    known = {sae.sae_id for sae in client.sae.list_saes()}
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    wanted = {
        "rows": len(store),
        "config": [config.num_latents, config.k],
        "epochs": epochs,
        "input_noise": input_noise,
    }
    if state.get("sae_id") in known and {key: state.get(key) for key in wanted} == wanted:
        console.print(f"reusing SAE {state['sae_id']} (trained on {len(store):,} rows)")
        return str(state["sae_id"])
    with progress_bar() as bar:
        task = bar.add_task(
            f"train SAE latents={config.num_latents} k={config.k} (up to {epochs} epochs)",
            total=None,
            rate="",
        )
        result = None
        for update in client.sae.train(
            str(store.path),
            config,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            input_noise=input_noise,
            make_default=True,
        ):
            p = update.progress
            # -1 on the wire until the first epoch has been validated.
            val = f"{update.val_nmse:.3f}" if update.val_nmse >= 0 else "-"
            bar.update(
                task,
                total=p.total or None,
                completed=p.done,
                rate=f"val NMSE {val} train NMSE {update.nmse:.3f} "
                f"dead {update.dead_fraction:.1%} {p.rate_per_s:,.0f}/s",
            )
            result = update.result or result
    if result is None:
        raise SystemExit("training ended without a result")
    state_file.write_text(json.dumps({"sae_id": result.sae_id, **wanted}))
    m = result.metrics
    console.print(
        f"trained {result.sae_id}: validation NMSE {m.val_nmse:.3f} (held-out abstracts; "
        f"train NMSE {m.train_nmse:.3f}), dead {m.dead_fraction:.1%}, dense {m.dense_fraction:.1%}"
    )
    return result.sae_id


def index(client: FeaturelensClient, store: EmbeddingStore, sae_id: str, limit: int | None) -> None:
    """Index the corpus but its held-out papers (``featurelens.corpus.held_out``: 5%, by id), whose
    titles `make eval` uses as queries that are not in the index."""
    held = [r.id for r in read_corpus(CORPUS_FILE, limit=limit) if held_out(r.id)]
    expected = min(len(store), limit or sys.maxsize) - len(held)
    indexed = False
    for corpus in client.search.list_corpora():
        if corpus.corpus == CORPUS and sae_id in corpus.sae_ids and corpus.documents >= expected:
            console.print(f"corpus '{CORPUS}' already indexed ({corpus.documents:,} documents)")
            indexed = True
    if not indexed:
        papers = (r for r in read_corpus(CORPUS_FILE, limit=limit) if not held_out(r.id))
        with progress_bar() as bar:
            task = bar.add_task("index into Qdrant", total=expected, rate="")
            for update in client.search.index_documents(
                CORPUS,
                papers,
                embeddings_path=str(store.path),
                embedding_model=store.model_id,
                sae_ids=[sae_id],
            ):
                bar.update(task, completed=update.indexed, rate=f"{update.progress.rate_per_s:,.0f} docs/s")
                if update.failed_ids:
                    console.print(f"[red]{len(update.failed_ids)} documents failed: {update.failure_reason}")
    # An index made before papers were held out holds them: take them out (0 when it does not).
    removed = client.search.delete_documents(CORPUS, held) if held else 0
    console.print(
        f"{len(held):,} papers held out of the index as evaluation queries"
        + (f" ({removed:,} removed from an older index)" if removed else "")
    )


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


def label(client: FeaturelensClient, sae_id: str) -> None:
    """Label the SAE's features: every live one offline (a rerun skips those done), or the first
    FEATURELENS_LLM_FEATURES with the LLM, relabelled each run so that the cache shows."""
    options: dict[str, object] = {"domain": DOMAIN}
    if LLM_BASE_URL:
        count = int(os.environ.get("FEATURELENS_LLM_FEATURES", "100"))
        options |= {
            "llm_base_url": LLM_BASE_URL,
            "interpreter_model": os.environ.get("FEATURELENS_LLM_INTERPRETER", "gpt-4o-mini"),
            "predictor_model": os.environ.get("FEATURELENS_LLM_PREDICTOR", "gpt-4o-mini"),
            "budget_usd": float(os.environ.get("FEATURELENS_LLM_BUDGET_USD", "1")),
            "features": features_by_frequency(client, sae_id)[:count],
            "overwrite": True,
        }
        console.print(f"labelling {count} features with {options['interpreter_model']} at {LLM_BASE_URL}")
    else:
        console.print("labelling every live feature offline (set FEATURELENS_LLM_BASE_URL for an LLM)")
    last = None
    with progress_bar() as bar:
        task = bar.add_task("label features", total=None, rate="")
        for update in client.labelling.label_features(sae_id, CORPUS, **options):  # type: ignore[arg-type]
            p = update.progress
            bar.update(task, total=p.total or None, completed=p.done, rate=f"{p.rate_per_s:,.1f}/s")
            last = update
    if last is None:
        raise SystemExit("labelling answered nothing")
    console.print(last.progress.message)
    console.print(
        f"LLM calls {last.llm_calls:,}, cache hits {last.cache_hits:,}, tokens {last.tokens_used:,}, "
        f"cost ${last.cost_usd:.4f}" + ("  [yellow]stopped at the budget" if last.budget_exhausted else "")
    )


def features_by_frequency(client: FeaturelensClient, sae_id: str) -> list[int]:
    """Live features, most frequent first (the LLM labels the features users meet most)."""
    fires: collections.Counter[int] = collections.Counter()
    for batch in client.search.export_activations(CORPUS, sae_id=sae_id):
        for latents in batch.latents:
            fires.update(latents.indices.tolist())
    return [feature for feature, _ in fires.most_common()]


def show_labels(client: FeaturelensClient, sae_id: str) -> None:
    labels = list(client.labelling.list_labels(sae_id, page_size=1000))
    scored = [label for label in labels if label.pearson_r is not None]
    table = Table(title=f"{len(labels):,} labels of {sae_id}: the best and the worst by Pearson r")
    for column in ("feature", "label", "r", "AUROC", "AUROC hard", "F1", "density"):
        table.add_column(column, justify="left" if column == "label" else "right")

    def row(label: FeatureLabel) -> None:
        r = "—" if label.pearson_r is None else f"{label.pearson_r:.2f}"
        table.add_row(
            str(label.feature),
            label.label[:60],
            r,
            f"{label.embedding_auroc:.2f}",
            f"{label.embedding_auroc_hard:.2f}",
            f"{label.f1:.2f}",
            f"{label.density:.2%}",
        )

    for label in scored[:8]:
        row(label)
    table.add_section()
    for label in scored[-4:]:
        row(label)
    console.print(table)
    if scored:
        mean = sum(label.embedding_auroc for label in labels) / len(labels)
        hard = sum(label.embedding_auroc_hard for label in labels) / len(labels)
        console.print(
            f"mean embedding AUROC: {mean:.3f} against random negatives, {hard:.3f} against hard ones"
        )


def steer_by_phrase(
    client: FeaturelensClient, sae_id: str, query_vector: np.ndarray, categories: dict[str, tuple[str, ...]]
) -> None:
    matches = client.labelling.search_features(sae_id, PHRASE, top_k=3)
    console.print(f'features whose labels are closest to "{PHRASE}":')
    for match in matches:
        console.print(f"  {match.score:.2f}  feature {match.label.feature}: {match.label.label}")
    steer = Intervention(phrase=PHRASE, weight=STEER_WEIGHT)
    result = client.search.search(
        CORPUS,
        vector=query_vector,
        mode="hybrid",
        sae_id=sae_id,
        interventions=[steer],
        with_rank_changes=True,
        explain=True,
    )
    for steered in result.steered:
        console.print(
            f"phrase {steered.phrase!r} -> feature {steered.feature} {steered.label!r} "
            f"(match {steered.match_score or 0:.2f}), weight {steered.weight:+.2f}"
        )
    show(f'steered by the phrase "{PHRASE}"', result, categories)
    if result.hits:
        top = result.hits[0]
        shared = ", ".join(f"{c.label or c.feature} ({c.contribution:.2f})" for c in top.explanation[:4])
        console.print(f"  why the first hit matched (labelled features it shares with the query): {shared}")


def build_families(client: FeaturelensClient, sae_id: str) -> FamilyBuildResult:
    """Build the SAE's families (seconds; a rerun rebuilds them) and print their statistics."""
    options: dict[str, object] = {"domain": DOMAIN}
    if LLM_BASE_URL:
        options["interpreter_model"] = os.environ.get("FEATURELENS_LLM_INTERPRETER", "gpt-4o-mini")
    result = None
    with progress_bar() as bar:
        task = bar.add_task("build families", total=None, rate="")
        for update in client.families.build_families(CORPUS, sae_id=sae_id, **options):  # type: ignore[arg-type]
            p = update.progress
            bar.update(task, total=p.total or None, completed=p.done, rate=p.stage)
            result = update.result or result
    if result is None:
        raise SystemExit("the family service ended the build without its result")
    stats = result.statistics
    table = Table(title=f"feature families of {sae_id} (the paper: its astro SAE of 9,216 latents)")
    for column in ("", "ours", "paper"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row("families", f"{stats.families:,}", f"{PAPER_FAMILIES}")
    table.add_row("median children", f"{stats.median_children:.1f}", f"{PAPER_MEDIAN_CHILDREN}")
    table.add_row("mean children", f"{stats.mean_children:.1f}", "")
    table.add_row(
        "parent–child / child–child co-occurrence", f"{stats.parent_child:.3f} / {stats.child_child:.3f}", ""
    )
    table.add_row(
        "block-diagonal score / permuted control", f"{stats.block_score:.3f} / {stats.block_control:.3f}", ""
    )
    table.add_row("features in a family", f"{stats.features_in_families:,}", "")
    console.print(table)
    console.print(f"family labels: {result.llm_calls:,} LLM calls, ${result.cost_usd:.4f}")
    return result


def family_of(client: FeaturelensClient, sae_id: str, feature: int) -> Family:
    """The most specific family the feature belongs to; else the largest family."""
    [membership] = client.families.feature_families([feature], sae_id)
    if membership.family_ids:
        return client.families.get_family(membership.family_ids[0], sae_id)
    console.print(f"feature {feature} is in no family; showing the largest family instead")
    largest = next(iter(client.families.list_families(sae_id, page_size=1)))
    return client.families.get_family(largest.family_id, sae_id)


def steer_by_family(
    client: FeaturelensClient,
    sae_id: str,
    family: Family,
    query_vector: np.ndarray,
    categories: dict[str, tuple[str, ...]],
) -> None:
    console.print(f"family {family.family_id} {family.label!r}: {len(family.features)} features")
    console.print(family_tree(family))
    baseline = client.search.search(CORPUS, vector=query_vector, mode="hybrid", sae_id=sae_id)
    show("unsteered", baseline, categories)
    steer = Intervention(family_id=family.family_id, weight=FAMILY_WEIGHT)
    result = client.search.search(
        CORPUS,
        vector=query_vector,
        mode="hybrid",
        sae_id=sae_id,
        interventions=[steer],
        with_rank_changes=True,
    )
    show(f"family {family.family_id} turned up (weight {FAMILY_WEIGHT:+.2f})", result, categories)
    weights = {s.weight for s in result.steered}
    console.print(
        f"  the family expanded to {len(result.steered)} features, each steered by "
        f"{min(weights):.3f} (weight / |sum of their decoder directions| = {family.direction_norm:.2f}); "
        f"cosine(original, steered query) = {result.steer_cosine:.3f}"
    )


#: Standard deviation of the noise on each training batch of the demo's SAE (TrainConfig.input_noise).
DEMO_INPUT_NOISE = 0.055


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # 1,536 latents (between the size rule's sparsity floor of 1,024 and the paper's smallest astro
    # SAE of 3,072), trained up to 200 epochs on noisy batches: on 10.5k training rows that is the
    # SAE whose held-out NMSE is within 15% of its training NMSE and no worse than the 3,072-latent,
    # 30-epoch SAE's of earlier versions (0.351); see featurelens.sae.sizing for the measurements.
    parser.add_argument(
        "--latents", type=int, default=1536, help="0: from the corpus size (default_train_size)"
    )
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument(
        "--epochs", type=int, default=200, help="at most (early stopping); 0: from the corpus size"
    )
    parser.add_argument(
        "--input-noise", type=float, default=DEMO_INPUT_NOISE, help="noise on each training batch; 0: none"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N papers (a quicker first run)"
    )
    parser.add_argument(
        "--http-port", type=int, default=DEFAULT_HTTP_PORT, help="port of the web explorer at the end"
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep serving the explorer until Ctrl-C (the default when stdin is a terminal)",
    )
    args = parser.parse_args()
    if not CORPUS_FILE.exists():
        raise SystemExit(f"corpus not found: {CORPUS_FILE} (set FEATURELENS_DATA_DIR)")
    http_socket = reserve_http_port(args.http_port)

    with embedded_server() as address, FeaturelensClient(address, timeout_s=120) as client:
        console.rule("1. embed")
        store = embed(client, STORE, args.limit)
        console.rule("2. train a top-k SAE")
        sae_id = train(
            client,
            store,
            latents=args.latents,
            k=args.k,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            input_noise=args.input_noise,
        )
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

        console.rule("5. label the features")
        label(client, sae_id)
        show_labels(client, sae_id)
        console.rule("6. steer by a phrase")
        steer_by_phrase(client, sae_id, query_vector, categories)
        console.rule("7. feature families")
        build_families(client, sae_id)
        steer_by_family(client, sae_id, family_of(client, sae_id, feature), query_vector, categories)

        console.rule("8. the web explorer")
        with serving_explorer(address, http_socket) as port:
            console.print(f"explore the features in a browser: {explorer_url(port, sae_id)}", soft_wrap=True)
            if keep_serving(args.serve, sys.stdin.isatty()):
                console.print("serving the explorer until Ctrl-C")
                wait_for_ctrl_c()


if __name__ == "__main__":
    main()
