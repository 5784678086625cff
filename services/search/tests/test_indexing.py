"""IndexDocuments: streamed documents and corpus files, progress, idempotence, failures, sparse_only."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import grpc
import numpy as np
import pytest
from search_testing import (
    CORPUS,
    Stack,
    batch_message,
    document,
    failure_of,
    index_requests,
    setup_message,
)

from featurelens.corpus import Record
from featurelens.embedding import EmbeddingStore
from featurelens.embedding.backends import EmbeddingBackend
from featurelens.v1 import search_pb2


async def corpus_info(stack: Stack, name: str) -> search_pb2.CorpusInfo:
    listed = await stack.stub.ListCorpora(search_pb2.ListCorporaRequest())
    return next(c for c in listed.corpora if c.corpus == name)


def write_jsonl(path: Path, records: list[Record]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for r in records:
            row = {
                "id": r.id,
                "title": r.title,
                "abstract": r.text,
                "categories": list(r.categories),
                "date": r.date,
            }
            out.write(json.dumps(row) + "\n")
    return path


async def test_streamed_documents_are_indexed_with_a_progress_message_per_batch(
    stack: Stack, records: list[Record], sae_id: str
) -> None:
    responses = await stack.index(index_requests(records[:250], batch=100, corpus="fresh"))

    stages = [r.progress.stage for r in responses]
    assert stages == ["start", "index", "index", "index", "done"]
    assert [r.progress.done for r in responses[1:4]] == [100, 200, 250]
    assert all(r.progress.total == 0 and r.progress.eta_s == -1 for r in responses)
    assert responses[-1].indexed == 250
    assert responses[-1].failed == 0
    info = await corpus_info(stack, "fresh")
    assert info.documents == 250
    assert info.dim == 256
    assert info.embedding_model == stack.backend.model_id
    assert list(info.sae_ids) == [sae_id]


async def test_a_corpus_file_on_the_server_is_indexed_with_its_total_and_an_eta(
    stack: Stack, records: list[Record], corpus_root: Path
) -> None:
    write_jsonl(corpus_root / "papers.jsonl.gz", records[:120])

    responses = await stack.index(
        [setup_message("fromfile", corpus_path="papers.jsonl.gz", batch_size=50, limit=110)]
    )

    progress = [r.progress for r in responses if r.progress.stage == "index"]
    assert [p.done for p in progress] == [50, 100, 110]
    assert all(p.total == 110 for p in progress)
    assert all(p.eta_s >= 0 and p.rate_per_s > 0 for p in progress)
    assert responses[-1].indexed == 110
    assert (await corpus_info(stack, "fromfile")).documents == 110


async def test_malformed_rows_of_a_corpus_file_are_counted_as_failed_with_their_line(
    stack: Stack, records: list[Record], corpus_root: Path
) -> None:
    path = write_jsonl(corpus_root / "papers.jsonl.gz", records[:5])
    with gzip.open(path, "at", encoding="utf-8") as out:
        out.write('{"id": "no-abstract", "title": "Missing its body"}\n')

    responses = await stack.index([setup_message("rows", corpus_path=str(path))])

    failures = [r for r in responses if r.failure_reason]
    assert len(failures) == 1
    assert failures[0].failure_reason.startswith("1 malformed rows skipped; the first, line 6:")
    assert responses[-1].indexed == 5
    assert responses[-1].failed == 1


async def test_reindexing_overwrites_changed_documents_and_skips_unchanged_ones(
    stack: Stack, records: list[Record]
) -> None:
    batch = records[:40]
    await stack.index(index_requests(batch, corpus="again"))
    texts_before = stack.backend.texts
    changed = [
        Record(batch[0].id, "A renamed paper", batch[0].text, batch[0].categories, batch[0].date),
        *batch[1:],
    ]

    responses = await stack.index(index_requests(changed, corpus="again"))

    assert responses[-1].indexed == 40
    assert "39 unchanged" in responses[-1].progress.message
    assert stack.backend.texts - texts_before == 1  # only the changed paper was embedded again
    assert (await corpus_info(stack, "again")).documents == 40
    stored = stack.search.corpora.store.retrieve("again", [batch[0].id])
    assert stored[0].payload["title"] == "A renamed paper"


async def test_an_interrupted_job_run_again_resumes_after_the_documents_already_indexed(
    stack: Stack, records: list[Record]
) -> None:
    await stack.index(index_requests(records[:60], corpus="resumed"))
    texts_before = stack.backend.texts

    responses = await stack.index(index_requests(records[:100], corpus="resumed"))

    assert responses[-1].indexed == 100
    assert stack.backend.texts - texts_before == 40
    assert (await corpus_info(stack, "resumed")).documents == 100


async def test_invalid_documents_fail_alone_and_the_rest_of_their_batch_is_indexed(
    stack: Stack, records: list[Record]
) -> None:
    documents = [document(r) for r in records[:10]]
    documents[3].text = "   "
    documents[7].date = "2025-02-30"

    responses = await stack.index([setup_message("mixed"), batch_message(documents)])

    failures = {tuple(r.failed_ids): r.failure_reason for r in responses if r.failed_ids}
    assert failures == {
        (documents[3].id,): "invalid document: its text is empty",
        (documents[7].id,): "invalid document: its date is not a calendar day written YYYY-MM-DD",
    }
    assert responses[-1].indexed == 8
    assert responses[-1].failed == 2
    assert (await corpus_info(stack, "mixed")).documents == 8


async def test_documents_repeating_an_id_in_one_batch_are_stored_once_and_counted_apart(
    stack: Stack, records: list[Record]
) -> None:
    # Issue 8, item 11: three documents with id "dup" in one batch reported indexed: 3.
    documents = [document(r) for r in records[:3]]
    for number, repeated in enumerate(documents):
        repeated.id = "dup"
        repeated.title = f"version {number}"

    responses = await stack.index([setup_message("dups"), batch_message(documents)])

    assert responses[-1].indexed == 1
    assert responses[-1].duplicates == 2
    assert responses[-1].failed == 0
    assert responses[-1].progress.done == 3
    assert "0 failed, 2 replaced by a later one of the same id" in responses[-1].progress.message
    assert (await corpus_info(stack, "dups")).documents == 1
    stored = stack.search.corpora.store.retrieve("dups", ["dup"])
    assert stored[0].payload["title"] == "version 2"  # the last one, as a later batch would replace it


async def test_a_batch_the_encoder_rejects_is_reported_with_its_ids_and_the_other_batches_are_indexed(
    stack: Stack, records: list[Record]
) -> None:
    documents = [document(r) for r in records[:30]]
    documents[15].text = "a very long abstract " * 4000  # over the encoder's 64 KiB limit per text
    requests = [setup_message("rejected", batch_size=10)] + [
        batch_message(documents[i : i + 10]) for i in range(0, 30, 10)
    ]

    responses = await stack.index(requests)

    failed = [r for r in responses if r.failed_ids]
    assert len(failed) == 1
    assert list(failed[0].failed_ids) == [d.id for d in documents[10:20]]
    assert "the encoder service refused the call" in failed[0].failure_reason
    assert "bytes; the limit is" in failed[0].failure_reason
    assert responses[-1].indexed == 20
    assert responses[-1].failed == 10
    assert (await corpus_info(stack, "rejected")).documents == 20


async def test_sparse_only_adds_an_sae_to_an_indexed_corpus_without_embedding_again(
    stack: Stack, sae_id: str, other_sae_id: str
) -> None:
    calls_before = stack.backend.calls

    responses = await stack.index(
        [setup_message(CORPUS, sparse_only=True, sae_ids=[other_sae_id], batch_size=500)]
    )

    assert stack.backend.calls == calls_before
    assert responses[-1].indexed == 1500
    assert responses[-1].failed == 0
    assert [r.progress.done for r in responses if r.progress.stage == "encode"] == [500, 1000, 1500]
    info = await corpus_info(stack, CORPUS)
    assert set(info.sae_ids) == {sae_id, other_sae_id}
    exported = [
        m
        async for m in stack.stub.ExportActivations(
            search_pb2.ExportActivationsRequest(corpus=CORPUS, sae_id=other_sae_id)
        )
    ]
    rows = [row for message in exported for row in message.latents]
    assert len(rows) == 1500
    assert all(0 < len(row.indices) <= 8 for row in rows)
    hits = await stack.stub.Search(
        search_pb2.SearchRequest(
            corpus=CORPUS, text="galaxy clusters", mode=search_pb2.SEARCH_MODE_SPARSE, sae_id=other_sae_id
        )
    )
    assert len(hits.hits) == 10


async def test_vectors_of_an_embedding_store_are_used_instead_of_the_encoder(
    stack: Stack, records: list[Record], corpus_root: Path, wordllama: EmbeddingBackend
) -> None:
    batch = records[:50]
    vectors = wordllama.embed([r.embedding_text for r in batch[:40]]).vectors
    with EmbeddingStore.create(
        corpus_root / "vectors", wordllama.model_id, wordllama.dim, sync=False
    ) as store:
        store.append([r.id for r in batch[:40]], vectors)
    texts_before = stack.backend.texts

    responses = await stack.index(index_requests(batch, corpus="prestored", embeddings_path="vectors"))

    assert responses[-1].indexed == 50
    assert stack.backend.texts - texts_before == 10  # the ten papers the store does not hold
    stored = stack.search.corpora.store.retrieve("prestored", [batch[0].id], with_dense=True)
    assert np.allclose(stored[0].dense, vectors[0], atol=1e-6)


async def test_an_embedding_store_of_another_model_is_refused(stack: Stack, corpus_root: Path) -> None:
    with EmbeddingStore.create(corpus_root / "minilm", "all-MiniLM-L6-v2", 384, sync=False):
        pass

    error = await failure_of(stack.index([setup_message("astro", embeddings_path="minilm")]))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "holds model 'all-MiniLM-L6-v2'" in (error.details() or "")


@pytest.mark.parametrize(
    ("field", "path", "code", "message"),
    [
        ("corpus_path", "/etc/passwd", grpc.StatusCode.PERMISSION_DENIED, "is outside the folders"),
        ("corpus_path", "../../secrets.jsonl", grpc.StatusCode.PERMISSION_DENIED, "is outside the folders"),
        ("embeddings_path", "/etc", grpc.StatusCode.PERMISSION_DENIED, "is outside the folders"),
        ("corpus_path", "missing.jsonl", grpc.StatusCode.NOT_FOUND, "does not exist on the server"),
        ("embeddings_path", "no-store", grpc.StatusCode.NOT_FOUND, "does not exist on the server"),
        ("corpus_path", "a" * 300, grpc.StatusCode.INVALID_ARGUMENT, "300 bytes"),
    ],
)
async def test_server_paths_are_checked_by_the_one_allowed_folders_rule(
    stack: Stack, field: str, path: str, code: grpc.StatusCode, message: str
) -> None:
    error = await failure_of(stack.index([setup_message("elsewhere", **{field: path})]))

    assert error.code() == code
    assert message in (error.details() or "")
    assert field in (error.details() or "")


@pytest.mark.parametrize(
    ("field", "name", "message"),
    [
        # Issue 8, items 1 and 2: these came back INTERNAL ("embedded null byte", "File name too long").
        ("corpus_path", "{root}/a\x00b.jsonl", "contains a NUL character"),
        ("embeddings_path", "{root}/a\x00b.jsonl", "contains a NUL character"),
        (
            "corpus_path",
            "z" * 300 + ".jsonl",
            "has a name of 306 bytes; one part of a path may have at most 255",
        ),
        ("embeddings_path", "z" * 300, "has a name of 300 bytes; one part of a path may have at most 255"),
    ],
    ids=["NUL in corpus_path", "NUL in embeddings_path", "long corpus_path", "long embeddings_path"],
)
async def test_a_server_path_that_cannot_be_a_path_is_an_invalid_argument(
    stack: Stack, corpus_root: Path, field: str, name: str, message: str
) -> None:
    error = await failure_of(stack.index([setup_message("paths", **{field: name.format(root=corpus_root)})]))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert f"{field} " in (error.details() or "")
    assert message in (error.details() or "")


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        # Issue 8, item 3: damaged files inside the allowed folder came back INTERNAL.
        ("corrupt.parquet", b"PAR1" + b"\x00garbage" * 50 + b"PAR1", "is not a readable Parquet file"),
        ("truncated.jsonl.gz", None, "the compressed data is damaged"),
        (
            "latin1.csv",
            b"id,abstract\n1,caf\xe9 au lait\n2,fine\n",
            "is not valid UTF-8: line 2 holds byte 0xe9",
        ),
    ],
    ids=["corrupt parquet", "truncated jsonl.gz", "non-UTF-8 csv"],
)
async def test_a_damaged_corpus_file_is_an_invalid_argument_naming_the_file(
    stack: Stack, records: list[Record], corpus_root: Path, name: str, content: bytes | None, problem: str
) -> None:
    path = corpus_root / name
    if content is None:
        whole = write_jsonl(corpus_root / "whole.jsonl.gz", records[:400]).read_bytes()
        content = whole[: len(whole) // 2]
    path.write_bytes(content)

    error = await failure_of(stack.index([setup_message("damaged", corpus_path=name)]))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert f"corpus_path: {path}" in (error.details() or "")
    assert problem in (error.details() or "")
    assert len((await stack.stub.ListCorpora(search_pb2.ListCorporaRequest())).corpora) >= 1


@pytest.mark.parametrize(
    ("requests", "code", "message"),
    [
        (
            [batch_message([])],
            grpc.StatusCode.INVALID_ARGUMENT,
            "the first message of IndexDocuments must be",
        ),
        (
            [setup_message("bad name!")],
            grpc.StatusCode.INVALID_ARGUMENT,
            "corpus name 'bad name!' is invalid",
        ),
        ([setup_message("x", sae_ids=["nope"])], grpc.StatusCode.NOT_FOUND, "SAE 'nope' is not in the sae"),
        ([setup_message("x", batch_size=5000)], grpc.StatusCode.INVALID_ARGUMENT, "batch_size is 5000"),
        (
            [setup_message("x", sparse_only=True)],
            grpc.StatusCode.NOT_FOUND,
            "sparse_only needs an indexed corpus",
        ),
        (
            [setup_message("x"), setup_message("x")],
            grpc.StatusCode.INVALID_ARGUMENT,
            "only the first message of IndexDocuments may be an IndexSetup",
        ),
    ],
    ids=["no setup", "bad corpus name", "unknown sae", "huge batch", "sparse_only of nothing", "two setups"],
)
async def test_a_bad_indexing_job_is_refused_with_a_sentence(
    stack: Stack, requests: list[search_pb2.IndexDocumentsRequest], code: grpc.StatusCode, message: str
) -> None:
    error = await failure_of(stack.index(requests))

    assert error.code() == code
    assert message in (error.details() or "")
