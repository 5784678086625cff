"""The one rule for steering interventions, shared by every service that accepts them.

search resolves family and phrase targets into features (``resolve_targets``) and then checks
the resolved list; sae checks the list it is sent. Both call ``check_interventions``, so a
request that search accepts is one that sae accepts, and every refusal points at an
intervention the user sent (``interventions[2]``), never at a position in a list that only
existed after resolution.

No torch here: the search service, which has none, checks interventions too.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

#: Most interventions (features, families or phrases) one search request may name.
MAX_INTERVENTIONS = 256
#: Most features steered in one query, counted after family expansion, and so the most
#: interventions one request to the sae service may carry. A family is a subtree of the SAE's
#: co-occurrence forest, so it can hold thousands of features (the largest seen at 10,240 latents
#: has about 1,000); steering them costs one gather of that many decoder rows, so the bound is
#: about wire size, not work.
MAX_STEERED_FEATURES = 16_384
#: Largest |weight| of an additive intervention and largest clamp value. Queries are unit-norm
#: and decoder directions unit-length, so a shift of 10 already drowns the query.
MAX_STEER_WEIGHT = 10.0
#: Most characters of a caller's family id or phrase repeated back in a sentence.
MAX_ECHOED_CHARS = 100
#: Longest phrase an intervention may name (a few words describing a concept).
MAX_PHRASE_CHARS = 200


class SteerMode(enum.Enum):
    """How an intervention moves a vector."""

    #: Add ``weight`` times the feature's unit decoder direction.
    ADDITIVE = "additive"
    #: Set the feature's activation to ``weight``, re-decode, keep the reconstruction error.
    CLAMP = "clamp"


class InterventionError(ValueError):
    """Interventions that break the rule; the message is a sentence naming the one at fault."""


@dataclass(frozen=True)
class Intervention:
    """Steer one feature (latent id) by ``weight``.

    ``family_id`` is the family this feature was expanded from and ``phrase`` the phrase it was
    resolved from, with ``match_score`` the phrase's similarity to the feature's label (all None
    when the request named the feature itself); ``position`` is the index of the request's
    intervention it came from, so that sentences name what the user sent (None: its index in the
    list being checked).
    """

    feature: int
    weight: float
    mode: SteerMode = SteerMode.ADDITIVE
    family_id: str | None = None
    position: int | None = None
    phrase: str | None = None
    match_score: float | None = None
    #: For a member of a family steered as one direction: the weight the family was asked for
    #: (``weight`` is that divided by the family's direction norm). None otherwise. Kept so that
    #: the bound on a family's weight is checked on what the user sent, not on its share.
    family_weight: float | None = None


@dataclass(frozen=True)
class FamilyIntervention:
    """Steer a family of features by ``weight``; ``position`` as in ``Intervention``.

    Additive, the family is one direction (the normalised sum of its members' unit decoder
    directions) moved by ``weight``, unless ``per_member``: then every member moves by the full
    ``weight``. A clamp sets every member to ``weight`` either way.
    """

    family_id: str
    weight: float
    mode: SteerMode = SteerMode.ADDITIVE
    position: int | None = None
    per_member: bool = False


@dataclass(frozen=True)
class FamilyMembers:
    """What a family expands to: its member latents (parent included) and the length of the sum
    of their unit decoder directions, which turns one weight for the family into each member's
    share (a one-member family has norm 1).

    Checked on construction, because the norm divides the weight: it must be finite and > 0,
    and a family has at least one member.
    """

    features: tuple[int, ...]
    direction_norm: float

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("a family has at least one member feature")
        if not (math.isfinite(self.direction_norm) and self.direction_norm > 0):
            raise ValueError(
                f"a family's direction norm must be a finite number above 0, not {self.direction_norm:g}"
            )


@dataclass(frozen=True)
class PhraseIntervention:
    """Steer the labelled feature whose label best matches ``phrase`` by ``weight``; ``position``
    as in ``Intervention``. Which feature that is, a labelling service says (``PhraseMatch``)."""

    phrase: str
    weight: float
    mode: SteerMode = SteerMode.ADDITIVE
    position: int | None = None


@dataclass(frozen=True)
class PhraseMatch:
    """The feature a phrase resolved to: its latent id, the phrase's similarity to its label
    (cosine, in [-1, 1]) and the label itself."""

    feature: int
    score: float
    label: str = ""


#: What a request may name: a feature, a whole family, or a phrase naming a feature.
RequestedIntervention = Intervention | FamilyIntervention | PhraseIntervention


@dataclass(frozen=True)
class SteerPlan:
    """Checked interventions: each feature at most once, weights in bounds, features in range.

    Clamps are applied first (they re-encode the vector), then the additive shifts.
    """

    interventions: tuple[Intervention, ...]

    @property
    def clamp_features(self) -> list[int]:
        return [item.feature for item in self.interventions if item.mode is SteerMode.CLAMP]

    @property
    def clamp_values(self) -> list[float]:
        return [item.weight for item in self.interventions if item.mode is SteerMode.CLAMP]

    @property
    def add_features(self) -> list[int]:
        return [item.feature for item in self.interventions if item.mode is SteerMode.ADDITIVE]

    @property
    def add_weights(self) -> list[float]:
        return [item.weight for item in self.interventions if item.mode is SteerMode.ADDITIVE]

    @property
    def changes_vector(self) -> bool:
        """Whether steering moves a vector at all: an additive weight of 0 does not; any clamp does."""
        return any(item.mode is SteerMode.CLAMP or item.weight != 0.0 for item in self.interventions)


def check_request_size(count: int, limit: int = MAX_INTERVENTIONS) -> None:
    """InterventionError when a request names more than ``limit`` interventions: a search request
    ``MAX_INTERVENTIONS``, a request of expanded features (to the sae service) ``MAX_STEERED_FEATURES``.

    Cheap, so callers run it before converting or expanding anything.
    """
    if count > limit:
        raise InterventionError(f"{count} interventions; the limit is {limit} in one request")


def resolve_targets(
    items: Sequence[RequestedIntervention],
    families: Mapping[str, FamilyMembers] | None = None,
    phrases: Mapping[str, PhraseMatch] | None = None,
) -> list[Intervention]:
    """The interventions with each family replaced by one intervention per member feature and
    each phrase by the feature it matched.

    ``families`` maps every family id in ``items`` to its members, ``phrases`` every phrase to its
    match. Each resolved item keeps the family's id or the phrase (and its match score) and the
    position of the request's intervention it came from. A family's members get the family's
    weight, except in additive mode without ``per_member``: the family is then one direction,
    the sum of the members' unit directions divided by its norm, so moving it by ``weight``
    moves each member by ``weight / direction_norm`` (a weight of 0 stays exactly 0).
    """
    families = families or {}
    phrases = phrases or {}
    resolved: list[Intervention] = []
    for index, item in enumerate(items):
        position = index if item.position is None else item.position
        if isinstance(item, Intervention):
            resolved.append(replace(item, position=position))
        elif isinstance(item, PhraseIntervention):
            match = phrases[item.phrase]
            resolved.append(
                Intervention(
                    match.feature,
                    item.weight,
                    item.mode,
                    position=position,
                    phrase=item.phrase,
                    match_score=match.score,
                )
            )
        else:
            members = families[item.family_id]
            weight, family_weight = item.weight, None
            if item.mode is SteerMode.ADDITIVE and not item.per_member:
                weight, family_weight = item.weight / members.direction_norm, item.weight
            for feature in dict.fromkeys(members.features):  # a family is a set of features
                resolved.append(
                    Intervention(
                        feature, weight, item.mode, item.family_id, position, family_weight=family_weight
                    )
                )
    return resolved


def expand_families(
    items: Sequence[RequestedIntervention], members: Mapping[str, FamilyMembers]
) -> list[Intervention]:
    """The interventions with each family target replaced by one intervention per member feature
    (``resolve_targets`` with families only: ``items`` must name no phrase)."""
    return resolve_targets(items, families=members)


def check_interventions(
    items: Sequence[Intervention], *, num_latents: int | None = None, sae_id: str = ""
) -> SteerPlan:
    """The interventions as a SteerPlan, or InterventionError with a sentence naming the one at fault.

    Refuses more than ``MAX_STEERED_FEATURES`` features; weights that are not finite; additive
    weights beyond ±``MAX_STEER_WEIGHT``; clamp values outside [0, ``MAX_STEER_WEIGHT``];
    features at or beyond ``num_latents`` (when given); and a feature steered twice, naming
    where each came from. ``sae_id`` only names the SAE in sentences.
    """
    if len(items) > MAX_STEERED_FEATURES:
        if any(item.family_id is not None for item in items):
            raise InterventionError(
                f"the interventions steer {len(items)} features once their families are expanded; the "
                f"limit is {MAX_STEERED_FEATURES} features in one query (steer fewer or smaller families)"
            )
        check_request_size(len(items), MAX_STEERED_FEATURES)
    first_seen: dict[int, Intervention] = {}
    positioned = []
    for index, given in enumerate(items):
        item = given if given.position is not None else replace(given, position=index)
        _check_feature(item, num_latents, sae_id)
        _check_weight(item)
        earlier = first_seen.get(item.feature)
        if earlier is not None:
            raise InterventionError(
                f"feature {item.feature} is steered twice: {_origin(earlier)} and {_origin(item)}; "
                "steer it once"
            )
        first_seen[item.feature] = item
        positioned.append(item)
    return SteerPlan(tuple(positioned))


def echo(value: str) -> str:
    """A family id or phrase as repeated back to the caller: quoted, and cut short when long."""
    if len(value) <= MAX_ECHOED_CHARS:
        return repr(value)
    return repr(value[:MAX_ECHOED_CHARS]) + "…"


def _where(item: Intervention) -> str:
    return f"interventions[{item.position}]"


def _target(item: Intervention) -> str:
    """What the user's intervention steers: the feature they named, the family or the phrase."""
    if item.family_id is not None:
        return f"family {echo(item.family_id)}"
    if item.phrase is not None:
        return f"phrase {echo(item.phrase)}"
    return f"feature {item.feature}"


