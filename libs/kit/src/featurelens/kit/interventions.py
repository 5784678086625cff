"""Interventions between the wire (``common_pb2.Intervention``) and the core's steering types.

Written once, so every service reads an intervention the same way: an unspecified mode is
additive, a message must name a feature, a non-empty family id or a phrase of 1 to
``MAX_PHRASE_CHARS`` characters, ``per_member`` is for family targets only, and a request may
name at most ``MAX_INTERVENTIONS`` of them.
Refusals are ``InterventionError`` (INVALID_ARGUMENT in the kit's error table), naming the
intervention by its position in the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from featurelens.steering import (
    MAX_INTERVENTIONS,
    MAX_PHRASE_CHARS,
    FamilyIntervention,
    Intervention,
    InterventionError,
    PhraseIntervention,
    RequestedIntervention,
    SteerMode,
    check_request_size,
)
from featurelens.v1 import common_pb2

_MODES = {
    common_pb2.STEER_MODE_UNSPECIFIED: SteerMode.ADDITIVE,
    common_pb2.STEER_MODE_ADDITIVE: SteerMode.ADDITIVE,
    common_pb2.STEER_MODE_CLAMP: SteerMode.CLAMP,
}
_PROTO_MODES = {
    SteerMode.ADDITIVE: common_pb2.STEER_MODE_ADDITIVE,
    SteerMode.CLAMP: common_pb2.STEER_MODE_CLAMP,
}


def interventions_from_proto(
    messages: Sequence[common_pb2.Intervention], *, limit: int = MAX_INTERVENTIONS
) -> list[RequestedIntervention]:
    """The request's interventions, each remembering its position; families and phrases are not
    resolved here. ``limit``: the most messages, ``MAX_INTERVENTIONS`` for what a user names in
    a search, ``MAX_STEERED_FEATURES`` for the expanded features that search sends to sae.

    Checks only what the wire can get wrong (no target, an empty family id, an empty or too long
    phrase, an unknown mode, per_member on a feature or phrase, too many messages);
    ``featurelens.steering.check_interventions`` checks the rest once the features are known.
    """
    check_request_size(len(messages), limit)
    items: list[RequestedIntervention] = []
    for position, message in enumerate(messages):
        where = f"interventions[{position}]"
        mode = _MODES.get(message.mode)
        if mode is None:
            raise InterventionError(
                f"{where} has steer mode {message.mode}, which is unknown; use STEER_MODE_ADDITIVE or "
                "STEER_MODE_CLAMP"
            )
        target = message.WhichOneof("target")
        if message.per_member and target != "family_id":
            raise InterventionError(
                f"{where} sets per_member, which is for a family target only (it says how a family's "
                "weight is shared by its members); unset it or name a family"
            )
        if target == "feature":
            items.append(Intervention(message.feature, message.weight, mode, position=position))
        elif target == "family_id" and message.family_id:
            items.append(
                FamilyIntervention(message.family_id, message.weight, mode, position, message.per_member)
            )
        elif target == "family_id":
            raise InterventionError(f"{where} has an empty family_id; name a family or set feature instead")
        elif target == "phrase":
            items.append(PhraseIntervention(_phrase(message.phrase, where), message.weight, mode, position))
        else:
            raise InterventionError(f"{where} names no feature, family or phrase; set one of them")
    return items


def _phrase(phrase: str, where: str) -> str:
    if not phrase.strip():
        raise InterventionError(
            f"{where} has an empty phrase; describe the feature in a few words or set feature instead"
        )
    if len(phrase) > MAX_PHRASE_CHARS:
        raise InterventionError(
            f"{where} has a phrase of {len(phrase):,} characters; the limit is {MAX_PHRASE_CHARS}"
        )
    return phrase


def steer_mode_to_proto(mode: SteerMode) -> common_pb2.SteerMode.ValueType:
    """A core steer mode as its wire enum."""
    return _PROTO_MODES[mode]


def interventions_to_proto(items: Iterable[Intervention]) -> list[common_pb2.Intervention]:
    """Feature interventions as messages (for a call to sae's Steer, after families and phrases are
    resolved)."""
    return [
        common_pb2.Intervention(feature=item.feature, weight=item.weight, mode=_PROTO_MODES[item.mode])
        for item in items
    ]
