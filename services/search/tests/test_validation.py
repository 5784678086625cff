"""Bad requests get the right status code and a sentence naming what was wrong; the server lives on."""

from __future__ import annotations

import numpy as np
import pytest
from grpc import StatusCode
from search_testing import CORPUS, Stack, failure_of

from featurelens.v1 import common_pb2, search_pb2
from featurelens.wire.arrays import to_dense_vector

INVALID = StatusCode.INVALID_ARGUMENT


def text_request(**fields: object) -> search_pb2.SearchRequest:
    values: dict[str, object] = {"corpus": CORPUS, "text": "galaxy clusters"} | fields
    return search_pb2.SearchRequest(**values)  # type: ignore[arg-type]


def vector_request(vector: np.ndarray, **fields: object) -> search_pb2.SearchRequest:
    return search_pb2.SearchRequest(corpus=CORPUS, vector=to_dense_vector(vector), **fields)  # type: ignore[arg-type]


def nan_vector() -> np.ndarray:
    vector = np.ones(256, dtype=np.float32)
    vector[17] = np.nan
    return vector


def near_request(vector: np.ndarray, firing: bool = False) -> search_pb2.SampleDocumentsRequest:
    return search_pb2.SampleDocumentsRequest(
        corpus=CORPUS, feature=1, firing=firing, near=to_dense_vector(vector.astype(np.float32))
    )


def additive(feature: int, weight: float) -> common_pb2.Intervention:
    return common_pb2.Intervention(feature=feature, weight=weight)


