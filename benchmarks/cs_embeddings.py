"""The embedding store of the cs corpus that the search and families benchmarks share.

Whichever runs first embeds the documents it needs into ``.featurelens/cache/embeddings/
arxiv_cs-<model_id>``; later runs embed only what is missing. A ``.timing.json`` beside the store
keeps how long embedding took, so a run that found everything cached still reports it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featurelens.corpus import Record

logger = logging.getLogger("benchmarks.cs_embeddings")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FEATURELENS_DATA_DIR", ROOT.parent / "shared" / "data"))
CORPUS_FILE = DATA / "arxiv_cs.jsonl.gz"
CACHE = ROOT / ".featurelens" / "cache"
CORPUS = "arxiv_cs"


def embedding_store(
    spec: str, records: Sequence[Record], batch_size: int
) -> tuple[Path, str, dict[str, Any]]:
    """The store holding every record's embedding (embedding what is missing); its path, model and timing."""
    from featurelens.embedding import EmbeddingStore, embed_corpus, load_backend

    backend = load_backend(spec, batch_size=64)
    path = CACHE / "embeddings" / f"{CORPUS}-{backend.model_id}"
    timing_file = path.parent / f"{path.name}.timing.json"
    store = EmbeddingStore.open_or_create(path, backend.model_id, backend.dim, source_path=str(CORPUS_FILE))
    try:
        missing = [r for r in records if r.id not in store]
        started = time.perf_counter()
        last_log = [started]

        def report(done: int, embedded: int) -> None:
            now = time.perf_counter()
            if now - last_log[0] > 10:
                last_log[0] = now
                logger.info(
                    "embedded %d / %d (%.0f texts/s)", embedded, len(missing), embedded / (now - started)
                )

        if missing:
            logger.info("embedding %d documents with %s into %s", len(missing), backend.model_id, path)
            embed_corpus(missing, store, lambda texts: backend.embed(texts).vectors, batch_size, report)
    finally:
        store.close()
    seconds = time.perf_counter() - started
    if missing:
        previous = (
            json.loads(timing_file.read_text()) if timing_file.is_file() else {"texts": 0, "seconds": 0.0}
        )
        total = {"texts": previous["texts"] + len(missing), "seconds": previous["seconds"] + seconds}
        timing_file.write_text(json.dumps(total))
        timing = {"embed_texts": len(missing), "embed_s": round(seconds, 2), "embed_cached": False}
        timing["embed_texts_per_s"] = round(len(missing) / seconds, 1)
    elif timing_file.is_file():
        total = json.loads(timing_file.read_text())
        timing = {"embed_texts": total["texts"], "embed_s": round(total["seconds"], 2), "embed_cached": True}
        timing["embed_texts_per_s"] = round(total["texts"] / total["seconds"], 1)
    else:
        timing = {"embed_texts": 0, "embed_s": 0.0, "embed_cached": True, "embed_texts_per_s": 0.0}
    return path, backend.model_id, timing
