"""The intervention rule: each refusal is a sentence naming the intervention the user sent."""

from __future__ import annotations

import pytest

from featurelens.steering import (
    MAX_INTERVENTIONS,
    MAX_STEER_WEIGHT,
    MAX_STEERED_FEATURES,
    FamilyIntervention,
    FamilyMembers,
    Intervention,
    InterventionError,
    PhraseIntervention,
    PhraseMatch,
    RequestedIntervention,
    SteerMode,
    check_interventions,
    check_request_size,
    expand_families,
    resolve_targets,
)

CLAMP = SteerMode.CLAMP


def members(*features: int, norm: float = 1.0) -> FamilyMembers:
    """A family of these features whose unit directions sum to length ``norm`` (1: weights as sent)."""
    return FamilyMembers(features, norm)


def refusal(items: list[Intervention], num_latents: int | None = 512, sae_id: str = "") -> str:
    with pytest.raises(InterventionError) as caught:
        check_interventions(items, num_latents=num_latents, sae_id=sae_id)
    return str(caught.value)


def test_checked_interventions_are_split_into_clamps_first_and_additive_shifts() -> None:
    plan = check_interventions(
        [Intervention(3, 1.5), Intervention(9, 4.0, CLAMP), Intervention(4, -2.0)], num_latents=16
    )

    assert plan.clamp_features == [9]
    assert plan.clamp_values == [4.0]
    assert plan.add_features == [3, 4]
    assert plan.add_weights == [1.5, -2.0]
    assert [item.position for item in plan.interventions] == [0, 1, 2]
    assert plan.changes_vector


def test_only_additive_weights_of_zero_leave_a_vector_unchanged() -> None:
    assert not check_interventions([Intervention(3, 0.0), Intervention(4, -0.0)]).changes_vector
    assert check_interventions([Intervention(3, 0.0, CLAMP)]).changes_vector
    assert not check_interventions([]).changes_vector


def test_the_limits_themselves_are_allowed() -> None:
    items = [Intervention(0, MAX_STEER_WEIGHT, CLAMP)] + [
        Intervention(feature, -MAX_STEER_WEIGHT) for feature in range(1, MAX_STEERED_FEATURES)
    ]

    assert (
        len(check_interventions(items, num_latents=MAX_STEERED_FEATURES).interventions)
        == MAX_STEERED_FEATURES
    )


@pytest.mark.parametrize(
    ("items", "sentence"),
    [
        pytest.param(
            [Intervention(3, 0.5), Intervention(4, float("nan"))],
            "interventions[1]: the weight on feature 4 is not a finite number",
            id="NaN weight",
        ),
        pytest.param(
            [Intervention(3, float("inf"), CLAMP)],
            "interventions[0]: the weight on feature 3 is not a finite number",
            id="infinite clamp",
        ),
        pytest.param(
            [Intervention(3, 10.5)],
            "interventions[0]: additive weight 10.5 on feature 3 is beyond ±10",
            id="additive weight beyond the bound",
        ),
        pytest.param(
            [Intervention(3, -11.0)],
            "interventions[0]: additive weight -11 on feature 3 is beyond ±10",
            id="negative additive weight beyond the bound",
        ),
        pytest.param(
            [Intervention(7, -1.0, CLAMP)],
            "interventions[0]: clamp value -1 on feature 7 is negative; latent activations are ≥ 0",
            id="negative clamp",
        ),
        pytest.param(
            [Intervention(7, 1e6, CLAMP)],
            "interventions[0]: clamp value 1e+06 on feature 7 is above 10",
            id="clamp beyond the bound",
        ),
        pytest.param(
            [Intervention(512, 1.0)],
            "interventions[0]: feature 512 does not exist: the SAE has latents 0 to 511",
            id="feature beyond the SAE",
        ),
        pytest.param(
            [Intervention(-1, 1.0)],
            "interventions[0]: feature -1 is negative; latent ids start at 0",
            id="negative feature",
        ),
        pytest.param(
            [Intervention(7, 1.0), Intervention(7, 2.0, CLAMP)],
            "feature 7 is steered twice: by interventions[0] and by interventions[1]; steer it once",
            id="the same feature named twice",
        ),
        pytest.param(
            [Intervention(i, 0.1) for i in range(MAX_STEERED_FEATURES + 1)],
            "16385 interventions; the limit is 16384 in one request",
            id="too many",
        ),
    ],
)
def test_an_intervention_that_breaks_the_rule_is_refused_with_a_sentence(
    items: list[Intervention], sentence: str
) -> None:
    assert sentence in refusal(items)


def test_the_sentence_names_the_sae_when_the_caller_does() -> None:
    message = refusal([Intervention(600, 1.0)], sae_id="sae-512")

    assert message == "interventions[0]: feature 600 does not exist: SAE 'sae-512' has latents 0 to 511"


