"""Reading families back: listed in pages, one with its tree, the families of features, feature
neighbours by co-occurrence and by decoder, and matches across SAEs."""

from __future__ import annotations

import shutil

import grpc
import pytest
from family_testing import FamilyStack
from search_testing import failure_of

from featurelens.kit.embedded import free_port
from featurelens.v1 import family_pb2

COOCCURRENCE = family_pb2.NEIGHBOUR_KIND_COOCCURRENCE
DECODER = family_pb2.NEIGHBOUR_KIND_DECODER


@pytest.fixture
async def built(stack: FamilyStack, sae_id: str) -> list[family_pb2.Family]:
    """The families of the test SAE over the astro corpus, largest first."""
    await stack.build(sae_id=sae_id)
    return await stack.families(sae_id)


# -- ListFamilies ---------------------------------------------------------------------------------


async def test_list_families_pages_largest_first(
    stack: FamilyStack, sae_id: str, built: list[family_pb2.Family]
) -> None:
    first = await stack.stub.ListFamilies(family_pb2.ListFamiliesRequest(sae_id=sae_id, page_size=3))
    whole = await stack.stub.ListFamilies(family_pb2.ListFamiliesRequest(sae_id=sae_id, page_size=1000))

    assert [f.family_id for f in first.families] == [f.family_id for f in built[:3]]
    assert first.next_page_token
    assert not whole.next_page_token
    assert list(whole.families) == built
    sizes = [len(f.features) for f in built]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("token", ["garbage", "e30", "x" * 10_000])
