"""Searching a Qdrant collection featurelens did not create, once an SAE is attached to it.

The query is checked by the rules featurelens' own corpora use (``plan.check_query``: vectors,
limits, leg weights, the must / must-not-fire filter on the payload key
``schema.features_field(sae_id)``), hybrid legs are fused by the shared ``fusion.fuse``, and ties
are broken by point id, so an attached collection ranks a query as a featurelens corpus holding
the same points would. What differs is the caller's: the dense vector is theirs (named by them,
any distance), the point id is theirs (integer or UUID; hits carry it as a string), the payload
keys returned are theirs, and so is a Qdrant filter, given as the JSON Qdrant's REST API takes,
ANDed with featurelens' feature filter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from featurelens.store import schema, server
from featurelens.store.errors import InvalidQueryError, translated
from featurelens.store.fusion import LegHit, fuse
from featurelens.store.plan import CheckedQuery, CollectionSchema, check_query
from featurelens.store.types import QueryRequest, ScoredPoint, SearchMode, SparseVec

#: Largest Qdrant filter a caller may send, in bytes of JSON.
MAX_FILTER_BYTES = 64 * 1024
#: Longest parser message quoted back to the caller.
MAX_REASON_CHARS = 300


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def _first_problem(error: ValueError) -> str:
    """Pydantic lists every branch of every union it tried; the first entry is the one to fix."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return _short(str(error))
    found: list[dict[str, Any]] = errors(include_url=False)
    if not found:
        return _short(str(error))
    first = found[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" ({len(found) - 1} more problems)" if len(found) > 1 else ""
    return _short(f"{where}: {first.get('msg', '')}{more}" if where else f"{first.get('msg', '')}{more}")


def parse_filter(text: str) -> models.Filter:
    """A Qdrant filter from its JSON (as Qdrant's REST API takes it); InvalidQueryError saying why not."""
    size = len(text.encode())
    if size > MAX_FILTER_BYTES:
        raise InvalidQueryError(
            f"qdrant_filter is {size:,} bytes; the limit is {MAX_FILTER_BYTES:,} (64 KiB)"
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidQueryError(f"qdrant_filter is not JSON: {_short(str(error))}") from None
    except RecursionError:
        raise InvalidQueryError("qdrant_filter is nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidQueryError(
            f"qdrant_filter must be a JSON object (a Qdrant filter), not a JSON {type(value).__name__}"
        )
    try:
        return models.Filter.model_validate(value)
    except RecursionError:
        raise InvalidQueryError("qdrant_filter is nested too deeply") from None
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise InvalidQueryError(f"qdrant_filter is not a Qdrant filter: {_first_problem(error)}") from None


def _combined(theirs: models.Filter | None, ours: models.Filter | None) -> models.Filter | None:
    if theirs is None or ours is None:
        return theirs or ours
    return models.Filter(must=[theirs, ours])


def _sparse(vector: Any, sparse_name: str, sae_id: str) -> dict[str, SparseVec]:
    value = vector.get(sparse_name) if isinstance(vector, dict) else None
    if value is None or not len(value.indices):
        return {}
    return {sae_id: SparseVec(list(value.indices), list(value.values))}


def query(
    client: QdrantClient,
    name: str,
    request: QueryRequest,
    dense_vector: str,
    dense_dim: int,
    sae_ids: Sequence[str],
    qdrant_filter: models.Filter | None = None,
) -> list[ScoredPoint]:
    """Dense, sparse or hybrid search of collection ``name``; hits best first, ties by point id.

    ``dense_vector`` names the collection's dense vector ("" the unnamed default) of ``dense_dim``
    dims, ``sae_ids`` the SAEs attached to it. ``request.filter`` may hold must / must-not-fire
    features only (categories and dates are featurelens payload fields: use ``qdrant_filter``).
    ``request.with_payload`` is a list of the caller's payload keys (False or [] for none);
    ``request.with_sparse`` a list holding the query's SAE returns its latents on each hit.
    """
    flt = request.filter
    if flt is not None and (flt.categories or flt.date_from or flt.date_to):
        raise InvalidQueryError(
            f"collection {name!r} is not a featurelens corpus: categories and dates are no fields of it; "
            "filter its own payload with qdrant_filter"
        )
    if request.with_dense:
        raise InvalidQueryError("an attached collection's hits do not carry their dense vectors")
    plan = check_query(request, CollectionSchema(dense_dim, tuple(sae_ids)), name)
    query_filter = _combined(qdrant_filter, server._filter(plan.filter))
    if request.with_payload is True:
        raise InvalidQueryError("name the payload keys to return from an attached collection")
    payload: bool | list[str] = list(request.with_payload) if request.with_payload else False
    sae_id = request.sae_id or ""
    sparse_name = schema.sparse_vector_name(sae_id) if sae_id else ""
    wanted = request.with_sparse
    returns_sparse = bool(sparse_name) and not isinstance(wanted, bool) and sae_id in wanted
    with_vectors: bool | list[str] = [sparse_name] if returns_sparse else False
    params = models.SearchParams(exact=True) if plan.exact else None

    def leg(mode: SearchMode, limit: int) -> models.QueryRequest:
        # The unnamed default vector is used by naming none.
        using = (dense_vector or None) if mode is SearchMode.DENSE else sparse_name
        return models.QueryRequest(
            query=_leg_query(plan, mode),
            using=using,
            filter=query_filter,
            params=params,
            limit=limit,
            with_payload=False,
            with_vector=False,
        )

    with translated(name, server._translate):
        if plan.mode is not SearchMode.HYBRID:
            single = leg(plan.mode, plan.fetch)
            hits = client.query_points(
                name,
                query=single.query,
                using=single.using,
                query_filter=query_filter,
                search_params=params,
                limit=plan.fetch,
                with_payload=payload,
                with_vectors=with_vectors,
            ).points
            hits = sorted(hits, key=lambda hit: (-hit.score, str(hit.id)))[plan.offset :]
            dense = plan.mode is SearchMode.DENSE
            return [
                ScoredPoint(
                    doc_id=str(hit.id),
                    score=float(hit.score),
                    payload=dict(hit.payload or {}),
                    sparse=_sparse(hit.vector, sparse_name, sae_id),
                    dense_score=float(hit.score) if dense else None,
                    sparse_score=None if dense else float(hit.score),
                )
                for hit in hits
            ]
        legs = client.query_batch_points(
            name, requests=[leg(SearchMode.DENSE, plan.leg_limit), leg(SearchMode.SPARSE, plan.leg_limit)]
        )
        # A collection may mix integer and UUID ids: fuse (and break ties) on their strings.
        ids = {str(hit.id): hit.id for result in legs for hit in result.points}
        fused = fuse(
            [[LegHit(str(hit.id), hit.score) for hit in result.points] for result in legs],
            (request.dense_weight, request.sparse_weight),
            request.fusion,
            request.rrf_k,
            limit=plan.fetch,
        )[plan.offset :]
        if not fused:
            return []
        records = client.retrieve(
            name, [ids[str(hit.key)] for hit in fused], with_payload=payload, with_vectors=with_vectors
        )
    by_id = {str(record.id): record for record in records}
    out = []
    for hit in fused:
        record = by_id.get(str(hit.key))
        if record is None:  # deleted between the legs and the fetch
            continue
        dense_score, sparse_score = hit.leg_scores
        out.append(
            ScoredPoint(
                doc_id=str(hit.key),
                score=float(hit.score),
                payload=dict(record.payload or {}),
                sparse=_sparse(record.vector, sparse_name, sae_id),
                dense_score=dense_score,
                sparse_score=sparse_score,
            )
        )
    return out


def _leg_query(plan: CheckedQuery, mode: SearchMode) -> list[float] | models.SparseVector:
    if mode is SearchMode.DENSE:
        return plan.dense or []
    indices, values = plan.sparse or ([], [])
    return models.SparseVector(indices=indices, values=values)