def test_features_are_not_checked_against_a_size_nobody_gave() -> None:
    assert check_interventions([Intervention(10**6, 1.0)]).add_features == [10**6]


def test_a_family_member_that_is_also_named_directly_is_refused_naming_both_origins() -> None:
    requested: list[RequestedIntervention] = [
        Intervention(12, 0.5),
        Intervention(40, 1.0),
        FamilyIntervention("f3", 0.2),
    ]
    expanded = expand_families(requested, {"f3": members(11, 12, 13)})

    message = refusal(expanded)

    assert message == (
        "feature 12 is steered twice: by interventions[0] and as a member of family 'f3' "
        "(interventions[2]); steer it once"
    )


def test_two_families_sharing_a_feature_are_refused_naming_both() -> None:
    requested = [FamilyIntervention("stars", 0.5), FamilyIntervention("dust", -0.5)]
    expanded = expand_families(requested, {"stars": members(1, 2), "dust": members(5, 2)})

    assert refusal(expanded) == (
        "feature 2 is steered twice: as a member of family 'stars' (interventions[0]) and as a member "
        "of family 'dust' (interventions[1]); steer it once"
    )


def test_a_family_is_expanded_in_place_keeping_its_position_and_its_id() -> None:
    requested: list[RequestedIntervention] = [
        Intervention(9, 1.0),
        FamilyIntervention("f3", 2.0, CLAMP),
        Intervention(4, -1.0),
    ]

    expanded = expand_families(requested, {"f3": members(7, 8, 7)})

    assert expanded == [
        Intervention(9, 1.0, position=0),
        Intervention(7, 2.0, CLAMP, family_id="f3", position=1),
        Intervention(8, 2.0, CLAMP, family_id="f3", position=1),
        Intervention(4, -1.0, position=2),
    ]


def test_a_bad_weight_on_a_family_names_the_family_the_user_sent() -> None:
    expanded = expand_families([Intervention(1, 1.0), FamilyIntervention("f3", 12.0)], {"f3": members(7, 8)})

    assert refusal(expanded) == "interventions[1]: additive weight 12 on family 'f3' is beyond ±10"


def test_a_family_member_beyond_the_sae_names_the_family() -> None:
    expanded = expand_families([FamilyIntervention("f3", 1.0)], {"f3": members(7, 900)})

    assert refusal(expanded).startswith("interventions[0]: feature 900 of family 'f3' does not exist")


def test_features_are_counted_after_expansion_and_the_sentence_says_so() -> None:
    expanded = expand_families(
        [Intervention(0, 1.0), FamilyIntervention("big", 0.5)],
        {"big": members(*range(1, MAX_STEERED_FEATURES + 1))},
    )

    message = refusal(expanded, num_latents=None)

    assert message.startswith("the interventions steer 16385 features once their families are expanded")
    assert "the limit is 16384 features in one query" in message


def test_a_family_larger_than_the_request_limit_can_be_steered() -> None:
    expanded = expand_families([FamilyIntervention("big", 0.5)], {"big": members(*range(1000))})

    assert len(check_interventions(expanded, num_latents=1000).interventions) == 1000


def test_a_long_family_id_is_echoed_cut_short() -> None:
    family = "f" * 5000
    expanded = expand_families([Intervention(1, 1.0), FamilyIntervention(family, 1.0)], {family: members(1)})

    message = refusal(expanded)

    assert "'" + "f" * 100 + "'…" in message
    assert len(message) < 250


def test_a_request_naming_too_many_targets_is_refused_before_any_work() -> None:
    check_request_size(MAX_INTERVENTIONS)
    with pytest.raises(InterventionError, match=r"^1000 interventions; the limit is 256"):
        check_request_size(1000)


def test_a_phrase_resolves_in_place_to_its_feature_keeping_its_position_phrase_and_score() -> None:
    requested: list[RequestedIntervention] = [
        Intervention(9, 1.0),
        PhraseIntervention("dark matter halos", 2.0, CLAMP),
        FamilyIntervention("f3", -0.5),
    ]

    resolved = resolve_targets(
        requested,
        families={"f3": members(4, 5)},
        phrases={"dark matter halos": PhraseMatch(7, 0.83, "halo mass")},
    )

    assert resolved == [
        Intervention(9, 1.0, position=0),
        Intervention(7, 2.0, CLAMP, position=1, phrase="dark matter halos", match_score=0.83),
        Intervention(4, -0.5, family_id="f3", position=2, family_weight=-0.5),
        Intervention(5, -0.5, family_id="f3", position=2, family_weight=-0.5),
    ]