async def test_a_page_token_this_listing_did_not_issue_is_refused(
    stack: FamilyStack, sae_id: str, built: list[family_pb2.Family], token: str
) -> None:
    error = await failure_of(
        stack.stub.ListFamilies(family_pb2.ListFamiliesRequest(sae_id=sae_id, page_token=token))
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (error.details() or "")


async def test_an_sae_whose_families_were_never_built_is_not_found(stack: FamilyStack, sae_id: str) -> None:
    error = await failure_of(stack.stub.ListFamilies(family_pb2.ListFamiliesRequest(sae_id=sae_id)))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "has no families; build them first" in (error.details() or "")


# -- GetFamily ------------------------------------------------------------------------------------


async def test_get_family_lists_the_members_parent_first_in_tree_order(
    stack: FamilyStack, sae_id: str, built: list[family_pb2.Family]
) -> None:
    nested = [f for f in built if any(p != f.parent_feature for p in f.edge_parents)]
    family = (nested or built)[0]

    got = await stack.stub.GetFamily(family_pb2.GetFamilyRequest(sae_id=sae_id, family_id=family.family_id))

    assert got.family == family
    members = list(got.members)
    assert members[0].feature == family.parent_feature
    assert not members[0].HasField("parent")
    assert sorted(m.feature for m in members) == sorted(family.features)
    edges = set(zip(family.edge_parents, family.edge_children, strict=True))
    assert {(m.parent, m.feature) for m in members[1:]} == edges
    seen: set[int] = set()
    for member in members:  # depth first: a parent comes before its children
        assert member.feature == family.parent_feature or member.parent in seen
        seen.add(member.feature)
    assert members[0].density == pytest.approx(family.root_density)
    assert all(0 < m.density <= 1 for m in members)


async def test_an_unknown_family_or_an_empty_id_is_refused(
    stack: FamilyStack, sae_id: str, built: list[family_pb2.Family]
) -> None:
    unknown = await failure_of(
        stack.stub.GetFamily(family_pb2.GetFamilyRequest(sae_id=sae_id, family_id="f9-p9"))
    )
    empty = await failure_of(stack.stub.GetFamily(family_pb2.GetFamilyRequest(sae_id=sae_id)))
    other_sae = await failure_of(
        stack.stub.GetFamily(family_pb2.GetFamilyRequest(sae_id="other", family_id=built[0].family_id))
    )

    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    assert "has no family 'f9-p9'" in (unknown.details() or "")
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert other_sae.code() == grpc.StatusCode.NOT_FOUND


async def test_a_family_is_read_without_labels_while_labelling_is_down(
    stack: FamilyStack, sae_id: str, built: list[family_pb2.Family]
) -> None:
    labelling = stack.family.peers.labelling
    await labelling.close()
    labelling.address = f"127.0.0.1:{free_port('127.0.0.1')}"

    got = await stack.stub.GetFamily(family_pb2.GetFamilyRequest(family_id=built[0].family_id))

    assert got.family == built[0]
    assert all(m.label == "" and m.label_score == 0 for m in got.members)


# -- FeatureFamilies ------------------------------------------------------------------------------


async def test_feature_families_names_every_family_of_each_feature_most_specific_first(
    stack: FamilyStack, sae_id: str, built: list[family_pb2.Family]
) -> None:
    member_of: dict[int, list[family_pb2.Family]] = {}
    for family in built:
        for feature in family.features:
            member_of.setdefault(feature, []).append(family)
    busiest = max(member_of, key=lambda f: len(member_of[f]))
    lonely = next(f for f in range(256) if f not in member_of)

    got = await stack.stub.FeatureFamilies(
        family_pb2.FeatureFamiliesRequest(sae_id=sae_id, features=[busiest, lonely])
    )

    assert [entry.feature for entry in got.features] == [busiest, lonely]
    sizes = {f.family_id: len(f.features) for f in built}
    ids = list(got.features[0].family_ids)
    assert sorted(ids) == sorted(f.family_id for f in member_of[busiest])
    assert [sizes[i] for i in ids] == sorted(sizes[i] for i in ids)
    assert len(got.features[0].family_labels) == len(ids)
    assert list(got.features[1].family_ids) == []


async def test_feature_families_of_an_sae_without_families_are_empty(stack: FamilyStack, sae_id: str) -> None:
    got = await stack.stub.FeatureFamilies(family_pb2.FeatureFamiliesRequest(sae_id=sae_id, features=[1, 2]))

    assert [list(entry.family_ids) for entry in got.features] == [[], []]


@pytest.mark.parametrize(
    ("features", "says"),
    [(list(range(1001)), "the limit is 1,000"), ([3, 3], "latent 3 twice"), ([256], "out of range")],
)
async def test_feature_families_refuses_bad_feature_lists(
    stack: FamilyStack, sae_id: str, features: list[int], says: str
) -> None:
    error = await failure_of(
        stack.stub.FeatureFamilies(family_pb2.FeatureFamiliesRequest(sae_id=sae_id, features=features))
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert says in (error.details() or "")


# -- FeatureNeighbours ----------------------------------------------------------------------------


async def test_a_family_root_co_occurs_with_its_children(
    stack: FamilyStack, sae_id: str, built: list[family_pb2.Family]
) -> None:
    family = built[0]
    p0 = family.parent_feature
    direct = [c for p, c in zip(family.edge_parents, family.edge_children, strict=True) if p == p0]

    top = await stack.stub.FeatureNeighbours(
        family_pb2.FeatureNeighboursRequest(sae_id=sae_id, feature=p0, kind=COOCCURRENCE, top_k=5)
    )
    every = await stack.stub.FeatureNeighbours(
        family_pb2.FeatureNeighboursRequest(sae_id=sae_id, feature=p0, kind=COOCCURRENCE, top_k=1000)
    )

    scores = [n.score for n in every.neighbours]
    assert list(top.neighbours) == list(every.neighbours[:5])
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s <= 1 for s in scores)
    assert p0 not in {n.feature for n in every.neighbours}
    # Each tree edge is a co-occurrence of at least the build's threshold (0.1).
    score_of = {n.feature: n.score for n in every.neighbours}
    assert all(score_of.get(child, 0.0) >= 0.1 for child in direct)


async def test_co_occurrence_neighbours_survive_losing_the_activations_file(
    stack: FamilyStack, sae_id: str, built: list[family_pb2.Family]
) -> None:
    request = family_pb2.FeatureNeighboursRequest(
        sae_id=sae_id, feature=built[0].parent_feature, kind=COOCCURRENCE
    )
    before = await stack.stub.FeatureNeighbours(request)
    files = stack.family.files
    shutil.rmtree(files.folder)
    files._kept.clear()

    after = await stack.stub.FeatureNeighbours(request)

    assert after == before
    assert files.path(sae_id).is_dir()


async def test_decoder_neighbours_are_the_most_similar_directions_best_first(
    stack: FamilyStack, sae_id: str
) -> None:
    got = await stack.stub.FeatureNeighbours(
        family_pb2.FeatureNeighboursRequest(sae_id=sae_id, feature=7, kind=DECODER, top_k=5)
    )

    scores = [n.score for n in got.neighbours]
    assert len(scores) == 5
    assert scores == sorted(scores, reverse=True)
    assert all(-1 <= s < 1 for s in scores)
    assert 7 not in {n.feature for n in got.neighbours}


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"feature": 1}, grpc.StatusCode.INVALID_ARGUMENT, "NEIGHBOUR_KIND_UNSPECIFIED"),
        ({"feature": 1, "kind": 9}, grpc.StatusCode.INVALID_ARGUMENT, "no such kind"),
        ({"feature": 256, "kind": DECODER}, grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        ({"feature": 1, "kind": DECODER, "top_k": 1001}, grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
        ({"feature": 1, "kind": COOCCURRENCE}, grpc.StatusCode.NOT_FOUND, "has no families"),
        ({"feature": 1, "kind": DECODER, "sae_id": "other"}, grpc.StatusCode.NOT_FOUND, "other"),
    ],
)
async def test_neighbours_with_bad_input_are_refused(
    stack: FamilyStack, sae_id: str, fields: dict[str, object], code: grpc.StatusCode, says: str
) -> None:
    request = family_pb2.FeatureNeighboursRequest(**({"sae_id": sae_id} | fields))

    error = await failure_of(stack.stub.FeatureNeighbours(request))

    assert error.code() == code
    assert says in (error.details() or "")


