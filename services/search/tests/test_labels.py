"""Labels from the labelling service: explanations and steered features name them; a phrase steers
the feature whose label it matches; a labelling service that is down costs the labels, not the search."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc import StatusCode
from search_testing import (
    CORPUS,
    CountingBackend,
    FakeLabelling,
    Stack,
    TableFamilies,
    closed_address,
    copy_of,
    failure_of,
    hit_ids,
    serve_labelling,
    serve_stack,
)

from featurelens.kit import Peer
from featurelens.kit.embedded import discover_services, service_settings
from featurelens.services.search.labelling import LabellingLabels
from featurelens.services.search.throttled import WARNING_INTERVAL_S
from featurelens.v1 import common_pb2, search_pb2

CLAMP = common_pb2.STEER_MODE_CLAMP
ADDITIVE = common_pb2.STEER_MODE_ADDITIVE
HALOS = 42
#: Even features are labelled "concept <n>", feature 42 "dark matter halos"; odd ones have no label.
LABELS = {feature: f"concept {feature}" for feature in range(0, 512, 2)} | {HALOS: "dark matter halos"}


@dataclass
class Labelled:
    stack: Stack
    labelling: FakeLabelling


@pytest.fixture
async def labelled(
    backend: CountingBackend, models_dir: Path, indexed_edge: Path, tmp_path: Path, sae_id: str
) -> AsyncIterator[Labelled]:
    """The services, with a labelling service that knows LABELS for the default SAE."""
    async with (
        serve_labelling({sae_id: LABELS}) as (address, labelling),
        serve_stack(backend, models_dir, copy_of(indexed_edge, tmp_path), labelling_address=address) as stack,
    ):
        yield Labelled(stack, labelling)


@pytest.fixture
async def unlabelled(
    backend: CountingBackend, models_dir: Path, indexed_edge: Path, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The services, with the labelling service's address pointing at a port nothing listens on."""
    edge = copy_of(indexed_edge, tmp_path)
    async with serve_stack(backend, models_dir, edge, labelling_address=closed_address()) as stack:
        yield stack


def search(*interventions: common_pb2.Intervention, **fields: object) -> search_pb2.SearchRequest:
    values: dict[str, object] = {"corpus": CORPUS, "text": "galaxy clusters", "interventions": interventions}
    return search_pb2.SearchRequest(**(values | fields))  # type: ignore[arg-type]


def feature(number: int, weight: float = 0.3, mode: int = ADDITIVE) -> common_pb2.Intervention:
    return common_pb2.Intervention(feature=number, weight=weight, mode=mode)  # type: ignore[arg-type]


def phrase(text: str, weight: float = 0.3) -> common_pb2.Intervention:
    return common_pb2.Intervention(phrase=text, weight=weight)


async def test_explanations_name_each_shared_feature_by_its_label_asking_the_labelling_service_once(
    labelled: Labelled, sae_id: str
) -> None:
    response = await labelled.stack.stub.Search(search(explain=True, top_k=20))

    contributions = [c for hit in response.hits for c in hit.explanation]
    assert {c.feature % 2 for c in contributions} == {0, 1}  # labelled and unlabelled features both explain
    assert all(c.label == LABELS.get(c.feature, "") for c in contributions)
    [asked] = labelled.labelling.get_labels_requests
    assert asked.sae_id == sae_id
    assert sorted(asked.features) == sorted({c.feature for c in contributions})


async def test_a_search_without_explanations_or_steering_asks_for_no_labels(labelled: Labelled) -> None:
    response = await labelled.stack.stub.Search(search(mode=search_pb2.SEARCH_MODE_HYBRID))

    assert len(response.hits) == 10
    assert labelled.labelling.get_labels_requests == []


async def test_the_response_lists_each_steered_feature_with_its_label_and_where_it_came_from(
    labelled: Labelled,
) -> None:
    labelled.stack.search.families = TableFamilies({"f3": [20, 21]})
    interventions = [
        feature(10),
        common_pb2.Intervention(family_id="f3", weight=0.5, mode=CLAMP),
        phrase("halos of dark matter", -0.2),
    ]

    response = await labelled.stack.stub.Search(search(*interventions, explain=True))

    steered = [
        (s.feature, s.label, round(s.weight, 6), s.mode, s.intervention, s.family_id, s.phrase)
        for s in response.steered
    ]
    assert steered == [
        (10, "concept 10", 0.3, ADDITIVE, 0, "", ""),
        (20, "concept 20", 0.5, CLAMP, 1, "f3", ""),
        (21, "", 0.5, CLAMP, 1, "f3", ""),
        (HALOS, "dark matter halos", -0.2, ADDITIVE, 2, "", "halos of dark matter"),
    ]
    # The phrase shares 3 of its 4 words with the 3-word label: 3 / sqrt(4 × 3).
    assert [s.match_score for s in response.steered] == pytest.approx([0, 0, 0, 0.8660254])
    assert len(labelled.labelling.get_labels_requests) == 1  # steered and explaining features at once
    [resolved] = labelled.labelling.search_requests
    assert (resolved.query, resolved.top_k) == ("halos of dark matter", 1)


