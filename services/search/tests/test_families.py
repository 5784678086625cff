"""Families from the family service: a family intervention steers its members by their share of
one weight (or each by the full weight, per member); explanations name each feature's families;
a family the service does not know, or a family service that is down, fails the search with a
sentence, but costs an explanation only its families.

The family service here is a stand-in on its own loopback server (``serve_families``), answering
from a table, while the real one is written.
"""

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
    FakeFamilies,
    KnownFamily,
    Stack,
    closed_address,
    copy_of,
    failure_of,
    hit_ids,
    serve_families,
    serve_stack,
)

from featurelens.kit.embedded import discover_services, service_settings
from featurelens.services.search.__main__ import build_servicer
from featurelens.services.search.families import FamilyService, NoFamilies
from featurelens.services.search.settings import SearchSettings
from featurelens.v1 import common_pb2, search_pb2

ADDITIVE = common_pb2.STEER_MODE_ADDITIVE
CLAMP = common_pb2.STEER_MODE_CLAMP
STARS = (11, 12, 13)
#: "stars" is nested in "low"; "low" and "high" cover every latent, so every explaining feature
#: has a family; "broken" is a family the service sends with a norm nobody can divide by.
FAMILIES = {
    "stars": KnownFamily(STARS, 2.0),
    "solo": KnownFamily((40,), 1.0),
    "low": KnownFamily(tuple(range(0, 256)), 9.5),
    "high": KnownFamily(tuple(range(256, 512)), 8.25),
    "broken": KnownFamily((5, 6), 0.0),
}


@dataclass
class WithFamilies:
    stack: Stack
    families: FakeFamilies


@pytest.fixture
async def with_families(
    backend: CountingBackend, models_dir: Path, indexed_edge: Path, tmp_path: Path, sae_id: str
) -> AsyncIterator[WithFamilies]:
    """The services, with a family service that knows FAMILIES for the default SAE."""
    async with (
        serve_families({sae_id: FAMILIES}) as (address, families),
        serve_stack(backend, models_dir, copy_of(indexed_edge, tmp_path), family_address=address) as stack,
    ):
        yield WithFamilies(stack, families)


