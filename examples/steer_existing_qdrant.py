"""Steer queries against a Qdrant collection you built yourself, then hand the steered query to
any engine.

What a user with an existing search stack does, start to end:

1. builds a collection with plain ``qdrant-client`` (here ``:memory:``): abstracts embedded with
   featurelens' encoder, their own payload (``tenant``, ``year``, ``title``), their own point ids;
2. attaches the SAE in their own process (``featurelens.store.attach``, encoding through the sae
   service): every point gains the SAE's sparse vector and its firing feature ids, nothing else;
3. steers a query (``client.sae.steer``) and searches their collection with their own filter, by
   the steered dense vector and by the steered sparse code on the attached vector;
4. prints the same steered query for engines featurelens does not run (Elasticsearch /
   OpenSearch ``knn`` and ``sparse_vector``, Vespa query tensors);
5. detaches, and checks the collection is exactly as it was.

Needs a running featurelens (``featurelens up``); the collection's Qdrant is the example's own
(a Qdrant server collection is attached the same way, or through ``featurelens attach``).

    python examples/steer_existing_qdrant.py --address 127.0.0.1:50051 --docs 500

Prints what it does, then one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models

from featurelens.client import FeaturelensClient, Intervention
from featurelens.store.attach import attach, detach
from featurelens.store.attach_engines import QdrantClientCollection
from featurelens.store.schema import features_field, sparse_vector_name
from featurelens.store.types import SparseVec

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv_astro.jsonl.gz"
COLLECTION = "my-papers"


def _abstracts(path: Path, n: int) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as lines:
        return [json.loads(line) for line in islice(lines, n)]


def _snapshot(qdrant: QdrantClient) -> Any:
    records, _ = qdrant.scroll(COLLECTION, limit=100_000, with_payload=True, with_vectors=True)
    params = qdrant.get_collection(COLLECTION).config.params
    points = {r.id: (r.vector, r.payload) for r in records}
    return points, params.vectors, params.sparse_vectors or {}


def _same(before: Any, after: Any) -> bool:
    """The same points, payload, vector names and config; dense values equal to 1e-6.

    qdrant-client's ``:memory:`` mode renormalises a point's cosine vectors when another vector of
    the point is written (values move by ~1e-8); a Qdrant server and qdrant-edge store them as given.
    """
    if before[1:] != after[1:] or before[0].keys() != after[0].keys():
        return False
    for pid, (vectors, payload) in before[0].items():
        new_vectors, new_payload = after[0][pid]
        if payload != new_payload or vectors.keys() != new_vectors.keys():
            return False
        if any(not np.allclose(vectors[name], new_vectors[name], rtol=0, atol=1e-6) for name in vectors):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", default="127.0.0.1:50051", help="featurelens (featurelens up) host:port")
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--data", type=Path, default=DATA, help="a JSONL.gz of abstracts")
    parser.add_argument("--query", default="we present new observations of galaxy clusters")
    parser.add_argument("--feature", type=int, default=3, help="the feature to turn up")
    parser.add_argument("--weight", type=float, default=4.0)
    args = parser.parse_args()

    featurelens = FeaturelensClient(args.address)
    papers = _abstracts(args.data, args.docs)

    # 1. The user's own collection: their ids, their payload, their vector name.
    vectors = featurelens.encoder.embed([f"{p['title']}. {p['abstract']}" for p in papers]).vectors
    qdrant = QdrantClient(":memory:")
    qdrant.create_collection(
        COLLECTION,
        vectors_config={"text": models.VectorParams(size=vectors.shape[1], distance=models.Distance.COSINE)},
    )
    qdrant.upsert(
        COLLECTION,
        [
            models.PointStruct(
                id=i,
                vector={"text": vectors[i].tolist()},
                payload={"title": p["title"], "tenant": "acme" if i % 2 else "globex", "year": 2000 + i % 25},
            )
            for i, p in enumerate(papers)
        ],
    )
    before = _snapshot(qdrant)
    print(f"built {COLLECTION!r}: {len(papers)} points, vector 'text' ({vectors.shape[1]} dims)")

    # 2. Attach the SAE: its latents come from the sae service.
    sae_id = featurelens.sae.encode(vectors[:1]).sae_id

    def encode(dense: npt.NDArray[np.float32]) -> list[SparseVec]:
        rows = featurelens.sae.encode(dense, sae_id).rows
        return [SparseVec(row.indices, row.values) for row in rows]

    collection = QdrantClientCollection(qdrant, COLLECTION)
    started = time.perf_counter()
    for progress in attach(collection, sae_id, "text", encode, batch_size=128):
        last = progress
    attach_s = time.perf_counter() - started
    print(f"attached SAE {sae_id!r}: {last.done} points in {attach_s:.2f}s")

    # 3. Steer the query and search with the user's own filter.
    query = featurelens.encoder.embed([args.query]).vectors[0]
    steered = featurelens.sae.steer(query, [Intervention(feature=args.feature, weight=args.weight)], sae_id)
    their_filter = models.Filter(
        must=[
            models.FieldCondition(key="tenant", match=models.MatchValue(value="acme")),
            models.FieldCondition(key="year", range=models.Range(gte=2005)),
        ]
    )
    dense_hits = qdrant.query_points(
        COLLECTION, query=steered.as_dense_query(), using="text", query_filter=their_filter, limit=5
    ).points
    code = steered.latents_after
    sparse_hits = qdrant.query_points(
        COLLECTION,
        query=models.SparseVector(indices=code.indices.tolist(), values=code.values.tolist()),
        using=sparse_vector_name(sae_id),
        query_filter=models.Filter(
            must=[
                *(their_filter.must or []),
                models.FieldCondition(
                    key=features_field(sae_id), match=models.MatchValue(value=args.feature)
                ),
            ]
        ),
        limit=5,
        with_payload=["title", "tenant", "year"],
    ).points
    cosine = steered.cosine_to_original
    print(f"steered by feature {args.feature} x{args.weight} (cosine to the query {cosine:.3f})")
    for hit in sparse_hits:
        payload = hit.payload or {}
        print(f"  {hit.score:7.3f}  [{payload.get('tenant')} {payload.get('year')}] {payload.get('title')}")

    # 4. The same steered query for engines featurelens does not run.
    sparse_query = steered.as_sparse_query()
    dense_query = steered.as_dense_query()
    elasticsearch = {
        "knn": {"field": "text_vector", "query_vector": dense_query, "k": 10, "num_candidates": 100},
        "query": {"sparse_vector": {"field": "sae_features", "query_vector": sparse_query}},
    }
    vespa = {
        "yql": "select * from papers where {targetHits: 10}nearestNeighbor(text_vector, q)",
        "input.query(q)": dense_query,
        "input.query(features)": {"cells": sparse_query},
    }
    print("Elasticsearch / OpenSearch:", json.dumps(elasticsearch)[:160], "...")
    print("Vespa:", json.dumps(vespa)[:160], "...")

    # 5. Detach: the collection is as it was.
    detach(collection, sae_id)
    restored = _same(before, _snapshot(qdrant))
    print(f"detached; collection restored exactly: {restored}")
    print(
        json.dumps(
            {
                "points": len(papers),
                "attach_seconds": round(attach_s, 3),
                "dense_hits": len(dense_hits),
                "sparse_hits": len(sparse_hits),
                "sparse_query_features": len(sparse_query),
                "restored": restored,
            }
        )
    )
    qdrant.close()
    featurelens.close()
    if not restored:
        raise SystemExit("the collection was not restored exactly")


if __name__ == "__main__":
    main()
