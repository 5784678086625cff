"""What a data folder holds once its host has stopped, read with the real engines: the corpus in
qdrant-edge, and the SAE from its checkpoint."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from featurelens.sae import load_sae
from featurelens.store import EdgeDocumentStore, StoredPoint


def stored_points(data: Path, corpus: str, sae_id: str) -> list[StoredPoint]:
    """Every point of ``corpus`` with its dense vector and the SAE's sparse one."""
    store = EdgeDocumentStore(data / "qdrant")
    try:
        points: list[StoredPoint] = []
        offset: str | None = None
        while True:
            page = store.scroll(
                corpus, limit=512, offset=offset, with_payload=True, with_dense=True, with_sparse=[sae_id]
            )
            points.extend(page.points)
            if page.next_offset is None:
                return points
            offset = page.next_offset
    finally:
        store.close()


def check_corpus(data: Path, corpus: str, sae_id: str, expected_ids: set[str]) -> None:
    """Every expected document once, and each one's sparse vector the SAE's code of its dense one."""
    points = stored_points(data, corpus, sae_id)
    counts = Counter(point.doc_id for point in points)
    repeated = {doc_id: n for doc_id, n in counts.items() if n > 1}
    assert not repeated, f"documents stored more than once: {repeated}"
    assert set(counts) == expected_ids
    sae = load_sae(data / "sae" / "models" / sae_id)
    dense = np.stack([np.asarray(point.dense, dtype=np.float32) for point in points])
    with torch.no_grad():
        code = sae.encode(torch.from_numpy(dense))
    stale = []
    for row, point in enumerate(points):
        assert sae_id in point.sparse, f"{point.doc_id} has no sparse vector of {sae_id}"
        stored = point.sparse[sae_id]
        values = code.values[row].numpy()
        indices = code.indices[row].numpy()
        firing = values > 0
        want = dict(zip(indices[firing].tolist(), values[firing].tolist(), strict=True))
        got = dict(zip(stored.indices.tolist(), stored.values.tolist(), strict=True))
        if set(want) != set(got) or not np.allclose([got[i] for i in want], list(want.values()), atol=1e-4):
            stale.append(point.doc_id)
    assert not stale, (
        f"{len(stale)} documents carry a sparse vector that is not their dense one's code: {stale[:5]}"
    )
