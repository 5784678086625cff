"""Indexing jobs: documents → dense vectors (embedding store or encoder) → SAE latents → the store.

Every document of a corpus carries the latents of every SAE indexed in it, so a job encodes
with the SAEs it asks for and those the corpus already has. Point ids derive from doc ids, so
indexing a document again replaces it; a document already stored with the same content and
every SAE is skipped, which makes re-running an interrupted job resume where it stopped. Within
one batch, the same rule: the last document of an id is the one stored, and the ones before it are
counted as duplicates, not as indexed.

A batch that fails (invalid documents, a dependency refusing it) is reported with its doc ids
and the reason, and the job goes on; a dependency that is down ends the job (UNAVAILABLE).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from featurelens.corpus import Record, RowError
from featurelens.embedding import EmbeddingStore
from featurelens.kit import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ServiceError,
    UnavailableError,
)
from featurelens.kit.echo import shown
from featurelens.services.search import convert, sources
from featurelens.services.search.corpora import EMBEDDING_MODEL_KEY, Corpora, Corpus, sae_metadata
from featurelens.services.search.dependencies import Dependencies, SaeSummary
from featurelens.services.search.jobs import IndexJob
from featurelens.services.search.progress import IndexProgress
from featurelens.services.search.validation import document_problem
from featurelens.store import PointRecord, SparseVec, StoredPoint
from featurelens.store import schema as fields
from featurelens.v1 import search_pb2

logger = logging.getLogger(__name__)

_PROBE_TEXT = "featurelens: which model and dimension does the encoder use"
_COMPARED = (fields.TITLE, fields.TEXT, fields.CATEGORIES, fields.DATE)

Responses = AsyncIterator[search_pb2.IndexDocumentsResponse]


@dataclass(frozen=True)
class Target:
    """Where a job writes: the corpus, its embedding model and dimension, its SAEs."""

    corpus: str
    model_id: str
    dim: int
    saes: tuple[SaeSummary, ...]

    @property
    def sae_ids(self) -> list[str]:
        return [sae.sae_id for sae in self.saes]


class Indexer:
    """Runs indexing jobs against the corpora, calling the encoder and the sae service."""

    def __init__(
        self, corpora: Corpora, dependencies: Dependencies, optimize_after_docs: int = 10_000
    ) -> None:
        self.corpora = corpora
        self.dependencies = dependencies
        self.optimize_after_docs = optimize_after_docs

    async def run(self, job: IndexJob, documents: AsyncIterator[Sequence[Record]] | None) -> Responses:
        """Run a job on streamed ``documents`` (or its corpus_path); yields progress messages."""
        corpus = await self.corpora.find(job.corpus)
        if job.sparse_only:
            if corpus is None:
                raise NotFoundError(
                    f"corpus {job.corpus!r} does not exist; sparse_only needs an indexed corpus"
                )
            responses = self._fill_sparse(job, corpus)
        else:
            responses = self._index(job, corpus, documents)
        progress_done = 0
        try:
            async for response in responses:
                progress_done = response.progress.done
                yield response
        except UnavailableError as error:
            raise UnavailableError(
                f"{error}; the job stopped after {progress_done:,} documents: run it again to resume"
            ) from None

    # -- indexing documents ---------------------------------------------------------------------

    async def _index(
        self, job: IndexJob, corpus: Corpus | None, documents: AsyncIterator[Sequence[Record]] | None
    ) -> Responses:
        wanted = (*(job.sae_ids or ("",)), *(corpus.sae_ids if corpus else ()))
        saes = await self._saes(wanted)
        embeddings = await sources.open_embeddings(job.embeddings_path) if job.embeddings_path else None
        try:
            target = await self._target(job, corpus, saes, embeddings)
            total = 0
            if job.corpus_path is not None:
                total = await sources.count(job.corpus_path, job.limit)
            progress = IndexProgress(total)
            yield progress.message(
                "start",
                f"indexing into corpus {target.corpus!r}: model {target.model_id} ({target.dim} dims), "
                f"SAEs {', '.join(target.sae_ids)}",
            )
            row_errors: list[RowError] = []
            batches: AsyncIterator[Sequence[Record]]
            if job.corpus_path is not None:
                batches = sources.file_batches(job.corpus_path, job.limit, job.batch_size, row_errors)
            else:
                batches = sources.rebatched(documents, job.batch_size)
            async for batch in batches:
                if row_errors:
                    yield _row_failure(progress, row_errors)
                    row_errors.clear()
                for response in await self._index_batch(target, batch, embeddings, progress):
                    yield response
                yield progress.message("index")
            if row_errors:
                yield _row_failure(progress, row_errors)
            async for response in self._finish(target.corpus, progress):
                yield response
        finally:
            if embeddings is not None:
                embeddings.close()

    async def _index_batch(
        self,
        target: Target,
        records: Sequence[Record],
        embeddings: EmbeddingStore | None,
        progress: IndexProgress,
    ) -> list[search_pb2.IndexDocumentsResponse]:
        """Index one batch; returns the failure messages (the progress counts are updated)."""
        problems: dict[str, list[str]] = {}
        valid: list[Record] = []
        for record in records:
            problem = document_problem(record)
            if problem is None:
                valid.append(record)
            else:
                problems.setdefault(problem, []).append(record.id)
        failures = [progress.failure(ids, f"invalid document: {reason}") for reason, ids in problems.items()]
        valid = _last_of_each_id(valid, progress)
        if not valid:
            return failures
        try:
            changed = await self._changed(target, valid)
            progress.unchanged += len(valid) - len(changed)
            progress.indexed += len(valid) - len(changed)
            if changed:
                dense = await self._dense(target, changed, embeddings)
                latents = await self._latents(target, dense)
                points = [
                    PointRecord(
                        doc_id=record.id,
                        dense=dense[row],
                        sparse={sae_id: rows[row] for sae_id, rows in latents.items()},
                        payload=convert.record_payload(record),
                    )
                    for row, record in enumerate(changed)
                ]
                await self.corpora.run(self.corpora.store.upsert, target.corpus, points)
                progress.indexed += len(changed)
        except UnavailableError:
            raise
        except ServiceError as error:
            failed = [record.id for record in valid]
            logger.warning("corpus %s: a batch of %d documents failed: %s", target.corpus, len(failed), error)
            failures.append(progress.failure(failed, str(error)))
        return failures

    async def _changed(self, target: Target, records: Sequence[Record]) -> list[Record]:
        """The records that are not stored already with the same content and every SAE."""
        stored = await self.corpora.run(
            self.corpora.store.retrieve,
            target.corpus,
            [record.id for record in records],
            with_payload=list(_COMPARED),
            with_sparse=target.sae_ids,
        )
        by_id = {point.doc_id: point for point in stored}
        changed = []
        for record in records:
            point = by_id.get(record.id)
            same = (
                point is not None
                and all(sae_id in point.sparse for sae_id in target.sae_ids)
                and all(
                    point.payload.get(key) == value for key, value in convert.record_payload(record).items()
                )
            )
            if not same:
                changed.append(record)
        return changed

    async def _dense(
        self, target: Target, records: Sequence[Record], embeddings: EmbeddingStore | None
    ) -> npt.NDArray[np.float32]:
        """Dense vectors of the records: from the embedding store where it has them, else embedded."""
        vectors = np.empty((len(records), target.dim), dtype=np.float32)
        stored = [
            row for row, record in enumerate(records) if embeddings is not None and record.id in embeddings
        ]
        if stored:
            assert embeddings is not None
            vectors[stored] = embeddings.get([records[row].id for row in stored])
        missing = sorted(set(range(len(records))) - set(stored))
        if missing:
            texts = [records[row].embedding_text for row in missing]
            embedded = await self.dependencies.embed(texts, target.model_id)
            dim = embedded.vectors.shape[1]
            if embedded.model_id != target.model_id or dim != target.dim:
                raise FailedPreconditionError(
                    f"the encoder answered with model {embedded.model_id!r} ({dim} dims) "
                    f"for corpus {target.corpus!r} of model {target.model_id!r} ({target.dim} dims)"
                )
            vectors[missing] = embedded.vectors
        return vectors

    async def _latents(self, target: Target, dense: npt.NDArray[np.float32]) -> dict[str, list[SparseVec]]:
        latents = {}
        for sae_id in target.sae_ids:
            _, rows = await self.dependencies.encode(sae_id, dense)
            latents[sae_id] = rows
        return latents

    # -- adding an SAE to an indexed corpus -------------------------------------------------------

    async def _fill_sparse(self, job: IndexJob, corpus: Corpus) -> Responses:
        saes = await self._saes(job.sae_ids or ("",))
        _check_dims(saes, corpus.dim, corpus.embedding_model or "the corpus's model")
        target = Target(corpus.name, corpus.embedding_model, corpus.dim, saes)
        await self._ensure(target)
        progress = IndexProgress(corpus.documents)
        yield progress.message("start", f"adding SAEs {', '.join(target.sae_ids)} to corpus {corpus.name!r}")
        offset: str | None = None
        while True:
            page = await self.corpora.run(
                self.corpora.store.scroll,
                corpus.name,
                limit=job.batch_size,
                offset=offset,
                with_payload=False,
                with_dense=True,
                with_sparse=target.sae_ids,
            )
            if page.points:
                try:
                    await self._fill_page(target, page.points, progress)
                except UnavailableError:
                    raise
                except ServiceError as error:
                    yield progress.failure([p.doc_id for p in page.points], str(error))
                yield progress.message("encode")
            if page.next_offset is None:
                break
            offset = page.next_offset
        async for response in self._finish(corpus.name, progress):
            yield response

    async def _fill_page(
        self, target: Target, points: Sequence[StoredPoint], progress: IndexProgress
    ) -> None:
        """Encode the page's stored embeddings with each SAE the documents lack."""
        updates: dict[str, dict[str, SparseVec]] = {}
        for sae_id in target.sae_ids:
            todo = [p for p in points if sae_id not in p.sparse and p.dense is not None]
            if not todo:
                continue
            dense = np.stack([np.asarray(p.dense, dtype=np.float32) for p in todo])
            _, rows = await self.dependencies.encode(sae_id, dense)
            for point, row in zip(todo, rows, strict=True):
                updates.setdefault(point.doc_id, {})[sae_id] = row
        if updates:
            await self.corpora.run(self.corpora.store.update_vectors, target.corpus, updates)
        progress.unchanged += len(points) - len(updates)
        progress.indexed += len(points)

    # -- shared steps -------------------------------------------------------------------------------

    async def _saes(self, wanted: Sequence[str]) -> tuple[SaeSummary, ...]:
        """The SAEs named (""= the default one), looked up in the sae service's registry."""
        registry = await self.dependencies.list_saes()
        by_id = {sae.sae_id: sae for sae in registry}
        found: dict[str, SaeSummary] = {}
        for sae_id in wanted:
            if not sae_id:
                sae = next((s for s in registry if s.is_default), None)
                if sae is None:
                    raise FailedPreconditionError(
                        "the sae service has no default SAE; train one or name one in sae_ids"
                    )
            elif sae_id in by_id:
                sae = by_id[sae_id]
            else:
                known = ", ".join(by_id) or "none"
                raise NotFoundError(
                    f"SAE {shown(sae_id)} is not in the sae service's registry (it has: {known})"
                )
            found.setdefault(sae.sae_id, sae)
        return tuple(found.values())

    async def _target(
        self,
        job: IndexJob,
        corpus: Corpus | None,
        saes: Sequence[SaeSummary],
        embeddings: EmbeddingStore | None,
    ) -> Target:
        """The job's model, dimension and SAEs, checked against the corpus and the embedding store."""
        known: list[tuple[str, int]] = []
        if corpus is not None and corpus.embedding_model:
            known.append((corpus.embedding_model, corpus.dim))
        if embeddings is not None:
            known.append((embeddings.model_id, embeddings.dim))
        requested = job.embedding_model
        match = next((m for m in known if not requested or m[0] == requested), None)
        if match is None:
            probe = await self.dependencies.embed([_PROBE_TEXT], requested)
            match = (probe.model_id, int(probe.vectors.shape[1]))
        model_id, dim = match
        if corpus is not None and (corpus.embedding_model not in ("", model_id) or corpus.dim != dim):
            raise FailedPreconditionError(
                f"corpus {corpus.name!r} holds {corpus.dim}-dim embeddings of model "
                f"{corpus.embedding_model or '(unknown)'!r}, not of model {model_id!r} ({dim} dims); "
                "index into another corpus"
            )
        if embeddings is not None and (embeddings.model_id != model_id or embeddings.dim != dim):
            raise InvalidArgumentError(
                f"the embedding store {shown(str(job.embeddings_path))} holds model {embeddings.model_id!r} "
                f"({embeddings.dim} dims), but this job uses model {model_id!r} ({dim} dims)"
            )
        _check_dims(saes, dim, model_id)
        for sae in saes:
            if sae.embedding_model and sae.embedding_model != model_id:
                logger.warning(
                    "SAE %s was trained on embeddings of %r; corpus %s uses %r",
                    sae.sae_id,
                    sae.embedding_model,
                    job.corpus,
                    model_id,
                )
        target = Target(job.corpus, model_id, dim, tuple(saes))
        await self._ensure(target)
        return target

    async def _ensure(self, target: Target) -> None:
        metadata: dict[str, object] = {EMBEDDING_MODEL_KEY: target.model_id} if target.model_id else {}
        for sae in target.saes:
            metadata |= sae_metadata(sae.sae_id, sae.num_latents, sae.d_in)
        await self.corpora.run(
            self.corpora.store.ensure_collection, target.corpus, target.dim, target.sae_ids, metadata
        )
        self.corpora.forget(target.corpus)

    async def _finish(self, corpus: str, progress: IndexProgress) -> Responses:
        written = progress.indexed - progress.unchanged
        if self.optimize_after_docs and written >= self.optimize_after_docs:
            yield progress.message("optimize", f"building the vector indexes after {written:,} new documents")
            await self.corpora.run(self.corpora.store.optimize, corpus)
        logger.info(
            "corpus %s: %d documents indexed (%d unchanged), %d failed, %d repeated ids, in %.1f s",
            corpus,
            progress.indexed,
            progress.unchanged,
            progress.failed,
            progress.duplicates,
            progress.elapsed_s,
        )
        repeated = (
            f", {progress.duplicates:,} replaced by a later one of the same id" if progress.duplicates else ""
        )
        yield progress.message(
            "done",
            f"indexed {progress.indexed:,} documents ({progress.unchanged:,} unchanged), "
            f"{progress.failed:,} failed{repeated}, in {progress.elapsed_s:.1f} s",
        )


def _check_dims(saes: Sequence[SaeSummary], dim: int, model: str) -> None:
    for sae in saes:
        if sae.d_in != dim:
            raise FailedPreconditionError(
                f"SAE {sae.sae_id!r} reads {sae.d_in}-dim embeddings, but {model!r} makes {dim}-dim ones"
            )


def _last_of_each_id(records: Sequence[Record], progress: IndexProgress) -> list[Record]:
    """The records with each id once, its last one kept (a later document of an id replaces an
    earlier one, as a later batch would); the others are counted as duplicates."""
    last = {record.id: record for record in records}
    progress.duplicates += len(records) - len(last)
    return list(last.values())


def _row_failure(progress: IndexProgress, errors: Sequence[RowError]) -> search_pb2.IndexDocumentsResponse:
    first = errors[0]
    reason = f"{len(errors):,} malformed rows skipped; the first, line {first.line_number}: {first.reason}"
    return progress.failure([], reason, count=len(errors))