def test_a_phrase_matching_a_feature_also_named_by_id_is_refused_naming_both_origins() -> None:
    requested: list[RequestedIntervention] = [
        Intervention(7, 0.5),
        PhraseIntervention("dark matter halos", 1.0),
    ]
    resolved = resolve_targets(requested, phrases={"dark matter halos": PhraseMatch(7, 0.9)})

    assert refusal(resolved) == (
        "feature 7 is steered twice: by interventions[0] and as the match of phrase 'dark matter halos' "
        "(interventions[1]); steer it once"
    )


def test_a_bad_weight_on_a_phrase_names_the_phrase_the_user_sent() -> None:
    resolved = resolve_targets(
        [PhraseIntervention("quasars", 11.0)], phrases={"quasars": PhraseMatch(3, 0.7)}
    )

    assert refusal(resolved) == "interventions[0]: additive weight 11 on phrase 'quasars' is beyond ±10"


def test_a_phrase_matched_to_a_feature_beyond_the_sae_names_the_phrase() -> None:
    resolved = resolve_targets(
        [PhraseIntervention("quasars", 1.0)], phrases={"quasars": PhraseMatch(900, 0.7)}
    )

    assert refusal(resolved, sae_id="sae-512") == (
        "interventions[0]: feature 900 (the match of phrase 'quasars') does not exist: SAE 'sae-512' has "
        "latents 0 to 511"
    )


def test_an_additive_family_is_one_direction_so_its_weight_is_split_by_the_direction_norm() -> None:
    resolved = resolve_targets([FamilyIntervention("f3", 0.6)], families={"f3": members(4, 5, 6, norm=2.0)})

    assert [(item.feature, item.weight) for item in resolved] == [(4, 0.3), (5, 0.3), (6, 0.3)]
    assert {item.family_weight for item in resolved} == {0.6}
    assert check_interventions(resolved).add_weights == [0.3, 0.3, 0.3]


def test_per_member_steers_every_member_by_the_full_weight() -> None:
    family = FamilyIntervention("f3", 0.6, per_member=True)

    resolved = resolve_targets([family], families={"f3": members(4, 5, norm=2.0)})

    assert resolved == [
        Intervention(4, 0.6, family_id="f3", position=0),
        Intervention(5, 0.6, family_id="f3", position=0),
    ]


@pytest.mark.parametrize("per_member", [False, True])
def test_a_clamp_sets_every_member_to_the_weight_whatever_the_norm(per_member: bool) -> None:
    family = FamilyIntervention("f3", 2.0, CLAMP, per_member=per_member)

    resolved = resolve_targets([family], families={"f3": members(4, 5, norm=1.7)})

    assert resolved == [
        Intervention(4, 2.0, CLAMP, family_id="f3", position=0),
        Intervention(5, 2.0, CLAMP, family_id="f3", position=0),
    ]


def test_a_one_member_family_steers_its_member_by_the_weight_as_sent() -> None:
    [resolved] = resolve_targets([FamilyIntervention("solo", -0.7)], families={"solo": members(9)})

    assert (resolved.feature, resolved.weight) == (9, -0.7)


@pytest.mark.parametrize("weight", [0.0, -0.0])
def test_a_family_weight_of_zero_stays_exactly_zero_and_changes_nothing(weight: float) -> None:
    resolved = resolve_targets([FamilyIntervention("f3", weight)], families={"f3": members(4, 5, norm=3.0)})

    plan = check_interventions(resolved)

    assert plan.add_weights == [0.0, 0.0]
    assert not plan.changes_vector


def test_the_bound_applies_to_the_family_weight_as_sent_not_to_its_share() -> None:
    resolved = resolve_targets([FamilyIntervention("f3", 12.0)], families={"f3": members(4, 5, norm=4.0)})

    assert refusal(resolved) == "interventions[0]: additive weight 12 on family 'f3' is beyond ±10"


def test_a_family_whose_directions_nearly_cancel_is_refused_when_a_share_passes_the_bound() -> None:
    resolved = resolve_targets([FamilyIntervention("f3", 5.0)], families={"f3": members(4, 5, norm=0.25)})

    assert refusal(resolved) == (
        "interventions[0]: additive weight 5 on family 'f3' steers each of its members by 20 (the "
        "family's direction norm is 0.25), beyond ±10; use a smaller weight or set per_member"
    )


@pytest.mark.parametrize("norm", [0.0, -1.0, float("nan"), float("inf")])
def test_a_direction_norm_that_cannot_divide_a_weight_is_refused(norm: float) -> None:
    with pytest.raises(ValueError, match="direction norm must be a finite number above 0"):
        FamilyMembers((1, 2), norm)


def test_a_family_without_members_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        FamilyMembers((), 1.0)
