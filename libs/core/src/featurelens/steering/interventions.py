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

#: Most features steered in one query, counted after family expansion; also the most
#: interventions (features or families) one request may name.
MAX_INTERVENTIONS = 256
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


@dataclass(frozen=True)
class FamilyIntervention:
    """Steer every member feature of a family by ``weight``; ``position`` as in ``Intervention``."""

    family_id: str
    weight: float
    mode: SteerMode = SteerMode.ADDITIVE
    position: int | None = None


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


def check_request_size(count: int) -> None:
    """InterventionError when a request names more interventions than one query may steer.

    Cheap, so callers run it before converting or expanding anything.
    """
    if count > MAX_INTERVENTIONS:
        raise InterventionError(
            f"{count} interventions; the limit is {MAX_INTERVENTIONS} features steered in one query"
        )


def resolve_targets(
    items: Sequence[RequestedIntervention],
    families: Mapping[str, Sequence[int]] | None = None,
    phrases: Mapping[str, PhraseMatch] | None = None,
) -> list[Intervention]:
    """The interventions with each family replaced by one intervention per member feature and
    each phrase by the feature it matched.

    ``families`` maps every family id in ``items`` to its member latents, ``phrases`` every
    phrase to its match. Each resolved item keeps the family's id or the phrase (and its match
    score) and the position of the request's intervention it came from.
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
            for feature in dict.fromkeys(families[item.family_id]):  # a family is a set of features
                resolved.append(Intervention(feature, item.weight, item.mode, item.family_id, position))
    return resolved


def expand_families(
    items: Sequence[RequestedIntervention], members: Mapping[str, Sequence[int]]
) -> list[Intervention]:
    """The interventions with each family target replaced by one intervention per member feature
    (``resolve_targets`` with families only: ``items`` must name no phrase)."""
    return resolve_targets(items, families=members)


def check_interventions(
    items: Sequence[Intervention], *, num_latents: int | None = None, sae_id: str = ""
) -> SteerPlan:
    """The interventions as a SteerPlan, or InterventionError with a sentence naming the one at fault.

    Refuses more than ``MAX_INTERVENTIONS`` features; weights that are not finite; additive
    weights beyond ±``MAX_STEER_WEIGHT``; clamp values outside [0, ``MAX_STEER_WEIGHT``];
    features at or beyond ``num_latents`` (when given); and a feature steered twice, naming
    where each came from. ``sae_id`` only names the SAE in sentences.
    """
    if len(items) > MAX_INTERVENTIONS:
        if any(item.family_id is not None for item in items):
            raise InterventionError(
                f"the interventions steer {len(items)} features once their families are expanded; the "
                f"limit is {MAX_INTERVENTIONS} features in one query (steer fewer or smaller families)"
            )
        check_request_size(len(items))
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
    where, target, weight = _where(item), _target(item), item.weight
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
