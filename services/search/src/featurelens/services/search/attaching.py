"""AttachSae / DetachSae: an SAE on a Qdrant collection featurelens did not create; and finding
such a collection again when a search names it.

The work is ``featurelens.store.attach``'s (plan, resume rule, write order); this module checks
the request, finds the collection through the server store's client, encodes each batch through
the sae service and streams progress. Only the server store can reach a caller's collections:
the embedded engine's folder holds featurelens' own corpora (a caller's qdrant-edge shard is
attached in process with ``featurelens.store.attach_engines.EdgeShardCollection``).

An attached collection is known by no registry: it is a collection of the server that is no
featurelens corpus and has one or more sparse vectors named as featurelens names an SAE's
(``schema.sae_id_of``), so it is found again after a restart, and detaching ends it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from featurelens.kit import FailedPreconditionError, InvalidArgumentError, NotFoundError
from featurelens.kit.echo import shown
from featurelens.services.search.corpora import Corpora, Corpus
from featurelens.services.search.dependencies import Dependencies, SaeSummary
from featurelens.store import attach, schema
from featurelens.store.attach_engines import QdrantClientCollection
from featurelens.store.server import QdrantServerDocumentStore
from featurelens.v1 import common_pb2, search_pb2

logger = logging.getLogger(__name__)

#: Qdrant's limit on collection names (bytes).
MAX_COLLECTION_NAME = 255


def check_collection(name: str) -> str:
    """A non-empty Qdrant collection name of at most 255 bytes."""
    if not name:
        raise InvalidArgumentError("collection is empty; name the Qdrant collection to attach to")
    if len(name.encode()) > MAX_COLLECTION_NAME or "/" in name:
        raise InvalidArgumentError(f"collection {shown(name)} is not a Qdrant collection name")
    return name


async def open_collection(corpora: Corpora, name: str) -> QdrantClientCollection:
    """The caller's collection; NOT_FOUND names the collections there are."""
    store = corpora.store
    if not isinstance(store, QdrantServerDocumentStore):
        raise FailedPreconditionError(
            "AttachSae and DetachSae need the search service on a Qdrant server "
            "(FEATURELENS_SEARCH_STORAGE=server); attach to a qdrant-edge shard in process with "
            "featurelens.store.attach"
        )
    collection = await corpora.run(QdrantClientCollection, store.attach_client, check_collection(name))
    if schema.is_labels_collection(name) or schema.is_families_collection(name):
        raise InvalidArgumentError(f"collection {name!r} holds featurelens' feature labels or families")
    if name in await corpora.run(store.list_collections):
        raise InvalidArgumentError(
            f"collection {name!r} is a corpus featurelens indexed; add an SAE to it with "
            "IndexDocuments and sparse_only instead"
        )
    return collection


async def resolve_sae(dependencies: Dependencies, sae_id: str) -> SaeSummary:
    """The SAE named (the default when empty); NOT_FOUND names the registered ones."""
    saes = await dependencies.list_saes()
    for sae in saes:
        if sae.sae_id == sae_id or (not sae_id and sae.is_default):
            return sae
    known = ", ".join(repr(s.sae_id) for s in saes) or "none"
    what = f"SAE {shown(sae_id)}" if sae_id else "a default SAE"
    raise NotFoundError(f"the sae service has no {what}; registered SAEs: {known}")


@dataclass(frozen=True)
class AttachedCollection:
    """A collection an SAE is attached to, as a search finds it."""

    collection: QdrantClientCollection
    #: Size of each dense vector ("" the unnamed default).
    dense_sizes: Mapping[str, int]
    #: The SAEs attached (their sparse vectors are there), sorted.
    sae_ids: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.collection.name


@dataclass(frozen=True)
class AttachedTarget:
    """What a search of an attached collection runs on: the SAE and the dense vector it uses."""

    attached: AttachedCollection
    sae: SaeSummary
    dense_vector: str

    @property
    def dense_dim(self) -> int:
        return self.attached.dense_sizes[self.dense_vector]

    def as_corpus(self) -> Corpus:
        """The collection as the search path sees a corpus: the dimension of the dense vector used,
        the encoder's default model for text queries, and the attached SAE with its size."""
        return Corpus(
            name=self.attached.name,
            documents=0,
            dim=self.dense_dim,
            embedding_model="",
            sae_ids=(self.sae.sae_id,),
            num_latents={self.sae.sae_id: self.sae.num_latents},
        )


async def find_attached(corpora: Corpora, name: str) -> AttachedCollection | None:
    """The attached collection of this name; None when the service's store holds no such collection
    (or cannot hold a caller's: the edge store), NOT_FOUND when it exists with no SAE attached."""
    store = corpora.store
    if not isinstance(store, QdrantServerDocumentStore):
        return None
    if schema.is_labels_collection(name) or schema.is_families_collection(name):
        return None
    try:
        collection = await corpora.run(QdrantClientCollection, store.attach_client, name)
    except NotFoundError:
        return None
    sae_ids = await corpora.run(collection.attached_sae_ids)
    if not sae_ids:
        raise NotFoundError(
            f"collection {name!r} is no featurelens corpus and has no SAE attached; attach one with "
            "AttachSae (ListCorpora lists the corpora)"
        )
    sizes = await corpora.run(collection.dense_vector_sizes)
    return AttachedCollection(collection, sizes, tuple(sae_ids))


