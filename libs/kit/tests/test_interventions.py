"""Interventions from the wire to the core's types and back, and the status their refusals get."""

from __future__ import annotations

import re

import grpc
import pytest

from featurelens.kit import status_for
from featurelens.kit.interventions import (
    interventions_from_proto,
    interventions_to_proto,
    steer_mode_to_proto,
)
from featurelens.steering import (
    MAX_INTERVENTIONS,
    MAX_PHRASE_CHARS,
    FamilyIntervention,
    Intervention,
    InterventionError,
    PhraseIntervention,
    SteerMode,
)
from featurelens.v1 import common_pb2

CLAMP = common_pb2.STEER_MODE_CLAMP


def test_features_families_and_phrases_arrive_with_their_mode_and_their_position_in_the_request() -> None:
    messages = [
        common_pb2.Intervention(feature=3, weight=0.5),
        common_pb2.Intervention(family_id="fam-1", weight=2.0, mode=CLAMP),
        common_pb2.Intervention(feature=0, weight=-1.0, mode=common_pb2.STEER_MODE_ADDITIVE),
        common_pb2.Intervention(phrase="dark matter halos", weight=0.25, mode=CLAMP),
    ]

    assert interventions_from_proto(messages) == [
        Intervention(3, 0.5, SteerMode.ADDITIVE, position=0),
        FamilyIntervention("fam-1", 2.0, SteerMode.CLAMP, position=1),
        Intervention(0, -1.0, SteerMode.ADDITIVE, position=2),
        PhraseIntervention("dark matter halos", 0.25, SteerMode.CLAMP, position=3),
    ]


@pytest.mark.parametrize("mode", [common_pb2.STEER_MODE_ADDITIVE, CLAMP])
def test_per_member_arrives_on_a_family_target_in_either_mode(mode: common_pb2.SteerMode.ValueType) -> None:
    message = common_pb2.Intervention(family_id="fam-1", weight=0.5, mode=mode, per_member=True)

    [family] = interventions_from_proto([message])

    assert isinstance(family, FamilyIntervention)
    assert family.per_member


def test_a_phrase_of_the_longest_length_allowed_is_taken_as_sent() -> None:
    phrase = "x" * MAX_PHRASE_CHARS

    assert interventions_from_proto([common_pb2.Intervention(phrase=phrase, weight=1.0)]) == [
        PhraseIntervention(phrase, 1.0, SteerMode.ADDITIVE, position=0)
    ]


def test_feature_interventions_go_back_on_the_wire_unchanged() -> None:
    messages = [
        common_pb2.Intervention(feature=3, weight=0.5, mode=common_pb2.STEER_MODE_ADDITIVE),
        common_pb2.Intervention(feature=9, weight=4.0, mode=CLAMP),
    ]

    items = interventions_from_proto(messages)

    assert interventions_to_proto(item for item in items if isinstance(item, Intervention)) == messages


def test_a_family_member_goes_on_the_wire_as_a_plain_feature() -> None:
    member = Intervention(12, 0.25, SteerMode.CLAMP, family_id="f3", position=2)

    assert interventions_to_proto([member]) == [common_pb2.Intervention(feature=12, weight=0.25, mode=CLAMP)]


@pytest.mark.parametrize(
    ("message", "sentence"),
    [
        pytest.param(
            common_pb2.Intervention(weight=1.0),
            "interventions[1] names no feature, family or phrase",
            id="no target",
        ),
        pytest.param(
            common_pb2.Intervention(phrase="", weight=1.0),
            "interventions[1] has an empty phrase",
            id="empty phrase",
        ),
        pytest.param(
            common_pb2.Intervention(phrase=" \t ", weight=1.0),
            "interventions[1] has an empty phrase",
            id="blank phrase",
        ),
        pytest.param(
            common_pb2.Intervention(phrase="y" * (MAX_PHRASE_CHARS + 1), weight=1.0),
            "interventions[1] has a phrase of 201 characters; the limit is 200",
            id="phrase too long",
        ),
        pytest.param(
            common_pb2.Intervention(family_id="", weight=1.0),
            "interventions[1] has an empty family_id",
            id="empty family id",
        ),
        pytest.param(
            common_pb2.Intervention(feature=3, weight=1.0, mode=9),  # type: ignore[arg-type]
            "interventions[1] has steer mode 9, which is unknown",
            id="unknown mode",
        ),
        pytest.param(
            common_pb2.Intervention(feature=3, weight=1.0, per_member=True),
            "interventions[1] sets per_member, which is for a family target only",
            id="per_member on a feature",
        ),
        pytest.param(
            common_pb2.Intervention(phrase="dark matter", weight=1.0, per_member=True),
            "interventions[1] sets per_member, which is for a family target only",
            id="per_member on a phrase",
        ),
    ],
)
def test_a_message_the_wire_got_wrong_is_refused_by_its_position(
    message: common_pb2.Intervention, sentence: str
) -> None:
    with pytest.raises(InterventionError, match=re.escape(sentence)):
        interventions_from_proto([common_pb2.Intervention(feature=1, weight=1.0), message])


def test_a_request_naming_too_many_targets_is_refused_before_conversion() -> None:
    messages = [common_pb2.Intervention(family_id=f"f{i}") for i in range(MAX_INTERVENTIONS + 1)]

    with pytest.raises(InterventionError, match="257 interventions; the limit is 256 in one request"):
        interventions_from_proto(messages)


def test_steer_modes_go_on_the_wire_as_their_enum() -> None:
    assert steer_mode_to_proto(SteerMode.ADDITIVE) == common_pb2.STEER_MODE_ADDITIVE
    assert steer_mode_to_proto(SteerMode.CLAMP) == CLAMP


def test_a_refused_intervention_is_an_invalid_argument() -> None:
    assert status_for(InterventionError("feature 3 is steered twice")) == grpc.StatusCode.INVALID_ARGUMENT
