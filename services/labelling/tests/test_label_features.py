"""LabelFeatures with the offline labeller, end to end over real gRPC, real abstracts and qdrant-edge."""

from __future__ import annotations

import grpc
import pytest
from labelling_testing import CORPUS, LabellingStack, labels_of
from search_testing import failure_of, index_requests

from featurelens.corpus import Record
from featurelens.v1 import labelling_pb2, search_pb2

FEATURES = [1, 5, 9, 14, 22, 40]


async def live_features(stack: LabellingStack, sae_id: str, wanted: int) -> list[int]:
    """The first latents that fire on some paper (from the search service's own activations)."""
    fired: set[int] = set()
    request = search_pb2.ExportActivationsRequest(corpus=CORPUS, sae_id=sae_id)
    async for message in stack.search.stub.ExportActivations(request):
        for latents in message.latents:
            fired.update(latents.indices)
    return sorted(fired)[:wanted]


async def test_labelling_streams_progress_and_a_scored_label_per_feature(
    stack: LabellingStack, sae_id: str
) -> None:
    features = await live_features(stack, sae_id, 6)

    messages = await stack.label(sae_id=sae_id, features=features, seed=3)

    labels = labels_of(messages)
    assert sorted(label.feature for label in labels) == features
    for label in labels:
        assert label.label.strip()
        assert label.sae_id == sae_id
        assert label.interpreter_model == "offline"
        assert label.predictor_model == "embedding"
        assert 0.0 <= label.embedding_auroc <= 1.0
        assert 0.0 <= label.auroc <= 1.0
        assert 0.0 < label.density <= 1.0
        assert label.scored_documents > 0
        assert label.example_ids
        assert label.cost_usd == 0.0
        assert label.tokens == 0
    assert [m.progress.stage for m in messages[:2]] == ["count", "label"]
    last = messages[-1]
    assert last.progress.done == last.progress.total == len(features)
    assert last.failed == 0
    assert last.llm_calls == 0
    assert not last.budget_exhausted
    assert "labelled 6" in last.progress.message


async def test_offline_labels_predict_their_feature_better_than_chance(
    stack: LabellingStack, sae_id: str
) -> None:
    features = await live_features(stack, sae_id, 12)

    labels = labels_of(await stack.label(sae_id=sae_id, features=features))

    mean_auroc = sum(label.embedding_auroc for label in labels) / len(labels)
    assert mean_auroc > 0.6, [(label.label, label.embedding_auroc) for label in labels]


async def test_labels_are_stored_and_a_rerun_skips_them_unless_overwritten(
    stack: LabellingStack, sae_id: str
) -> None:
    features = await live_features(stack, sae_id, 4)
    first = labels_of(await stack.label(sae_id=sae_id, features=features))

    rerun = await stack.label(sae_id=sae_id, features=features)
    again = await stack.label(sae_id=sae_id, features=features, overwrite=True)

    assert labels_of(rerun) == []
    assert rerun[-1].skipped == len(features)
    assert "labelled already" in rerun[1].progress.message
    assert sorted(label.feature for label in labels_of(again)) == features
    stored = await stack.stub.GetLabels(labelling_pb2.GetLabelsRequest(sae_id=sae_id, features=features))
    assert [label.feature for label in stored.labels] == features
    assert {label.label for label in stored.labels} == {label.label for label in first}


async def test_no_features_named_labels_every_live_latent_and_reports_silent_ones(
    stack: LabellingStack, sae_id: str
) -> None:
    messages = await stack.label(sae_id=sae_id)

    live = await live_features(stack, sae_id, 10_000)
    assert sorted(label.feature for label in labels_of(messages)) == live
    assert messages[-1].progress.total == len(live)


async def test_a_latent_that_never_fires_is_reported_failed_not_labelled(
    stack: LabellingStack, sae_id: str, records: list[Record]
) -> None:
    # Five papers fire at most 40 of the 256 latents: the rest never fire in this corpus.
    await stack.search.index(index_requests(records[:5], corpus="tiny"))
    fired: set[int] = set()
    async for message in stack.search.stub.ExportActivations(
        search_pb2.ExportActivationsRequest(corpus="tiny", sae_id=sae_id)
    ):
        for latents in message.latents:
            fired.update(latents.indices)
    silent = next(f for f in range(256) if f not in fired)

    messages = await stack.label(corpus="tiny", sae_id=sae_id, features=[silent, min(fired)])

    assert [label.feature for label in labels_of(messages)] == [min(fired)]
    failure = next(m for m in messages if m.failure_reason)
    assert failure.failed_feature == silent
    assert "fires on no document" in failure.failure_reason
    assert messages[-1].failed == 1


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"corpus": "nope"}, grpc.StatusCode.NOT_FOUND, "not indexed"),
        ({"corpus": "bad name!"}, grpc.StatusCode.INVALID_ARGUMENT, "corpus name"),
        ({"features": [100_000]}, grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        ({"features": [3, 3]}, grpc.StatusCode.INVALID_ARGUMENT, "twice"),
        ({"scoring_documents": 7}, grpc.StatusCode.INVALID_ARGUMENT, "scoring_documents"),
        ({"top_documents": 500}, grpc.StatusCode.INVALID_ARGUMENT, "top_documents"),
        ({"budget_usd": -1.0}, grpc.StatusCode.INVALID_ARGUMENT, "budget_usd"),
        ({"budget_usd": float("nan")}, grpc.StatusCode.INVALID_ARGUMENT, "budget_usd"),
        ({"domain": "x" * 500}, grpc.StatusCode.INVALID_ARGUMENT, "domain"),
        ({"llm_base_url": "ftp://example.org"}, grpc.StatusCode.INVALID_ARGUMENT, "http(s) URL"),
        ({"llm_base_url": "https://api.example.org/v1"}, grpc.StatusCode.FAILED_PRECONDITION, "not allowed"),
        ({"interpreter_model": "gpt-4o-mini"}, grpc.StatusCode.FAILED_PRECONDITION, "needs an LLM endpoint"),
    ],
)
async def test_a_bad_job_is_refused_before_any_work(
    stack: LabellingStack, sae_id: str, fields: dict[str, object], code: grpc.StatusCode, words: str
) -> None:
    request = {"sae_id": sae_id, "features": [1]} | fields

    error = await failure_of(stack.label(**request))

    assert error.code() == code, error.details()
    assert words in (error.details() or "")
    assert not await stack.labelling.labels.has(sae_id)


async def test_an_unknown_sae_is_not_found(stack: LabellingStack) -> None:
    error = await failure_of(stack.label(sae_id="no-such-sae", features=[1]))

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_a_cancelled_job_keeps_the_labels_it_finished_and_a_rerun_resumes(
    stack: LabellingStack, sae_id: str
) -> None:
    call = stack.stub.LabelFeatures(labelling_pb2.LabelFeaturesRequest(corpus=CORPUS, sae_id=sae_id))
    finished: list[int] = []
    async for message in call:
        if message.HasField("label"):
            finished.append(message.label.feature)
        if len(finished) == 3:
            call.cancel()
            break

    stored = await stack.stub.GetLabels(labelling_pb2.GetLabelsRequest(sae_id=sae_id, features=finished))
    rerun = await stack.label(sae_id=sae_id, features=list(range(40)))

    assert [label.feature for label in stored.labels] == finished
    assert rerun[-1].skipped >= len([f for f in finished if f < 40])
    assert {label.feature for label in labels_of(rerun)}.isdisjoint(finished)