def _origin(item: Intervention) -> str:
    if item.family_id is not None:
        return f"as a member of family {echo(item.family_id)} ({_where(item)})"
    if item.phrase is not None:
        return f"as the match of phrase {echo(item.phrase)} ({_where(item)})"
    return f"by {_where(item)}"


def _check_feature(item: Intervention, num_latents: int | None, sae_id: str) -> None:
    subject = f"feature {item.feature}"
    if item.family_id is not None:
        subject += f" of family {echo(item.family_id)}"
    elif item.phrase is not None:
        subject += f" (the match of phrase {echo(item.phrase)})"
    if item.feature < 0:
        raise InterventionError(f"{_where(item)}: {subject} is negative; latent ids start at 0")
    if num_latents is not None and item.feature >= num_latents:
        sae = f"SAE {sae_id!r}" if sae_id else "the SAE"
        raise InterventionError(
            f"{_where(item)}: {subject} does not exist: {sae} has latents 0 to {num_latents - 1}"
        )


def _check_weight(item: Intervention) -> None:
    where, target = _where(item), _target(item)
    weight = item.weight if item.family_weight is None else item.family_weight
    if not math.isfinite(weight):
        raise InterventionError(f"{where}: the weight on {target} is not a finite number")
    if item.mode is SteerMode.CLAMP:
        if weight < 0:
            raise InterventionError(
                f"{where}: clamp value {weight:g} on {target} is negative; latent activations are ≥ 0 "
                "(use an additive weight to push a feature down)"
            )
        if weight > MAX_STEER_WEIGHT:
            raise InterventionError(
                f"{where}: clamp value {weight:g} on {target} is above {MAX_STEER_WEIGHT:g}"
            )
    elif abs(weight) > MAX_STEER_WEIGHT:
        raise InterventionError(
            f"{where}: additive weight {weight:g} on {target} is beyond ±{MAX_STEER_WEIGHT:g}"
        )
    elif abs(item.weight) > MAX_STEER_WEIGHT:
        # The family's weight is in bounds, but its members' directions nearly cancel out (norm
        # below 1), so each member's share is not: sae would refuse it.
        raise InterventionError(
            f"{where}: additive weight {weight:g} on {target} steers each of its members by "
            f"{item.weight:g} (the family's direction norm is {weight / item.weight:.3g}), beyond "
            f"±{MAX_STEER_WEIGHT:g}; use a smaller weight or set per_member"
        )