CASES = [
    pytest.param(search_pb2.SearchRequest(corpus=CORPUS), INVALID, "the query is empty", id="no query"),
    pytest.param(text_request(text="  \n"), INVALID, "the query text is empty", id="blank text"),
    pytest.param(
        vector_request(np.ones(384, dtype=np.float32)),
        INVALID,
        "the query vector has 384 dims, but corpus 'astro' holds 256-dim embeddings",
        id="wrong dimension",
    ),
    pytest.param(vector_request(nan_vector()), INVALID, "NaN or infinite value at position 17", id="NaN"),
    pytest.param(vector_request(np.zeros(256, dtype=np.float32)), INVALID, "all zeros", id="zero vector"),
    # Issue 8, item 7: a 3e38 vector was blamed on "sparse vector holds a NaN or infinite value".
    pytest.param(
        vector_request(np.full(256, 3e38, dtype=np.float32), mode=search_pb2.SEARCH_MODE_HYBRID),
        INVALID,
        "the query vector is malformed: dense vector holds 3e+38 at position 0; values must lie within "
        "±1,000,000",
        id="hybrid 3e38 vector",
    ),
    pytest.param(
        vector_request(np.full(256, 3e38, dtype=np.float32), interventions=[additive(1, 2.0)]),
        INVALID,
        "the query vector is malformed: dense vector holds 3e+38 at position 0",
        id="steered 3e38 vector",
    ),
    pytest.param(
        vector_request(np.full(256, 1e6, dtype=np.float32), mode=search_pb2.SEARCH_MODE_HYBRID),
        INVALID,
        "the query vector is too large for SAE",
        id="hybrid vector whose latents leave the bound",
    ),
    pytest.param(text_request(top_k=1001), INVALID, "top_k is 1001; the limit is 1000", id="top_k too large"),
    pytest.param(
        text_request(offset=10**6), INVALID, "offset is 1000000; pages go no deeper", id="absurd offset"
    ),
    pytest.param(text_request(mode=7), INVALID, "mode 7 is not a search mode", id="unknown mode"),
    pytest.param(text_request(fusion=5), INVALID, "fusion 5 is not a fusion method", id="unknown fusion"),
    pytest.param(
        text_request(filter=search_pb2.Filter(date_from="2025/01/01")),
        INVALID,
        "filter.date_from '2025/01/01' is not a calendar day written YYYY-MM-DD",
        id="bad date format",
    ),
    pytest.param(
        text_request(filter=search_pb2.Filter(date_to="2025-02-30")),
        INVALID,
        "filter.date_to '2025-02-30' is not a calendar day",
        id="no such day",
    ),
    pytest.param(
        text_request(filter=search_pb2.Filter(date_from="2025-06-01", date_to="2025-05-01")),
        INVALID,
        "filter.date_from 2025-06-01 is after filter.date_to 2025-05-01",
        id="date_from after date_to",
    ),
    pytest.param(
        text_request(filter=search_pb2.Filter(features_must_fire=[4], features_must_not_fire=[4])),
        INVALID,
        "feature 4 is in both features_must_fire and features_must_not_fire",
        id="contradicting feature filters",
    ),
    pytest.param(
        text_request(filter=search_pb2.Filter(features_must_fire=[512])),
        INVALID,
        "filter feature 512 does not exist: SAE",
        id="feature out of range",
    ),
    pytest.param(
        text_request(dense_weight=float("nan")), INVALID, "dense_weight must be a finite", id="NaN leg weight"
    ),
    pytest.param(
        text_request(sparse_weight=-1.0),
        INVALID,
        "sparse_weight must be a finite number from 0 to 1,000",
        id="negative weight",
    ),
    # Issue 8, item 7: DBSF fusion with weights of 3e38 returned infinite scores.
    pytest.param(
        text_request(mode=search_pb2.SEARCH_MODE_HYBRID, fusion=search_pb2.FUSION_DBSF, dense_weight=3e38),
        INVALID,
        "dense_weight must be a finite number from 0 to 1,000 (only the ratio of the two weights matters), "
        "got 3e+38",
        id="huge leg weight",
    ),
    pytest.param(
        text_request(interventions=[additive(3, float("inf"))]),
        INVALID,
        "interventions[0]: the weight on feature 3 is not a finite number",
        id="infinite steer weight",
    ),
    pytest.param(
        text_request(interventions=[additive(3, 0.5), additive(4, 10.5)]),
        INVALID,
        "interventions[1]: additive weight 10.5 on feature 4 is beyond ±10",
        id="steer weight over the bound",
    ),
    pytest.param(
        text_request(interventions=[additive(i, 0.1) for i in range(257)]),
        INVALID,
        "257 interventions; the limit is 256 in one request",
        id="too many interventions",
    ),
    pytest.param(
        text_request(
            interventions=[common_pb2.Intervention(feature=3, weight=-1, mode=common_pb2.STEER_MODE_CLAMP)]
        ),
        INVALID,
        "interventions[0]: clamp value -1 on feature 3 is negative; latent activations are ≥ 0",
        id="negative clamp",
    ),
    pytest.param(
        text_request(interventions=[common_pb2.Intervention(feature=3, weight=1, mode=9)]),
        INVALID,
        "interventions[0] has steer mode 9, which is unknown",
        id="unknown steer mode",
    ),
    pytest.param(
        text_request(interventions=[additive(600, 0.5)]),
        INVALID,
        "interventions[0]: feature 600 does not exist: SAE",
        id="intervention feature out of range",
    ),
    pytest.param(
        text_request(interventions=[additive(3, 0.5), additive(9, 1.0), additive(3, -0.5)]),
        INVALID,
        "feature 3 is steered twice: by interventions[0] and by interventions[2]; steer it once",
        id="the same feature twice",
    ),
    pytest.param(
        text_request(interventions=[additive(3, 0.5), common_pb2.Intervention(weight=0.5)]),
        INVALID,
        "interventions[1] names no feature, family or phrase",
        id="intervention without a target",
    ),
    pytest.param(
        text_request(interventions=[common_pb2.Intervention(phrase=" ", weight=0.5)]),
        INVALID,
        "interventions[0] has an empty phrase",
        id="empty phrase",
    ),
    pytest.param(
        text_request(interventions=[common_pb2.Intervention(phrase="p" * 201, weight=0.5)]),
        INVALID,
        "interventions[0] has a phrase of 201 characters; the limit is 200",
        id="phrase too long",
    ),
    pytest.param(
        text_request(interventions=[common_pb2.Intervention(phrase="dark matter halos", weight=0.5)]),
        StatusCode.UNAVAILABLE,
        "cannot resolve phrase 'dark matter halos': the labelling service at 127.0.0.1:",
        id="phrase target where no labelling service answers",
    ),
    pytest.param(
        text_request(interventions=[common_pb2.Intervention(family_id="", weight=0.5)]),
        INVALID,
        "interventions[0] has an empty family_id",
        id="empty family id",
    ),
    pytest.param(
        text_request(interventions=[common_pb2.Intervention(family_id="fam-1", weight=0.5)]),
        StatusCode.UNAVAILABLE,
        "cannot expand family 'fam-1': the family service at 127.0.0.1:",
        id="family target where no family service answers",
    ),
    pytest.param(
        text_request(corpus="astro/../x"), INVALID, "corpus name 'astro/../x' is invalid", id="bad corpus"
    ),
    pytest.param(text_request(corpus=""), INVALID, "corpus is empty", id="no corpus"),
    pytest.param(
        text_request(corpus="nebulae"), StatusCode.NOT_FOUND, "corpus 'nebulae' does not exist", id="unknown"
    ),
    # Issue 8, item 5: client values of 8 KB or more came back as RESOURCE_EXHAUSTED.
    pytest.param(
        text_request(mode=search_pb2.SEARCH_MODE_SPARSE, sae_id="z" * 10_000),
        StatusCode.NOT_FOUND,
        "... (10,000 characters) is not indexed in corpus 'astro'",
        id="huge sae id",
    ),
    pytest.param(
        text_request(corpus="c" * 10_000),
        INVALID,
        "... (10,000 characters) is invalid: use 1 to 128 letters",
        id="huge corpus name",
    ),
    pytest.param(
        text_request(interventions=[common_pb2.Intervention(family_id="f" * 10_000, weight=0.5)]),
        StatusCode.UNAVAILABLE,
        "... (10,000 characters): the family service at 127.0.0.1:",
        id="huge family id",
    ),
    pytest.param(
        text_request(mode=search_pb2.SEARCH_MODE_SPARSE, sae_id="sae-unknown"),
        StatusCode.NOT_FOUND,
        "SAE 'sae-unknown' is not indexed in corpus 'astro'",
        id="sae not indexed",
    ),
]