async def attached_target(
    dependencies: Dependencies, attached: AttachedCollection, sae_id: str, dense_vector: str, needs_sae: bool
) -> AttachedTarget:
    """The SAE (the one named, else the only one attached, else the sae service's default if
    attached) and the dense vector (the one named, else the only one of the SAE's d_in)."""
    if sae_id and sae_id not in attached.sae_ids:
        raise NotFoundError(
            f"SAE {shown(sae_id)} is not attached to collection {attached.name!r} (attached: "
            f"{', '.join(attached.sae_ids)}); attach it with AttachSae"
        )
    saes = {sae.sae_id: sae for sae in await dependencies.list_saes()}
    chosen = sae_id or (attached.sae_ids[0] if len(attached.sae_ids) == 1 else "")
    if not chosen:
        default = next((s for s in saes.values() if s.is_default and s.sae_id in attached.sae_ids), None)
        if default is None:
            raise FailedPreconditionError(
                f"collection {attached.name!r} has several SAEs attached ({', '.join(attached.sae_ids)}) "
                "and the sae service's default is none of them; name one with sae_id"
            )
        chosen = default.sae_id
    sae = saes.get(chosen)
    if sae is None:
        raise FailedPreconditionError(
            f"SAE {chosen!r} is attached to collection {attached.name!r}, but the sae service does not "
            "have it (ListSaes lists the SAEs it serves)"
        )
    return AttachedTarget(attached, sae, _dense_vector(attached, sae, dense_vector, needs_sae))


def _dense_vector(attached: AttachedCollection, sae: SaeSummary, named: str, needs_sae: bool) -> str:
    sizes = attached.dense_sizes
    shown_all = ", ".join(f"{name!r} ({size} dims)" for name, size in sorted(sizes.items())) or "none"
    if named or (named == "" and "" in sizes and len(sizes) == 1):
        if named not in sizes:
            raise InvalidArgumentError(
                f"collection {attached.name!r} has no dense vector {shown(named)}; it has {shown_all}"
            )
        if needs_sae and sizes[named] != sae.d_in:
            raise InvalidArgumentError(
                f"dense vector {named!r} of collection {attached.name!r} has {sizes[named]} dims, but SAE "
                f"{sae.sae_id!r} reads {sae.d_in}-dim embeddings; name one of {shown_all}"
            )
        return named
    fits = sorted(name for name, size in sizes.items() if size == sae.d_in)
    if len(fits) != 1:
        what = "none" if not fits else "more than one"
        raise InvalidArgumentError(
            f"{what} of the dense vectors of collection {attached.name!r} has SAE {sae.sae_id!r}'s "
            f"{sae.d_in} dims; name the one to search with dense_vector (it has {shown_all})"
        )
    return fits[0]


def plan_message(found: attach.AttachPlan) -> search_pb2.AttachPlan:
    return search_pb2.AttachPlan(
        collection=found.collection,
        sae_id=found.sae_id,
        dense_vector=found.dense_vector,
        sparse_vector=found.sparse_vector,
        payload_key=found.payload_key,
        id_type=found.id_type,
        points=found.points,
        points_to_write=found.points_to_write,
        add_sparse_config=found.add_sparse_config,
    )


def _progress(done: int, total: int, started: float) -> common_pb2.Progress:
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 and total >= done else -1.0
    return common_pb2.Progress(stage="attach", done=done, total=total, rate_per_s=rate, eta_s=eta)


async def run_attach(
    corpora: Corpora, dependencies: Dependencies, request: search_pb2.AttachSaeRequest
) -> AsyncIterator[search_pb2.AttachSaeResponse]:
    """Check, plan (first response), then write batch by batch, one progress response each."""
    try:
        limit = attach.check_batch_size(request.batch_size)
    except ValueError as error:
        raise InvalidArgumentError(str(error)) from None
    collection = await open_collection(corpora, request.collection)
    sae = await resolve_sae(dependencies, request.sae_id)
    if request.dry_run:
        found = await corpora.run(attach.plan, collection, sae.sae_id, request.dense_vector)
        yield search_pb2.AttachSaeResponse(
            plan=plan_message(found), progress=_progress(0, found.points_to_write, 0)
        )
        return
    found = await corpora.run(attach.prepare, collection, sae.sae_id, request.dense_vector)
    started = time.perf_counter()
    total, done = found.points_to_write, 0
    yield search_pb2.AttachSaeResponse(plan=plan_message(found), progress=_progress(0, total, started))
    offset: attach.PointId | None = None
    while True:
        batch = await corpora.run(
            collection.scroll_missing, found.dense_vector, found.sparse_vector, offset, limit
        )
        if batch.ids:
            if batch.dense.shape[1] != sae.d_in:
                raise InvalidArgumentError(
                    f"vector {found.dense_vector!r} of collection {found.collection!r} has "
                    f"{batch.dense.shape[1]} dims; SAE {sae.sae_id!r} encodes {sae.d_in}"
                )
            _, vectors = await dependencies.encode(sae.sae_id, batch.dense)
            await corpora.run(attach.write_batch, collection, found, batch, vectors)
            done += len(batch.ids)
            yield search_pb2.AttachSaeResponse(progress=_progress(done, max(total, done), started))
        if batch.next_offset is None:
            break
        offset = batch.next_offset
    logger.info("attached SAE %r to %d points of collection %r", sae.sae_id, done, found.collection)


async def run_detach(corpora: Corpora, request: search_pb2.DetachSaeRequest) -> search_pb2.DetachSaeResponse:
    """Remove the SAE's sparse vector and payload key."""
    if not request.sae_id:
        raise InvalidArgumentError("sae_id is empty; name the attached SAE to detach")
    try:
        schema.sparse_vector_name(request.sae_id)
    except ValueError as error:
        raise InvalidArgumentError(str(error)) from None
    collection = await open_collection(corpora, request.collection)
    was_attached = await corpora.run(attach.detach, collection, request.sae_id)
    return search_pb2.DetachSaeResponse(was_attached=was_attached)
