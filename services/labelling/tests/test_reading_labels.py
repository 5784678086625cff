"""Reading labels back: one, many, listed by score, found by meaning, and in search's answers."""

from __future__ import annotations

import grpc
import pytest
from labelling_testing import CORPUS, LabellingStack, labels_of
from search_testing import failure_of

from featurelens.v1 import common_pb2, labelling_pb2, search_pb2


@pytest.fixture
async def labelled(stack: LabellingStack, sae_id: str) -> list[labelling_pb2.FeatureLabel]:
    """Eighteen live features of the test SAE, labelled offline."""
    fired: set[int] = set()
    async for message in stack.search.stub.ExportActivations(
        search_pb2.ExportActivationsRequest(corpus=CORPUS, sae_id=sae_id)
    ):
        for latents in message.latents:
            fired.update(latents.indices)
    return labels_of(await stack.label(sae_id=sae_id, features=sorted(fired)[:18]))


async def test_get_label_returns_the_stored_label_and_not_found_without_one(
    stack: LabellingStack, sae_id: str, labelled: list[labelling_pb2.FeatureLabel]
) -> None:
    one = labelled[0]

    got = await stack.stub.GetLabel(labelling_pb2.GetLabelRequest(sae_id=sae_id, feature=one.feature))
    missing = await failure_of(
        stack.stub.GetLabel(labelling_pb2.GetLabelRequest(sae_id=sae_id, feature=255_000))
    )
    unlabelled_sae = await failure_of(
        stack.stub.GetLabel(labelling_pb2.GetLabelRequest(sae_id="other", feature=1))
    )

    assert got.label == one
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert "has no label" in (missing.details() or "")
    assert unlabelled_sae.code() == grpc.StatusCode.NOT_FOUND
    assert "has no labels" in (unlabelled_sae.details() or "")


async def test_an_empty_sae_id_means_the_default_sae(
    stack: LabellingStack, labelled: list[labelling_pb2.FeatureLabel]
) -> None:
    got = await stack.stub.GetLabel(labelling_pb2.GetLabelRequest(feature=labelled[0].feature))

    assert got.label == labelled[0]


async def test_list_labels_pages_best_first_and_filters_by_r(
    stack: LabellingStack, sae_id: str, labelled: list[labelling_pb2.FeatureLabel]
) -> None:
    pages: list[labelling_pb2.ListLabelsResponse] = []
    token = ""
    while True:
        page = await stack.stub.ListLabels(
            labelling_pb2.ListLabelsRequest(sae_id=sae_id, page_size=5, page_token=token)
        )
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    listed = [label for page in pages for label in page.labels]
    defined = [label.pearson_r for label in listed if label.HasField("pearson_r")]
    cut = sorted(defined)[len(defined) // 2]
    filtered = await stack.stub.ListLabels(labelling_pb2.ListLabelsRequest(sae_id=sae_id, min_pearson_r=cut))

    assert sorted(label.feature for label in listed) == sorted(label.feature for label in labelled)
    assert [len(page.labels) for page in pages[:-1]] == [5] * (len(pages) - 1)
    assert defined == sorted(defined, reverse=True)
    assert filtered.labels
    assert all(label.pearson_r >= cut for label in filtered.labels)


@pytest.mark.parametrize("token", ["garbage", "e30", "x" * 10_000])
async def test_a_page_token_this_listing_did_not_issue_is_refused(
    stack: LabellingStack, sae_id: str, labelled: list[labelling_pb2.FeatureLabel], token: str
) -> None:
    error = await failure_of(
        stack.stub.ListLabels(labelling_pb2.ListLabelsRequest(sae_id=sae_id, page_token=token))
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (error.details() or "")


async def test_a_token_of_another_filter_is_refused(
    stack: LabellingStack, sae_id: str, labelled: list[labelling_pb2.FeatureLabel]
) -> None:
    first = await stack.stub.ListLabels(labelling_pb2.ListLabelsRequest(sae_id=sae_id, page_size=2))

    error = await failure_of(
        stack.stub.ListLabels(
            labelling_pb2.ListLabelsRequest(
                sae_id=sae_id, page_token=first.next_page_token, min_pearson_r=0.5
            )
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_search_features_finds_a_label_by_its_own_words_first(
    stack: LabellingStack, sae_id: str, labelled: list[labelling_pb2.FeatureLabel]
) -> None:
    target = labelled[3]

    by_meaning = await stack.stub.SearchFeatures(
        labelling_pb2.SearchFeaturesRequest(sae_id=sae_id, query=target.label, top_k=3)
    )
    word = target.label.split(";")[0].split()[0]
    by_substring = await stack.stub.SearchFeatures(
        labelling_pb2.SearchFeaturesRequest(sae_id=sae_id, query=word.upper(), top_k=50, substring=True)
    )

    assert by_meaning.matches[0].label.label == target.label
    assert by_meaning.matches[0].score == pytest.approx(1.0, abs=1e-3)
    scores = [match.score for match in by_meaning.matches]
    assert scores == sorted(scores, reverse=True)
    exact = [match for match in by_substring.matches if match.substring_match]
    assert exact
    assert all(word.lower() in match.label.label.lower() for match in exact)
    assert target.feature in {match.label.feature for match in exact}


async def test_score_label_scores_a_callers_label_without_storing_it(
    stack: LabellingStack, sae_id: str, labelled: list[labelling_pb2.FeatureLabel]
) -> None:
    target = labelled[0]
    request = labelling_pb2.ScoreLabelRequest(
        corpus=CORPUS, sae_id=sae_id, feature=target.feature, label="pizza recipes"
    )

    scored = await stack.stub.ScoreLabel(request)
    own = await stack.stub.ScoreLabel(
        labelling_pb2.ScoreLabelRequest(
            corpus=CORPUS, sae_id=sae_id, feature=target.feature, label=target.label
        )
    )

    assert scored.label.label == "pizza recipes"
    assert scored.label.interpreter_model == "caller"
    assert own.label.embedding_auroc > scored.label.embedding_auroc
    stored = await stack.stub.GetLabel(labelling_pb2.GetLabelRequest(sae_id=sae_id, feature=target.feature))
    assert stored.label.label == target.label


async def test_search_explanations_and_steering_name_the_labels(
    stack: LabellingStack, sae_id: str, labelled: list[labelling_pb2.FeatureLabel]
) -> None:
    target = labelled[2]
    names = {label.feature: label.label for label in labelled}

    by_phrase = await stack.search.stub.Search(
        search_pb2.SearchRequest(
            corpus=CORPUS,
            text="observations of the sky",
            mode=search_pb2.SEARCH_MODE_HYBRID,
            explain=True,
            with_rank_changes=True,
            interventions=[common_pb2.Intervention(phrase=target.label, weight=2.0)],
        )
    )
    by_id = await stack.search.stub.Search(
        search_pb2.SearchRequest(
            corpus=CORPUS,
            text="observations of the sky",
            mode=search_pb2.SEARCH_MODE_HYBRID,
            interventions=[common_pb2.Intervention(feature=target.feature, weight=2.0)],
        )
    )

    steered = by_phrase.steered[0]
    assert (steered.feature, steered.label, steered.phrase) == (target.feature, target.label, target.label)
    assert steered.match_score == pytest.approx(1.0, abs=1e-3)
    assert [hit.document.id for hit in by_phrase.hits] == [hit.document.id for hit in by_id.hits]
    explained = [c for hit in by_phrase.hits for c in hit.explanation if c.feature in names]
    assert explained
    assert all(c.label == names[c.feature] for c in explained)
