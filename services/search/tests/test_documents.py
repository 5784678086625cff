"""A feature's documents (top, sampled), activation export, listing and deleting documents."""

from __future__ import annotations

import numpy as np
from search_testing import CORPUS, Stack

from featurelens.corpus import Record
from featurelens.embedding.backends import EmbeddingBackend
from featurelens.v1 import search_pb2
from featurelens.wire.arrays import from_dense_vector, to_dense_vector


async def export(
    stack: Stack, sae_id: str = "", batch_size: int = 0
) -> list[search_pb2.ExportActivationsResponse]:
    request = search_pb2.ExportActivationsRequest(corpus=CORPUS, sae_id=sae_id, batch_size=batch_size)
    return [message async for message in stack.stub.ExportActivations(request)]


def activations_of(messages: list[search_pb2.ExportActivationsResponse], feature: int) -> dict[str, float]:
    found = {}
    for message in messages:
        for doc_id, row in zip(message.doc_ids, message.latents, strict=True):
            values = dict(zip(row.indices, row.values, strict=True))
            if feature in values:
                found[doc_id] = values[feature]
    return found


async def test_the_export_streams_every_document_s_latents_in_batches(stack: Stack, sae_id: str) -> None:
    messages = await export(stack, sae_id, batch_size=400)

    assert [len(m.doc_ids) for m in messages] == [400, 400, 400, 300]
    doc_ids = [doc_id for m in messages for doc_id in m.doc_ids]
    assert len(set(doc_ids)) == 1500
    rows = [row for m in messages for row in m.latents]
    assert all(0 < len(row.indices) <= 16 and all(v > 0 for v in row.values) for row in rows)


async def test_top_documents_are_those_with_the_highest_activations_strongest_first(stack: Stack) -> None:
    feature = 42
    activations = activations_of(await export(stack), feature)
    expected = sorted(activations.values(), reverse=True)[:7]

    response = await stack.stub.TopDocuments(
        search_pb2.TopDocumentsRequest(corpus=CORPUS, feature=feature, n=7, with_text=True)
    )

    got = [d.activation for d in response.documents]
    assert np.allclose(got, expected, rtol=1e-6)
    assert all(activations[d.document.id] == d.activation for d in response.documents)
    assert all(d.document.text and d.document.title for d in response.documents)


async def test_samples_of_firing_and_silent_documents_are_seeded(stack: Stack) -> None:
    messages = await export(stack)
    counts = np.bincount([i for m in messages for row in m.latents for i in row.indices], minlength=512)
    feature = int(np.argmax(counts))  # fires on far more than the 12 sampled
    firing_ids = set(activations_of(messages, feature))

    def sample(firing: bool, seed: int) -> search_pb2.SampleDocumentsRequest:
        return search_pb2.SampleDocumentsRequest(
            corpus=CORPUS, feature=feature, n=12, firing=firing, seed=seed
        )

    firing = await stack.stub.SampleDocuments(sample(True, 1))
    again = await stack.stub.SampleDocuments(sample(True, 1))
    other_seed = await stack.stub.SampleDocuments(sample(True, 2))
    silent = await stack.stub.SampleDocuments(sample(False, 1))

    firing_docs = [d.document.id for d in firing.documents]
    assert len(firing_ids) > 50
    assert len(firing_docs) == 12
    assert set(firing_docs) <= firing_ids
    assert all(d.activation > 0 for d in firing.documents)
    assert [d.document.id for d in again.documents] == firing_docs
    assert [d.document.id for d in other_seed.documents] != firing_docs
    assert len(silent.documents) == 12
    assert not {d.document.id for d in silent.documents} & firing_ids
    assert all(d.activation == 0 for d in silent.documents)


async def test_documents_carry_their_stored_embedding_only_when_asked(
    stack: Stack, records: list[Record], wordllama: EmbeddingBackend
) -> None:
    texts = {r.id: r.embedding_text for r in records}
    top = search_pb2.TopDocumentsRequest(corpus=CORPUS, feature=42, n=5)
    sample = search_pb2.SampleDocumentsRequest(corpus=CORPUS, feature=42, n=5, seed=3)

    plain_top = await stack.stub.TopDocuments(top)
    plain_sample = await stack.stub.SampleDocuments(sample)
    top.with_embedding = sample.with_embedding = True
    embedded_top = await stack.stub.TopDocuments(top)
    embedded_sample = await stack.stub.SampleDocuments(sample)

    assert not any(d.HasField("embedding") for d in [*plain_top.documents, *plain_sample.documents])
    documents = [*embedded_top.documents, *embedded_sample.documents]
    assert [d.document.id for d in documents] == [
        d.document.id for d in [*plain_top.documents, *plain_sample.documents]
    ]
    stored = np.stack([from_dense_vector(d.embedding) for d in documents])
    fresh = wordllama.embed([texts[d.document.id] for d in documents]).vectors
    assert stored.shape == (10, 256)
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.sum(stored * fresh, axis=1), 1.0, atol=1e-4)  # the document's own embedding


async def test_the_silent_documents_nearest_a_vector_are_the_nearest_by_cosine_among_those_not_firing(
    stack: Stack, records: list[Record], wordllama: EmbeddingBackend
) -> None:
    feature = 42
    firing = set(activations_of(await export(stack), feature))
    top = await stack.stub.TopDocuments(
        search_pb2.TopDocumentsRequest(corpus=CORPUS, feature=feature, n=10, with_embedding=True)
    )
    centroid = np.mean([from_dense_vector(d.embedding) for d in top.documents], axis=0)
    embeddings = wordllama.embed([r.embedding_text for r in records]).vectors
    cosines = embeddings @ (centroid / np.linalg.norm(centroid))
    silent = [i for i, r in enumerate(records) if r.id not in firing]
    expected = [records[i].id for i in sorted(silent, key=lambda i: -cosines[i])[:15]]

    response = await stack.stub.SampleDocuments(
        search_pb2.SampleDocumentsRequest(
            corpus=CORPUS, feature=feature, n=15, near=to_dense_vector(centroid), with_text=True, seed=9
        )
    )

    assert len(firing) >= 10
    assert [d.document.id for d in response.documents] == expected
    assert all(d.activation == 0 and d.document.text for d in response.documents)
    assert not any(d.HasField("embedding") for d in response.documents)


async def test_corpora_are_listed_with_their_size_model_and_saes(stack: Stack, sae_id: str) -> None:
    response = await stack.stub.ListCorpora(search_pb2.ListCorporaRequest())

    assert [(c.corpus, c.documents, c.dim, list(c.sae_ids)) for c in response.corpora] == [
        (CORPUS, 1500, 256, [sae_id])
    ]
    assert response.corpora[0].embedding_model.startswith("wordllama")


async def test_deleting_documents_counts_only_those_that_existed(stack: Stack) -> None:
    doc_ids = (await export(stack, batch_size=2))[0].doc_ids

    response = await stack.stub.DeleteDocuments(
        search_pb2.DeleteDocumentsRequest(corpus=CORPUS, doc_ids=[*doc_ids, "no-such-paper"])
    )
    again = await stack.stub.DeleteDocuments(
        search_pb2.DeleteDocumentsRequest(corpus=CORPUS, doc_ids=list(doc_ids))
    )

    assert response.deleted == 2
    assert again.deleted == 0
    listed = await stack.stub.ListCorpora(search_pb2.ListCorporaRequest())
    assert listed.corpora[0].documents == 1498
