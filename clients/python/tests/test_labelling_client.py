"""The SDK's labelling sub-client against an in-test labelling servicer on loopback.

The servicer (``FakeLabelling`` in conftest) has five stored labels of sae-32-k2 (features 3, 7,
12, 20 and 25; feature 20's Pearson r is undefined), labels features 0-9 by default, skips the
stored ones, fails feature 5 and, with an interpreter model, spends $0.002 on each odd feature
while even ones are answered from the cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import pytest

from featurelens.client import (
    AsyncFeaturelensClient,
    AsyncPage,
    Backoff,
    FailedPreconditionError,
    FeatureLabel,
    FeaturelensClient,
    FeatureMatch,
    InternalServerError,
    InvalidArgumentError,
    LabelProgress,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SyncPage,
    UnavailableError,
)
from featurelens.client.errors import APIStatusError

SAE = "sae-32-k2"
ENDPOINT = "http://127.0.0.1:9/v1"
FAST = Backoff(initial_s=0.001, max_s=0.004)


@pytest.fixture
def client(services_address: str) -> Iterator[FeaturelensClient]:
    with FeaturelensClient(services_address, backoff=FAST) as client:
        yield client


@pytest.fixture
async def aclient(services_address: str) -> AsyncIterator[AsyncFeaturelensClient]:
    async with AsyncFeaturelensClient(services_address, backoff=FAST) as client:
        yield client


# -- label_features --------------------------------------------------------------------------------


def test_label_features_sends_every_setting_and_streams_typed_progress_and_labels(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    events = list(
        client.labelling.label_features(
            SAE,
            "arxiv",
            features=[0, 1, 3, 5],
            interpreter_model="gpt-4o-mini",
            predictor_model="gpt-4o-mini",
            top_documents=12,
            scoring_documents=30,
            seed=7,
            domain="astrophysics arXiv abstracts",
            llm_base_url=ENDPOINT,
            budget_usd=1.5,
        )
    )

    [sent] = fake_labelling.requests["LabelFeatures"]
    assert (sent.sae_id, sent.corpus, list(sent.features)) == (SAE, "arxiv", [0, 1, 3, 5])
    assert (sent.interpreter_model, sent.predictor_model) == ("gpt-4o-mini", "gpt-4o-mini")
    assert (sent.top_documents, sent.scoring_documents, sent.seed) == (12, 30, 7)
    assert (sent.domain, sent.llm_base_url, sent.budget_usd) == (
        "astrophysics arXiv abstracts",
        ENDPOINT,
        1.5,
    )
    assert sent.overwrite is False
    assert all(isinstance(event, LabelProgress) for event in events)
    assert [event.progress.done for event in events] == [1, 2, 3, 4]
    assert [event.label.feature if event.label else None for event in events] == [0, 1, None, None]
    first = events[0].label
    assert isinstance(first, FeatureLabel)
    assert (first.label, first.interpreter_model) == ("topic 0", "gpt-4o-mini")
    assert first.pearson_r == pytest.approx(0.3)
    last = events[-1]
    assert (last.skipped, last.failed, last.failed_feature) == (1, 1, 5)
    assert last.failure_reason == "the interpreter's answer could not be parsed"
    assert (last.llm_calls, last.cache_hits, last.tokens_used) == (2, 2, 1200)
    assert last.cost_usd == pytest.approx(0.002)
    assert last.budget_exhausted is False
    assert events[0].failed_feature is None


def test_label_features_leaves_unset_settings_to_the_server(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    events = list(client.labelling.label_features(None, "arxiv"))

    [sent] = fake_labelling.requests["LabelFeatures"]
    assert (sent.sae_id, list(sent.features), sent.interpreter_model, sent.llm_base_url) == ("", [], "", "")
    assert (sent.top_documents, sent.scoring_documents, sent.budget_usd, sent.domain) == (0, 0, 0.0, "")
    labelled = [event.label for event in events if event.label is not None]
    assert [label.feature for label in labelled] == [0, 1, 2, 4, 6, 8, 9]
    assert {label.interpreter_model for label in labelled} == {"offline"}
    assert (events[-1].llm_calls, events[-1].cost_usd) == (0, 0.0)


def test_overwrite_relabels_the_features_that_have_a_label(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    events = list(client.labelling.label_features(SAE, "arxiv", features=[3, 7], overwrite=True))

    assert fake_labelling.requests["LabelFeatures"][0].overwrite is True
    assert [event.label.label for event in events if event.label] == ["topic 3", "topic 7"]
    assert events[-1].skipped == 0


def test_the_budget_stop_is_the_last_message_and_the_labels_before_it_are_kept(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    events = list(
        client.labelling.label_features(SAE, "arxiv", interpreter_model="gpt-4o-mini", budget_usd=0.003)
    )

    labelled = [event.label.feature for event in events if event.label]
    assert labelled == [0, 1, 2, 4, 6, 8]
    assert [event.budget_exhausted for event in events] == [False] * (len(events) - 1) + [True]
    assert events[-1].cost_usd == pytest.approx(0.002)
    assert events[-1].label is None


def test_an_endpoint_the_server_does_not_allow_is_a_failed_precondition_error(
    client: FeaturelensClient,
) -> None:
    with pytest.raises(FailedPreconditionError, match="not one this server allows"):
        list(client.labelling.label_features(SAE, "arxiv", llm_base_url="http://elsewhere.example/v1"))


def test_label_features_is_tried_once_because_it_stores_labels_as_it_goes(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    fake_labelling.fail("LabelFeatures", grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(UnavailableError):
        list(client.labelling.label_features(SAE, "arxiv"))
    assert len(fake_labelling.requests["LabelFeatures"]) == 1


def test_label_features_refuses_a_bare_feature_id_before_calling(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    with pytest.raises(TypeError, match="wrap a single id in a list"):
        list(client.labelling.label_features(SAE, "arxiv", features=3))
    with pytest.raises(ValueError, match=r"features\[1\] is -2"):
        list(client.labelling.label_features(SAE, "arxiv", features=[1, -2]))
    assert "LabelFeatures" not in fake_labelling.requests


# -- reading labels --------------------------------------------------------------------------------


def test_get_label_converts_every_field(client: FeaturelensClient) -> None:
    label = client.labelling.get_label(SAE, 3)

    assert label == FeatureLabel(
        sae_id=SAE,
        feature=3,
        label="dark matter halos; subhalo",
        pearson_r=pytest.approx(0.83),
        f1=0.75,
        interpreter_model="gpt-4o-mini",
        predictor_model="gpt-4o-mini",
        density=pytest.approx(0.012),
        created_unix=1_750_000_000,
        auroc=pytest.approx(0.91),
        auroc_hard=pytest.approx(0.8),
        balanced_accuracy=pytest.approx(0.82),
        embedding_auroc=pytest.approx(0.88),
        embedding_auroc_hard=pytest.approx(0.7),
        prompt_version="interp-v1",
        cost_usd=0.0021,
        tokens=1234,
        parse_failures=2,
        scored_documents=40,
        example_ids=("doc-3-0", "doc-3-1", "doc-3-2"),
        score_note="",
    )


def test_an_undefined_pearson_r_is_none_and_the_note_says_why(client: FeaturelensClient) -> None:
    label = client.labelling.get_label(SAE, 20)

    assert label.pearson_r is None
    assert label.score_note == "predictions constant: pearson_r undefined"


def test_a_feature_without_a_label_is_a_not_found_error(client: FeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="feature 9 of sae-32-k2 has no label yet"):
        client.labelling.get_label(SAE, 9)


def test_get_labels_keeps_the_order_asked_and_leaves_out_unlabelled_features(
    client: FeaturelensClient,
) -> None:
    labels = client.labelling.get_labels(SAE, [25, 9, 3, 7])

    assert [label.feature for label in labels] == [25, 3, 7]
    assert labels[0].pearson_r == pytest.approx(-0.05)


def test_get_labels_is_a_read_and_is_retried_when_the_server_is_unavailable(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    fake_labelling.fail("GetLabels", grpc.StatusCode.UNAVAILABLE, times=2)

    labels = client.labelling.get_labels(SAE, [3])

    assert [label.feature for label in labels] == [3]
    assert len(fake_labelling.requests["GetLabels"]) == 3


def test_more_than_a_thousand_features_are_refused_by_the_server(client: FeaturelensClient) -> None:
    with pytest.raises(InvalidArgumentError, match="at most 1,000"):
        client.labelling.get_labels(SAE, range(1001))


# -- list_labels ------------------------------------------------------------------------------------


def test_iterating_the_first_page_of_list_labels_yields_every_label_page_after_page(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    page = client.labelling.list_labels(SAE, page_size=2)

    assert isinstance(page, SyncPage)
    assert [label.feature for label in page.items] == [3, 12]
    assert len(fake_labelling.requests["ListLabels"]) == 1
    assert [label.feature for label in page] == [3, 12, 7, 25, 20]
    assert [sent.page_token for sent in fake_labelling.requests["ListLabels"]] == ["", "p2", "p4"]
    assert {sent.page_size for sent in fake_labelling.requests["ListLabels"]} == {2}


def test_pages_can_be_walked_one_at_a_time(client: FeaturelensClient) -> None:
    first = client.labelling.list_labels(SAE, page_size=2)
    second = first.get_next_page()
    pages = list(first.iter_pages())

    assert first.has_next_page()
    assert first.next_page_token == "p2"
    assert [label.feature for label in second.items] == [7, 25]
    assert [len(page.items) for page in pages] == [2, 2, 1]
    assert not pages[-1].has_next_page()
    with pytest.raises(RuntimeError, match="last page"):
        pages[-1].get_next_page()


def test_a_page_token_is_passed_through_and_a_garbage_one_is_refused_by_the_server(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    resumed = client.labelling.list_labels(SAE, page_size=2, page_token="p4")
    assert [label.feature for label in resumed.items] == [20]

    with pytest.raises(InvalidArgumentError, match="'not-a-token' is not one this server issued"):
        client.labelling.list_labels(SAE, page_token="not-a-token")
    assert fake_labelling.requests["ListLabels"][-1].page_token == "not-a-token"


def test_min_pearson_r_is_sent_and_none_sends_no_filter(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    strong = list(client.labelling.list_labels(SAE, min_pearson_r=0.7))
    everything = list(client.labelling.list_labels(SAE))

    assert [label.feature for label in strong] == [3, 12]
    assert len(everything) == 5
    sent = fake_labelling.requests["ListLabels"]
    assert sent[0].min_pearson_r == pytest.approx(0.7)
    assert sent[1].min_pearson_r == 0.0
    assert sent[1].page_size == 100


def test_a_page_size_below_one_is_refused_before_calling(client: FeaturelensClient) -> None:
    with pytest.raises(ValueError, match="page_size must be a whole number of 1 or more"):
        client.labelling.list_labels(SAE, page_size=0)


# -- search_features and score_label ---------------------------------------------------------------


def test_search_features_returns_typed_matches_best_first(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    matches = client.labelling.search_features(SAE, "dark matter halos", top_k=3)

    assert all(isinstance(match, FeatureMatch) for match in matches)
    assert [(m.label.feature, m.label.label) for m in matches] == [(3, "dark matter halos; subhalo")]
    assert matches[0].score == pytest.approx(0.75)
    assert matches[0].substring_match is False
    sent = fake_labelling.requests["SearchFeatures"][0]
    assert (sent.sae_id, sent.query, sent.top_k, sent.substring) == (SAE, "dark matter halos", 3, False)


def test_search_features_with_substring_puts_labels_containing_the_text_first(
    client: FeaturelensClient,
) -> None:
    matches = client.labelling.search_features(SAE, "WAVES", substring=True)

    assert [(m.label.feature, m.substring_match, m.score) for m in matches] == [(20, True, 1.0)]


def test_an_empty_query_is_an_invalid_argument_error(client: FeaturelensClient) -> None:
    with pytest.raises(InvalidArgumentError, match="query is empty"):
        client.labelling.search_features(SAE, "  ")


def test_score_label_sends_the_label_and_returns_its_scores(
    client: FeaturelensClient, fake_labelling: Any
) -> None:
    scored = client.labelling.score_label(
        SAE,
        "arxiv",
        3,
        "dark matter",
        predictor_model="llama-3-8b",
        scoring_documents=40,
        seed=2,
        domain="astro",
        llm_base_url=ENDPOINT,
    )

    sent = fake_labelling.requests["ScoreLabel"][0]
    assert (sent.corpus, sent.sae_id, sent.feature, sent.label) == ("arxiv", SAE, 3, "dark matter")
    assert (sent.predictor_model, sent.scoring_documents, sent.seed) == ("llama-3-8b", 40, 2)
    assert (sent.domain, sent.llm_base_url) == ("astro", ENDPOINT)
    assert (scored.feature, scored.label, scored.predictor_model) == (3, "dark matter", "llama-3-8b")
    assert scored.pearson_r == pytest.approx(0.5)


# -- one error class per status, for every labelling call ------------------------------------------


CALLS: dict[str, Callable[[FeaturelensClient], object]] = {
    "LabelFeatures": lambda c: list(c.labelling.label_features(SAE, "arxiv")),
    "GetLabel": lambda c: c.labelling.get_label(SAE, 3),
    "GetLabels": lambda c: c.labelling.get_labels(SAE, [3]),
    "ListLabels": lambda c: list(c.labelling.list_labels(SAE)),
    "SearchFeatures": lambda c: c.labelling.search_features(SAE, "halos"),
    "ScoreLabel": lambda c: c.labelling.score_label(SAE, "arxiv", 3, "halos"),
}
STATUSES: dict[grpc.StatusCode, type[APIStatusError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.INTERNAL: InternalServerError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}


@pytest.mark.parametrize("code", list(STATUSES), ids=[code.name for code in STATUSES])
@pytest.mark.parametrize("rpc", list(CALLS))
def test_each_labelling_call_raises_the_error_class_of_the_status(
    services_address: str, fake_labelling: Any, rpc: str, code: grpc.StatusCode
) -> None:
    # Retries off: an UNAVAILABLE read would otherwise be tried again and succeed.
    fake_labelling.fail(rpc, code)

    with FeaturelensClient(services_address, max_retries=0) as client:
        with pytest.raises(APIStatusError) as caught:
            CALLS[rpc](client)

    assert type(caught.value) is STATUSES[code]
    assert caught.value.code == code
    assert caught.value.details == f"planned {code.name} of {rpc}"
    assert caught.value.request_id


def test_an_unknown_sae_is_a_not_found_error_for_every_call(client: FeaturelensClient) -> None:
    for call in (
        lambda: list(client.labelling.label_features("nope", "arxiv")),
        lambda: client.labelling.get_label("nope", 3),
        lambda: client.labelling.get_labels("nope", [3]),
        lambda: client.labelling.list_labels("nope"),
        lambda: client.labelling.search_features("nope", "halos"),
        lambda: client.labelling.score_label("nope", "arxiv", 3, "halos"),
    ):
        with pytest.raises(NotFoundError, match="no SAE with id 'nope'"):
            call()


# -- the asyncio client ----------------------------------------------------------------------------


async def test_the_async_labelling_client_answers_as_the_sync_one(
    client: FeaturelensClient, aclient: AsyncFeaturelensClient
) -> None:
    settings: dict[str, Any] = {"interpreter_model": "gpt-4o-mini", "budget_usd": 0.003, "seed": 1}
    sync_events = list(client.labelling.label_features(SAE, "arxiv", **settings))
    async_events = [e async for e in aclient.labelling.label_features(SAE, "arxiv", **settings)]
    assert sync_events == async_events
    assert client.labelling.get_label(SAE, 7) == await aclient.labelling.get_label(SAE, 7)
    assert client.labelling.get_labels(SAE, [7, 3]) == await aclient.labelling.get_labels(SAE, [7, 3])
    assert client.labelling.search_features(SAE, "galaxies", substring=True) == (
        await aclient.labelling.search_features(SAE, "galaxies", substring=True)
    )
    assert client.labelling.score_label(SAE, "arxiv", 7, "galaxies") == (
        await aclient.labelling.score_label(SAE, "arxiv", 7, "galaxies")
    )
    sync_labels = list(client.labelling.list_labels(SAE, page_size=2))
    assert sync_labels == [label async for label in aclient.labelling.list_labels(SAE, page_size=2)]


async def test_awaiting_async_list_labels_gives_its_first_page_and_the_pages_walk_on(
    aclient: AsyncFeaturelensClient, fake_labelling: Any
) -> None:
    listing = aclient.labelling.list_labels(SAE, page_size=2)
    assert "ListLabels" not in fake_labelling.requests

    first = await listing
    second = await first.get_next_page()
    pages = [page async for page in first.iter_pages()]
    everything = [label.feature async for label in first]

    assert isinstance(first, AsyncPage)
    assert [label.feature for label in first.items] == [3, 12]
    assert [label.feature for label in second.items] == [7, 25]
    assert [len(page.items) for page in pages] == [2, 2, 1]
    assert everything == [3, 12, 7, 25, 20]
    with pytest.raises(RuntimeError, match="last page"):
        await pages[-1].get_next_page()


async def test_the_async_client_raises_the_same_errors(aclient: AsyncFeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="has no label yet"):
        await aclient.labelling.get_label(SAE, 9)
    with pytest.raises(InvalidArgumentError, match="not one this server issued"):
        await aclient.labelling.list_labels(SAE, page_token="garbage")
    with pytest.raises(FailedPreconditionError):
        async for _ in aclient.labelling.label_features(SAE, "arxiv", llm_base_url="http://x.example"):
            pass


def test_the_labelling_service_can_have_an_address_of_its_own(
    closed_address: str, services_address: str
) -> None:
    with FeaturelensClient(closed_address, labelling_address=services_address) as client:
        assert client.labelling.get_label(SAE, 3).feature == 3