@pytest.fixture
async def without_families(
    backend: CountingBackend, models_dir: Path, indexed_edge: Path, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The services, with the family service's address pointing at a port nothing listens on."""
    edge = copy_of(indexed_edge, tmp_path)
    async with serve_stack(backend, models_dir, edge, family_address=closed_address()) as stack:
        yield stack


def search(*interventions: common_pb2.Intervention, **fields: object) -> search_pb2.SearchRequest:
    values: dict[str, object] = {"corpus": CORPUS, "text": "galaxy clusters", "interventions": interventions}
    return search_pb2.SearchRequest(**(values | fields))  # type: ignore[arg-type]


def family(
    family_id: str, weight: float, mode: int = ADDITIVE, per_member: bool = False
) -> common_pb2.Intervention:
    return common_pb2.Intervention(
        family_id=family_id,
        weight=weight,
        mode=mode,  # type: ignore[arg-type]
        per_member=per_member,
    )


def features(numbers: tuple[int, ...], weight: float, mode: int = ADDITIVE) -> list[common_pb2.Intervention]:
    return [
        common_pb2.Intervention(feature=number, weight=weight, mode=mode)  # type: ignore[arg-type]
        for number in numbers
    ]


def steered_rows(response: search_pb2.SearchResponse) -> list[tuple[int, float, int, int, str]]:
    return [(s.feature, round(s.weight, 6), s.mode, s.intervention, s.family_id) for s in response.steered]


def scores(response: search_pb2.SearchResponse) -> list[float]:
    return [hit.score for hit in response.hits]


async def test_a_family_is_one_direction_each_member_steered_by_the_weight_over_the_direction_norm(
    with_families: WithFamilies, sae_id: str
) -> None:
    stub = with_families.stack.stub

    by_family = await stub.Search(search(family("stars", 0.6), with_rank_changes=True))
    by_features = await stub.Search(search(*features(STARS, 0.3), with_rank_changes=True))

    # Norm 2: each member moves by 0.3, exactly as if the user had named them with that weight.
    assert hit_ids(by_family) == hit_ids(by_features)
    assert scores(by_family) == scores(by_features)
    assert [h.rank_before for h in by_family.hits] == [h.rank_before for h in by_features.hits]
    assert by_family.steer_cosine == by_features.steer_cosine < 1
    assert steered_rows(by_family) == [(feature, 0.3, ADDITIVE, 0, "stars") for feature in STARS]
    [asked] = with_families.families.get_requests
    assert (asked.family_id, asked.sae_id) == ("stars", sae_id)


async def test_per_member_steers_every_member_by_the_full_weight(with_families: WithFamilies) -> None:
    stub = with_families.stack.stub

    by_family = await stub.Search(search(family("stars", 0.3, per_member=True)))
    by_features = await stub.Search(search(*features(STARS, 0.3)))

    assert hit_ids(by_family) == hit_ids(by_features)
    assert scores(by_family) == scores(by_features)
    assert steered_rows(by_family) == [(feature, 0.3, ADDITIVE, 0, "stars") for feature in STARS]


async def test_a_clamped_family_sets_every_member_to_the_weight_whatever_its_norm(
    with_families: WithFamilies,
) -> None:
    response = await with_families.stack.stub.Search(search(family("stars", 0.5, CLAMP)))

    assert steered_rows(response) == [(feature, 0.5, CLAMP, 0, "stars") for feature in STARS]


@pytest.mark.parametrize("per_member", [False, True])
async def test_a_family_weight_of_zero_is_an_exact_no_op(
    with_families: WithFamilies, per_member: bool
) -> None:
    stub = with_families.stack.stub
    fields = {"mode": search_pb2.SEARCH_MODE_HYBRID, "explain": True, "with_rank_changes": True}

    unsteered = await stub.Search(search(**fields))
    zero = await stub.Search(search(family("stars", 0.0, per_member=per_member), **fields))

    assert hit_ids(zero) == hit_ids(unsteered)
    assert scores(zero) == scores(unsteered)
    assert [h.rank_before for h in zero.hits] == [h.rank for h in zero.hits]
    assert zero.steer_cosine == 1.0
    assert steered_rows(zero) == [(feature, 0.0, ADDITIVE, 0, "stars") for feature in STARS]


async def test_a_family_the_family_service_does_not_know_is_not_found_naming_it(
    with_families: WithFamilies, sae_id: str
) -> None:
    error = await failure_of(
        with_families.stack.stub.Search(search(family("solo", 0.2), family("nope", 0.2)))
    )

    assert error.code() == StatusCode.NOT_FOUND
    assert error.details() == (
        "cannot expand family 'nope': the family service refused the call: family 'nope' does not exist "
        f"for SAE {sae_id!r}"
    )


async def test_a_family_the_service_sends_with_a_norm_of_zero_is_unavailable_not_a_crash(
    with_families: WithFamilies,
) -> None:
    error = await failure_of(with_families.stack.stub.Search(search(family("broken", 0.2))))

    assert error.code() == StatusCode.UNAVAILABLE
    assert (error.details() or "").startswith(
        "cannot expand family 'broken': the family service at 127.0.0.1:"
    )
    assert "direction norm must be a finite number above 0, not 0" in (error.details() or "")


async def test_a_family_with_the_family_service_down_is_unavailable_naming_it(
    without_families: Stack,
) -> None:
    error = await failure_of(without_families.stub.Search(search(family("stars", 0.2))))

    assert error.code() == StatusCode.UNAVAILABLE
    address = without_families.search.dependencies.family.address
    assert (error.details() or "").startswith(
        f"cannot expand family 'stars': the family service at {address} is unavailable"
    )


async def test_explanations_name_each_features_families_most_specific_first_asking_once(
    with_families: WithFamilies, sae_id: str
) -> None:
    response = await with_families.stack.stub.Search(
        search(mode=search_pb2.SEARCH_MODE_SPARSE, explain=True, top_k=20)
    )

    explaining = {c.feature for hit in response.hits for c in hit.explanation}
    assert explaining
    fake = with_families.families
    for hit in response.hits:
        for contribution in hit.explanation:
            expected = fake.families_of(sae_id, contribution.feature)
            assert list(contribution.family_ids) == expected
            assert expected  # "low" or "high" holds every latent
    [asked] = fake.feature_requests
    assert (asked.sae_id, sorted(asked.features)) == (sae_id, sorted(explaining))


async def test_a_search_without_explanations_does_not_ask_for_families(with_families: WithFamilies) -> None:
    response = await with_families.stack.stub.Search(search(family("stars", 0.2)))

    assert len(response.hits) == 10
    assert with_families.families.feature_requests == []


async def test_with_the_family_service_down_explanations_go_without_families_and_it_warns_once(
    without_families: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    request = search(mode=search_pb2.SEARCH_MODE_SPARSE, explain=True)
    with caplog.at_level(logging.WARNING, logger="featurelens.services.search.families"):
        first = await without_families.stub.Search(request)
        second = await without_families.stub.Search(request)

    for response in (first, second):
        assert any(hit.explanation for hit in response.hits)
        assert all(not c.family_ids for hit in response.hits for c in hit.explanation)
    warnings = [r.getMessage() for r in caplog.records if r.name == "featurelens.services.search.families"]
    address = without_families.search.dependencies.family.address
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"feature families left out: the family service at {address} answered UNAVAILABLE"
    )


def test_the_family_service_is_asked_unless_its_address_is_empty(tmp_path: Path) -> None:
    configured = build_servicer(SearchSettings(storage="edge", edge_path=tmp_path / "a"))
    none = build_servicer(SearchSettings(storage="edge", edge_path=tmp_path / "b", family_address=""))

    assert isinstance(configured.families, FamilyService)
    assert configured.dependencies.family.address == "127.0.0.1:50055"
    assert isinstance(none.families, NoFamilies)


def test_the_embedded_host_points_search_at_its_own_family_service(tmp_path: Path) -> None:
    [factory] = discover_services(["search"])

    hosted = service_settings(factory, host="127.0.0.1", port=50070, data_dir=tmp_path, hosted=["family"])
    alone = service_settings(factory, host="127.0.0.1", port=50070, data_dir=tmp_path, hosted=[])

    assert hosted.family_address == "127.0.0.1:50070"  # type: ignore[attr-defined]
    assert alone.family_address == "127.0.0.1:50055"  # type: ignore[attr-defined]
