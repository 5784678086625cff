"""Family interventions are checked after expansion, by search, with sentences about what the user sent."""

from __future__ import annotations

import numpy as np
import pytest
from grpc import StatusCode
from search_testing import CORPUS, Stack, TableFamilies, failure_of

from featurelens.steering import MAX_INTERVENTIONS, MAX_STEERED_FEATURES
from featurelens.v1 import common_pb2, sae_pb2, sae_pb2_grpc, search_pb2
from featurelens.wire.arrays import to_dense_vector


def steered(*interventions: common_pb2.Intervention) -> search_pb2.SearchRequest:
    return search_pb2.SearchRequest(corpus=CORPUS, text="galaxy clusters", interventions=interventions)


def feature(number: int, weight: float = 0.2) -> common_pb2.Intervention:
    return common_pb2.Intervention(feature=number, weight=weight)


def family(family_id: str, weight: float = 0.2) -> common_pb2.Intervention:
    return common_pb2.Intervention(family_id=family_id, weight=weight)


async def test_a_family_that_repeats_a_named_feature_is_refused_naming_the_feature_and_both_origins(
    stack: Stack,
) -> None:
    stack.search.families = TableFamilies({"f3": [11, 12, 13]})

    error = await failure_of(stack.stub.Search(steered(feature(12), feature(40), family("f3"))))

    assert error.code() == StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "feature 12 is steered twice: by interventions[0] and as a member of family 'f3' "
        "(interventions[2]); steer it once"
    )


async def test_a_family_that_makes_a_search_steer_more_than_the_limit_is_refused_by_search(
    stack: Stack,
) -> None:
    stack.search.families = TableFamilies({"big": range(1, MAX_STEERED_FEATURES + 1)})

    error = await failure_of(stack.stub.Search(steered(feature(0), family("big"))))

    assert error.code() == StatusCode.INVALID_ARGUMENT
    # Search's sentence about the request as sent, not sae's about the expanded list.
    assert (error.details() or "").startswith(
        "the interventions steer 16385 features once their families are expanded; the limit is 16384"
    )


async def test_a_family_of_more_features_than_a_request_may_name_is_steered_by_sae(stack: Stack) -> None:
    # Every latent of the test SAE: 512 features, twice the interventions a request may name.
    stack.search.families = TableFamilies({"big": range(1, 512)})
    assert MAX_INTERVENTIONS < 512

    response = await stack.stub.Search(steered(feature(0, 0.01), family("big", 0.01)))

    assert len(response.hits) == 10
    assert 0 < response.steer_cosine < 1


async def test_a_bad_weight_on_a_family_names_the_family_the_user_sent(stack: Stack) -> None:
    stack.search.families = TableFamilies({"f3": [11, 12, 13]})

    error = await failure_of(stack.stub.Search(steered(feature(1), family("f3", weight=12.0))))

    assert error.code() == StatusCode.INVALID_ARGUMENT
    assert error.details() == "interventions[1]: additive weight 12 on family 'f3' is beyond ±10"


async def test_a_family_member_beyond_the_sae_is_refused_naming_the_family(stack: Stack) -> None:
    stack.search.families = TableFamilies({"f3": [11, 900]})

    error = await failure_of(stack.stub.Search(steered(family("f3"))))

    assert error.code() == StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("interventions[0]: feature 900 of family 'f3' does not exist")


CLAMP = common_pb2.STEER_MODE_CLAMP
BAD_INTERVENTIONS = {
    "duplicate": [feature(3), feature(9), feature(3, 0.5)],
    "weight beyond the bound": [feature(3), feature(9, -10.5)],
    "negative clamp": [common_pb2.Intervention(feature=3, weight=-1.0, mode=CLAMP)],
    "clamp beyond the bound": [common_pb2.Intervention(feature=3, weight=11.0, mode=CLAMP)],
    "not finite": [feature(3, float("nan"))],
    "feature beyond the SAE": [feature(512)],
    "unknown mode": [common_pb2.Intervention(feature=3, weight=1.0, mode=7)],  # type: ignore[arg-type]
    "no target": [common_pb2.Intervention(weight=1.0)],
    "per_member on a feature": [common_pb2.Intervention(feature=3, weight=1.0, per_member=True)],
}


@pytest.mark.parametrize("interventions", BAD_INTERVENTIONS.values(), ids=BAD_INTERVENTIONS.keys())
async def test_search_and_sae_refuse_the_same_interventions_with_the_same_sentence(
    stack: Stack, interventions: list[common_pb2.Intervention]
) -> None:
    sae = sae_pb2_grpc.SaeServiceStub(stack.channel)
    vector = to_dense_vector(np.ones(256, dtype=np.float32) / 16)

    by_search = await failure_of(stack.stub.Search(steered(*interventions)))
    by_sae = await failure_of(sae.Steer(sae_pb2.SteerRequest(vector=vector, interventions=interventions)))

    assert by_search.code() == by_sae.code() == StatusCode.INVALID_ARGUMENT
    assert by_search.details() == by_sae.details()