# -- MatchFeatures --------------------------------------------------------------------------------


async def test_every_feature_of_an_sae_matches_itself_best(stack: FamilyStack, sae_id: str) -> None:
    got = await stack.stub.MatchFeatures(
        family_pb2.MatchFeaturesRequest(source_sae_id=sae_id, target_sae_id=sae_id)
    )

    assert [m.source_feature for m in got.matches] == list(range(256))
    assert all(len(m.targets) == 1 for m in got.matches)
    assert all(m.targets[0].feature == m.source_feature for m in got.matches)
    assert all(m.targets[0].score == pytest.approx(1.0, abs=1e-4) for m in got.matches)


async def test_named_features_get_top_k_matches_best_first(stack: FamilyStack, sae_id: str) -> None:
    got = await stack.stub.MatchFeatures(
        family_pb2.MatchFeaturesRequest(source_sae_id=sae_id, target_sae_id="", features=[5, 9], top_k=4)
    )
    neighbours = await stack.stub.FeatureNeighbours(
        family_pb2.FeatureNeighboursRequest(sae_id=sae_id, feature=5, kind=DECODER, top_k=3)
    )

    assert [m.source_feature for m in got.matches] == [5, 9]
    first = got.matches[0].targets
    assert [t.feature for t in first] == [5, *(n.feature for n in neighbours.neighbours)]
    scores = [t.score for t in first]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"target_sae_id": "sae-000000000000"}, grpc.StatusCode.NOT_FOUND, "sae-000000000000"),
        ({"features": [256]}, grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        ({"features": [1, 1]}, grpc.StatusCode.INVALID_ARGUMENT, "twice"),
        ({"top_k": 101}, grpc.StatusCode.INVALID_ARGUMENT, "top_k"),
    ],
)
async def test_matching_with_bad_input_is_refused(
    stack: FamilyStack, sae_id: str, fields: dict[str, object], code: grpc.StatusCode, says: str
) -> None:
    request = family_pb2.MatchFeaturesRequest(**({"source_sae_id": sae_id, "target_sae_id": sae_id} | fields))

    error = await failure_of(stack.stub.MatchFeatures(request))

    assert error.code() == code
    assert says in (error.details() or "")
