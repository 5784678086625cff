"""The SDK's families sub-client against an in-test family servicer on loopback.

The servicer (``FakeFamilies`` in conftest) has three families of sae-32-k2: f3-p0 'astrophysics'
(3 over 7 and 12; 7 over 20 and 25), f7-p1 'galaxies and waves' (7 over 20 and 25, nested in
f3-p0) and the unlabelled f30-p0 (30 over 1, 2 and 4). Neighbours are closer the nearer their
latent ids; feature f matches features 2f and 2f + 1 of sae-64-k2.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from featurelens.client import (
    AsyncFeaturelensClient,
    AsyncPage,
    Backoff,
    CrossSaeMatch,
    Family,
    FamilyBuildProgress,
    FamilyMember,
    FeatureFamilies,
    FeaturelensClient,
    FeatureNeighbour,
    Intervention,
    InvalidArgumentError,
    NotFoundError,
    SyncPage,
)
from featurelens.v1 import family_pb2

SAE = "sae-32-k2"
OTHER_SAE = "sae-64-k2"
FAST = Backoff(initial_s=0.001, max_s=0.004)


@pytest.fixture
def client(services_address: str) -> Iterator[FeaturelensClient]:
    with FeaturelensClient(services_address, backoff=FAST) as client:
        yield client


@pytest.fixture
async def aclient(services_address: str) -> AsyncIterator[AsyncFeaturelensClient]:
    async with AsyncFeaturelensClient(services_address, backoff=FAST) as client:
        yield client


# -- build_families --------------------------------------------------------------------------------


def test_build_families_sends_every_setting_and_streams_progress_then_the_result(
    client: FeaturelensClient, fake_families: Any
) -> None:
    events = list(
        client.families.build_families(
            "arxiv",
            sae_id=SAE,
            threshold=0.07,
            min_children=3,
            interpreter_model="gpt-4o-mini",
            budget_usd=0.5,
            domain="astro-ph abstracts",
        )
    )

    [sent] = fake_families.requests["BuildFamilies"]
    assert (sent.corpus, sent.sae_id, sent.min_family_size) == ("arxiv", SAE, 3)
    assert sent.threshold == pytest.approx(0.07)
    assert (sent.interpreter_model, sent.budget_usd, sent.domain) == (
        "gpt-4o-mini",
        0.5,
        "astro-ph abstracts",
    )
    assert all(isinstance(event, FamilyBuildProgress) for event in events)
    assert [event.progress.stage for event in events] == ["cooccurrence", "tree", "label", "done"]
    assert [event.result is None for event in events] == [True, True, True, False]
    result = events[-1].result
    assert result is not None
    assert (result.families_built, result.llm_calls) == (3, 3)
    assert result.cost_usd == pytest.approx(0.003)
    stats = result.statistics
    assert (stats.families, stats.features_in_families) == (3, 9)
    assert (stats.mean_children, stats.median_children) == (3.0, 3.0)
    assert (stats.parent_child, stats.child_child) == (pytest.approx(0.42), pytest.approx(0.11))
    assert (stats.block_score, stats.block_control) == (pytest.approx(0.63), pytest.approx(0.08))


def test_build_families_leaves_unset_settings_to_the_server(
    client: FeaturelensClient, fake_families: Any
) -> None:
    events = list(client.families.build_families("arxiv"))

    [sent] = fake_families.requests["BuildFamilies"]
    assert (sent.sae_id, sent.threshold, sent.min_family_size) == ("", 0.0, 0)
    assert (sent.interpreter_model, sent.budget_usd, sent.domain) == ("", 0.0, "")
    result = events[-1].result
    assert result is not None
    assert (result.llm_calls, result.cost_usd) == (0, 0.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"threshold": 0.0}, "threshold is a normalised co-occurrence"),
        ({"threshold": 1.5}, "threshold is a normalised co-occurrence"),
        ({"min_children": 0}, "min_children must be a whole number"),
    ],
)
def test_build_families_refuses_settings_out_of_range_before_calling(
    client: FeaturelensClient, fake_families: Any, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        list(client.families.build_families("arxiv", **settings))

    assert "BuildFamilies" not in fake_families.requests


def test_building_from_an_unknown_corpus_is_a_not_found_error(client: FeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="no corpus named 'nowhere'"):
        list(client.families.build_families("nowhere"))


# -- list_families and get_family ------------------------------------------------------------------


def test_list_families_yields_every_family_largest_first_page_after_page(
    client: FeaturelensClient, fake_families: Any
) -> None:
    page = client.families.list_families(SAE, page_size=2)

    assert isinstance(page, SyncPage)
    assert [family.family_id for family in page.items] == ["f3-p0", "f30-p0"]
    assert [family.family_id for family in page] == ["f3-p0", "f30-p0", "f7-p1"]
    assert [request.page_token for request in fake_families.requests["ListFamilies"]] == ["", "p2"]
    assert all(family.members == () for family in page.items)


def test_a_listed_family_converts_every_field(client: FeaturelensClient) -> None:
    nested = next(f for f in client.families.list_families() if f.family_id == "f7-p1")

    assert nested == Family(
        family_id="f7-p1",
        sae_id=SAE,
        parent_feature=7,
        features=(7, 20, 25),
        edges=((7, 20), (7, 25)),
        label="galaxies and waves",
        depth=1,
        root_density=pytest.approx(0.05),  # type: ignore[arg-type]
        nested_in="f3-p0",
        corpus="arxiv",
        direction_norm=1.5,
    )
    assert nested.children == 2
    top = next(f for f in client.families.list_families() if f.family_id == "f3-p0")
    assert top.nested_in is None


def test_a_garbage_page_token_is_refused_by_the_server(client: FeaturelensClient) -> None:
    with pytest.raises(InvalidArgumentError, match="not one this server issued"):
        client.families.list_families(SAE, page_token="garbage")


def test_a_page_size_below_one_is_refused_before_calling(client: FeaturelensClient) -> None:
    with pytest.raises(ValueError, match="page_size"):
        client.families.list_families(SAE, page_size=0)


def test_get_family_returns_the_members_in_tree_order_with_parents_densities_and_labels(
    client: FeaturelensClient, fake_families: Any
) -> None:
    family = client.families.get_family("f3-p0")

    assert (family.family_id, family.label, family.parent_feature, family.depth) == (
        "f3-p0",
        "astrophysics",
        3,
        2,
    )
    assert [(m.feature, m.parent) for m in family.members] == [
        (3, None),
        (7, 3),
        (20, 7),
        (25, 7),
        (12, 3),
    ]
    halos = family.members[0]
    assert halos == FamilyMember(
        feature=3,
        parent=None,
        density=pytest.approx(0.1),  # type: ignore[arg-type]
        label="dark matter halos; subhalo",
        label_score=pytest.approx(0.88),  # type: ignore[arg-type]
    )
    [sent] = fake_families.requests["GetFamily"]
    assert (sent.family_id, sent.sae_id) == ("f3-p0", "")


def test_an_unlabelled_member_has_an_empty_label_and_a_zero_score(client: FeaturelensClient) -> None:
    family = client.families.get_family("f30-p0", SAE)

    assert family.label == ""
    assert {(m.label, m.label_score) for m in family.members} == {("", 0.0)}


def test_an_unknown_family_is_a_not_found_error(client: FeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="has no family 'f99-p0'"):
        client.families.get_family("f99-p0")


def test_an_empty_family_id_is_refused_before_calling(client: FeaturelensClient, fake_families: Any) -> None:
    with pytest.raises(ValueError, match="family_id is empty"):
        client.families.get_family(" ")

    assert "GetFamily" not in fake_families.requests


# -- feature_neighbours, match_features and feature_families ---------------------------------------


def test_feature_neighbours_by_cooccurrence_are_the_default_and_come_best_first(
    client: FeaturelensClient, fake_families: Any
) -> None:
    neighbours = client.families.feature_neighbours(7, top_k=3)

    [sent] = fake_families.requests["FeatureNeighbours"]
    assert (sent.feature, sent.kind, sent.top_k, sent.sae_id) == (
        7,
        family_pb2.NEIGHBOUR_KIND_COOCCURRENCE,
        3,
        "",
    )
    assert [n.feature for n in neighbours] == [6, 8, 5]
    assert neighbours[0] == FeatureNeighbour(feature=6, score=0.5, label="")
    assert all(isinstance(n, FeatureNeighbour) for n in neighbours)


def test_feature_neighbours_by_decoder_cosine_carry_the_neighbours_labels(
    client: FeaturelensClient, fake_families: Any
) -> None:
    neighbours = client.families.feature_neighbours(12, SAE, kind="decoder", top_k=2)

    assert fake_families.requests["FeatureNeighbours"][0].kind == family_pb2.NEIGHBOUR_KIND_DECODER
    assert [(n.feature, n.score) for n in neighbours] == [
        (11, pytest.approx(1 - 1 / 32)),
        (13, pytest.approx(1 - 1 / 32)),
    ]


def test_an_unknown_neighbour_kind_is_refused_before_calling(client: FeaturelensClient) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        client.families.feature_neighbours(7, kind="semantic")  # type: ignore[arg-type]


def test_a_feature_beyond_the_sae_is_the_servers_invalid_argument_error(client: FeaturelensClient) -> None:
    with pytest.raises(InvalidArgumentError, match="feature 40 is not below the SAE's 32 latents"):
        client.families.feature_neighbours(40)


def test_match_features_returns_each_source_feature_with_its_best_targets(
    client: FeaturelensClient, fake_families: Any
) -> None:
    matches = client.families.match_features(SAE, OTHER_SAE, features=[0, 5], top_k=2)

    [sent] = fake_families.requests["MatchFeatures"]
    assert (sent.source_sae_id, sent.target_sae_id, list(sent.features), sent.top_k) == (
        SAE,
        OTHER_SAE,
        [0, 5],
        2,
    )
    assert all(isinstance(m, CrossSaeMatch) for m in matches)
    assert [(m.source_feature, [t.feature for t in m.targets]) for m in matches] == [
        (0, [0, 1]),
        (5, [10, 11]),
    ]
    assert matches[1].max_cosine == pytest.approx(0.85)


def test_match_features_without_features_matches_every_one_to_its_single_best(
    client: FeaturelensClient, fake_families: Any
) -> None:
    matches = client.families.match_features(SAE, OTHER_SAE)

    assert list(fake_families.requests["MatchFeatures"][0].features) == []
    assert len(matches) == 32
    assert {len(m.targets) for m in matches} == {1}


def test_matching_to_an_unknown_sae_is_a_not_found_error(client: FeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="no SAE with id 'sae-nope'"):
        client.families.match_features(SAE, "sae-nope")


def test_feature_families_answers_in_the_order_asked_most_specific_family_first(
    client: FeaturelensClient,
) -> None:
    answers = client.families.feature_families([20, 12, 9])

    assert answers == [
        FeatureFamilies(
            feature=20, family_ids=("f7-p1", "f3-p0"), family_labels=("galaxies and waves", "astrophysics")
        ),
        FeatureFamilies(feature=12, family_ids=("f3-p0",), family_labels=("astrophysics",)),
        FeatureFamilies(feature=9, family_ids=(), family_labels=()),
    ]


def test_feature_families_refuses_a_bare_feature_id_before_calling(client: FeaturelensClient) -> None:
    with pytest.raises(TypeError, match="wrap a single id in a list"):
        client.families.feature_families(7)  # type: ignore[arg-type]


def test_an_unknown_sae_is_a_not_found_error_for_every_call(client: FeaturelensClient) -> None:
    for call in (
        lambda: list(client.families.build_families("arxiv", sae_id="nope")),
        lambda: client.families.list_families("nope"),
        lambda: client.families.get_family("f3-p0", "nope"),
        lambda: client.families.feature_neighbours(3, "nope"),
        lambda: client.families.match_features("nope", SAE),
        lambda: client.families.feature_families([3], "nope"),
    ):
        with pytest.raises(NotFoundError, match="no SAE with id 'nope'"):
            call()


# -- steering by family and explanations with families ---------------------------------------------


def test_a_per_member_family_intervention_reaches_the_wire(
    client: FeaturelensClient, fake_search: Any
) -> None:
    client.search.search(
        "arxiv",
        "dark matter",
        interventions=[
            Intervention(family_id="f3-p0", weight=3.0, per_member=True),
            Intervention(family_id="f7-p1", weight=-1.0),
        ],
    )

    sent = fake_search.last_search.interventions
    assert [(i.family_id, i.per_member) for i in sent] == [("f3-p0", True), ("f7-p1", False)]


@pytest.mark.parametrize("target", [{"feature": 3}, {"phrase": "dark matter halos"}])
def test_only_a_family_intervention_may_ask_for_per_member_weights(target: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="per_member=True steers each member of a family"):
        Intervention(weight=1.0, per_member=True, **target)


def test_an_explained_hit_names_the_families_of_each_feature(client: FeaturelensClient) -> None:
    result = client.search.search("arxiv", "galaxies", explain=True, top_k=1)

    assert result.hits[0].explanation[0].family_ids == ("f7-p1", "f3-p0")


# -- the asyncio client ----------------------------------------------------------------------------


async def test_the_async_families_client_answers_as_the_sync_one(
    client: FeaturelensClient, aclient: AsyncFeaturelensClient
) -> None:
    settings: dict[str, Any] = {"sae_id": SAE, "interpreter_model": "gpt-4o-mini", "min_children": 2}
    sync_events = list(client.families.build_families("arxiv", **settings))
    async_events = [e async for e in aclient.families.build_families("arxiv", **settings)]
    assert sync_events == async_events
    assert client.families.get_family("f3-p0") == await aclient.families.get_family("f3-p0")
    assert client.families.feature_neighbours(7, kind="decoder") == (
        await aclient.families.feature_neighbours(7, kind="decoder")
    )
    assert client.families.match_features(SAE, OTHER_SAE, top_k=2) == (
        await aclient.families.match_features(SAE, OTHER_SAE, top_k=2)
    )
    assert client.families.feature_families([7, 30]) == await aclient.families.feature_families([7, 30])
    sync_families = list(client.families.list_families(SAE, page_size=1))
    assert sync_families == [f async for f in aclient.families.list_families(SAE, page_size=1)]


async def test_awaiting_async_list_families_gives_its_first_page(
    aclient: AsyncFeaturelensClient, fake_families: Any
) -> None:
    listing = aclient.families.list_families(SAE, page_size=2)
    assert "ListFamilies" not in fake_families.requests

    first = await listing
    second = await first.get_next_page()

    assert isinstance(first, AsyncPage)
    assert [f.family_id for f in first.items] == ["f3-p0", "f30-p0"]
    assert [f.family_id for f in second.items] == ["f7-p1"]
    assert not second.has_next_page()


async def test_the_async_client_raises_the_same_errors(aclient: AsyncFeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="has no family 'f99-p0'"):
        await aclient.families.get_family("f99-p0")
    with pytest.raises(NotFoundError, match="no corpus named 'nowhere'"):
        async for _ in aclient.families.build_families("nowhere"):
            pass
    with pytest.raises(InvalidArgumentError, match="not below the SAE's 32 latents"):
        await aclient.families.match_features(SAE, OTHER_SAE, features=[99])


def test_the_family_service_can_have_an_address_of_its_own(
    closed_address: str, services_address: str
) -> None:
    with FeaturelensClient(closed_address, family_address=services_address) as client:
        assert client.families.get_family("f7-p1").parent_feature == 7