@pytest.mark.parametrize(("search", "code", "message"), CASES)
async def test_an_invalid_search_is_refused_with_a_sentence_and_the_server_keeps_serving(
    stack: Stack, search: search_pb2.SearchRequest, code: StatusCode, message: str
) -> None:
    error = await failure_of(stack.stub.Search(search))

    assert error.code() == code
    assert message in (error.details() or "")
    assert len((await stack.stub.Search(text_request(top_k=1))).hits) == 1


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        pytest.param(
            lambda stub: stub.TopDocuments(search_pb2.TopDocumentsRequest(corpus=CORPUS, feature=1, n=1001)),
            INVALID,
            "n is 1001; the limit is 1000",
            id="top documents: n too large",
        ),
        pytest.param(
            lambda stub: stub.TopDocuments(search_pb2.TopDocumentsRequest(corpus=CORPUS, feature=512)),
            INVALID,
            "feature 512 does not exist",
            id="top documents: no such feature",
        ),
        pytest.param(
            lambda stub: stub.SampleDocuments(search_pb2.SampleDocumentsRequest(corpus="x!", feature=1)),
            INVALID,
            "corpus name 'x!' is invalid",
            id="sample: bad corpus",
        ),
        pytest.param(
            lambda stub: stub.SampleDocuments(
                search_pb2.SampleDocumentsRequest(corpus=CORPUS, sae_id="nope", feature=1)
            ),
            StatusCode.NOT_FOUND,
            "SAE 'nope' is not indexed in corpus 'astro'",
            id="sample: sae not indexed",
        ),
        pytest.param(
            lambda stub: stub.SampleDocuments(near_request(np.ones(256), firing=True)),
            INVALID,
            "near asks for the non-firing documents nearest a vector (hard negatives), so it needs "
            "firing=false",
            id="near: firing documents",
        ),
        pytest.param(
            lambda stub: stub.SampleDocuments(near_request(np.ones(384))),
            INVALID,
            "near has 384 dims, but corpus 'astro' holds 256-dim embeddings",
            id="near: wrong dimension",
        ),
        pytest.param(
            lambda stub: stub.SampleDocuments(near_request(nan_vector())),
            INVALID,
            "near is malformed: dense vector holds a NaN or infinite value at position 17",
            id="near: NaN",
        ),
        pytest.param(
            lambda stub: stub.SampleDocuments(near_request(np.full(256, 3e38))),
            INVALID,
            "near is malformed: dense vector holds 3e+38 at position 0; values must lie within ±1,000,000",
            id="near: beyond the bound",
        ),
        pytest.param(
            lambda stub: stub.SampleDocuments(
                search_pb2.SampleDocumentsRequest(
                    corpus=CORPUS, feature=1, near=common_pb2.DenseVector(data=b"\0" * 12, dim=4)
                )
            ),
            INVALID,
            "near is malformed: dense vector data has 12 bytes but dim=4",
            id="near: short data",
        ),
        pytest.param(
            lambda stub: stub.SampleDocuments(near_request(np.zeros(256))),
            INVALID,
            "near is all zeros",
            id="near: zeros",
        ),
        pytest.param(
            lambda stub: stub.DeleteDocuments(
                search_pb2.DeleteDocumentsRequest(corpus=CORPUS, doc_ids=["a", ""])
            ),
            INVALID,
            "doc_ids holds an empty id",
            id="delete: empty id",
        ),
        pytest.param(
            lambda stub: stub.DeleteDocuments(
                search_pb2.DeleteDocumentsRequest(corpus="nebulae", doc_ids=["a"])
            ),
            StatusCode.NOT_FOUND,
            "corpus 'nebulae' does not exist",
            id="delete: unknown corpus",
        ),
    ],
)
async def test_invalid_document_requests_are_refused_with_a_sentence(
    stack: Stack, call: object, code: StatusCode, message: str
) -> None:
    error = await failure_of(call(stack.stub))  # type: ignore[operator]

    assert error.code() == code
    assert message in (error.details() or "")


async def test_an_export_with_a_huge_batch_is_refused(stack: Stack) -> None:
    stream = stack.stub.ExportActivations(
        search_pb2.ExportActivationsRequest(corpus=CORPUS, batch_size=10**6)
    )

    error = await failure_of(stream.read())

    assert error.code() == INVALID
    assert "batch_size is 1000000; the limit is 10000" in (error.details() or "")