async def test_a_phrase_steers_exactly_as_the_id_of_the_feature_it_names(labelled: Labelled) -> None:
    by_phrase = await labelled.stack.stub.Search(
        search(phrase("dark matter halos", 0.5), with_rank_changes=True)
    )
    by_id = await labelled.stack.stub.Search(search(feature(HALOS, 0.5), with_rank_changes=True))

    assert hit_ids(by_phrase) == hit_ids(by_id)
    assert [h.score for h in by_phrase.hits] == [h.score for h in by_id.hits]
    assert [h.rank_before for h in by_phrase.hits] == [h.rank_before for h in by_id.hits]
    assert by_phrase.steer_cosine == by_id.steer_cosine < 1
    assert by_phrase.steered[0].match_score == pytest.approx(1.0)
    assert (by_id.steered[0].phrase, by_id.steered[0].label) == ("", "dark matter halos")


async def test_a_phrase_and_the_feature_it_names_cannot_both_be_steered(labelled: Labelled) -> None:
    error = await failure_of(labelled.stack.stub.Search(search(feature(HALOS), phrase("dark matter halos"))))

    assert error.code() == StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        f"feature {HALOS} is steered twice: by interventions[0] and as the match of phrase "
        "'dark matter halos' (interventions[1]); steer it once"
    )


async def test_a_phrase_matched_to_a_feature_the_sae_lacks_is_refused_naming_the_phrase(
    backend: CountingBackend, models_dir: Path, indexed_edge: Path, tmp_path: Path, sae_id: str
) -> None:
    # Labels left from another SAE of the same id would name latents this SAE does not have.
    async with (
        serve_labelling({sae_id: {900: "stale label"}}) as (address, _),
        serve_stack(backend, models_dir, copy_of(indexed_edge, tmp_path), labelling_address=address) as stack,
    ):
        error = await failure_of(stack.stub.Search(search(phrase("stale label"))))

    assert error.code() == StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(
        "interventions[0]: feature 900 (the match of phrase 'stale label') does not exist"
    )


@pytest.mark.parametrize(
    "known",
    [
        pytest.param({}, id="SAE unknown to the labelling service"),
        pytest.param(None, id="SAE without labels"),
    ],
)
async def test_a_phrase_for_an_sae_without_labels_is_a_failed_precondition(
    backend: CountingBackend,
    models_dir: Path,
    indexed_edge: Path,
    tmp_path: Path,
    sae_id: str,
    known: dict[str, dict[int, str]] | None,
) -> None:
    labels = known if known is not None else {sae_id: {}}
    async with (
        serve_labelling(labels) as (address, _),
        serve_stack(backend, models_dir, copy_of(indexed_edge, tmp_path), labelling_address=address) as stack,
    ):
        error = await failure_of(stack.stub.Search(search(phrase("dark matter halos"))))

    assert error.code() == StatusCode.FAILED_PRECONDITION
    assert error.details() == (
        f"cannot resolve phrase 'dark matter halos': SAE {sae_id} has no labelled features; "
        "run `featurelens label` first"
    )


async def test_with_the_labelling_service_down_a_search_answers_without_labels_and_warns_once(
    unlabelled: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="featurelens.services.search.labelling"):
        explained = await unlabelled.stub.Search(search(explain=True))
        steered = await unlabelled.stub.Search(search(feature(10), explain=True))

    assert len(explained.hits) == len(steered.hits) == 10
    assert all(hit.explanation for hit in explained.hits)
    assert all(c.label == "" for hit in [*explained.hits, *steered.hits] for c in hit.explanation)
    assert [(s.feature, s.label) for s in steered.steered] == [(10, "")]
    warnings = [r.getMessage() for r in caplog.records if r.name == "featurelens.services.search.labelling"]
    assert len(warnings) == 1
    address = unlabelled.search.dependencies.labelling.address
    assert f"feature labels left out: the labelling service at {address} answered UNAVAILABLE" in warnings[0]


async def test_a_phrase_with_the_labelling_service_down_is_unavailable_naming_it(unlabelled: Stack) -> None:
    error = await failure_of(unlabelled.stub.Search(search(phrase("dark matter halos"))))

    address = unlabelled.search.dependencies.labelling.address
    assert error.code() == StatusCode.UNAVAILABLE
    assert (error.details() or "").startswith(
        f"cannot resolve phrase 'dark matter halos': the labelling service at {address} is unavailable"
    )


async def test_missing_labels_are_warned_about_again_after_a_minute_per_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    lookup = LabellingLabels(Peer("labelling", closed_address(), 5.0), clock=lambda: now[0])
    try:
        with caplog.at_level(logging.WARNING, logger="featurelens.services.search.labelling"):
            for at in (0.0, WARNING_INTERVAL_S / 2, WARNING_INTERVAL_S + 1):
                now[0] = at
                assert await lookup.labels("sae", [1, 2]) == {}
    finally:
        await lookup.peer.close()

    assert len(caplog.records) == 2


def test_the_embedded_host_points_search_at_its_own_labelling_service(tmp_path: Path) -> None:
    [factory] = discover_services(["search"])

    hosted = service_settings(factory, host="127.0.0.1", port=50070, data_dir=tmp_path, hosted=["labelling"])
    alone = service_settings(factory, host="127.0.0.1", port=50070, data_dir=tmp_path, hosted=[])

    assert hosted.labelling_address == "127.0.0.1:50070"  # type: ignore[attr-defined]
    assert alone.labelling_address == "127.0.0.1:50054"  # type: ignore[attr-defined]
