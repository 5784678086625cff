"""How the command line spells a steering intervention: ``KEY=WEIGHT``.

The weight is the signed number after the last ``=`` (so a phrase may itself contain ``=``).
The key says what to steer, read in this order:

- a key wrapped in double quotes is a phrase, whatever it holds: ``"2020"=+3``;
- digits only: a feature id, ``2370=+5``;
- ``family:ID``: a family, ``family:f2370-p0=-2``;
- any other text: a phrase, ``dark matter halos=+4``, resolved by the search service to the
  labelled feature whose label is closest in meaning.

So a phrase that is all digits or starts with ``family:`` needs the quotes, and nothing else does.

A family is steered as one direction by default: the normalised sum of its members' decoder
directions, moved by the weight. ``--per-member`` (see ``PER_MEMBER_HELP``) steers every member
of each family named in ``--steer`` by the full weight instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

from featurelens.client import Intervention
from featurelens.client.types import SteerMode

STEER_HELP = (
    "Steer the query: KEY=WEIGHT, repeatable. KEY is a feature id (2370=+5), family:ID "
    "(family:f2370-p0=-2: the family as one direction; add --per-member to steer each member by WEIGHT) "
    "or a phrase (--steer 'dark matter halos=+4'), which the server resolves to the "
    "labelled feature closest in meaning. A phrase that is all digits or starts with family: goes in "
    "double quotes (--steer '\"2020\"=+3'). WEIGHT is the signed number after the last =, in [-10, 10]."
)
CLAMP_HELP = "Clamp a feature's activation: KEY=VALUE, repeatable, KEY as for --steer, VALUE in [0, 10]."
PER_MEMBER_HELP = (
    "Steer every member of each family named in --steer (family:ID=W) by the full weight W, instead of "
    "moving the family's one direction (the normalised sum of its members' directions) by W: "
    "--steer family:f2370-p0=+3 --per-member."
)

_FEATURE = re.compile(r"[0-9]+")
_SIGNED_NUMBER = re.compile(r"[+-][0-9]+")
_FAMILY_PREFIX = "family:"


class SteerSpecError(ValueError):
    """A --steer or --clamp value that does not follow KEY=WEIGHT; the message says why."""


def parse_intervention(spec: str, mode: SteerMode = "additive", option: str = "--steer") -> Intervention:
    """The intervention a ``KEY=WEIGHT`` value names; ``SteerSpecError`` with a sentence otherwise."""
    key, equals, number = spec.rpartition("=")
    shape = f"{option} takes KEY=WEIGHT, e.g. 2370=+5, family:f2370-p0=-2 or dark matter halos=+4"
    if not equals:
        raise SteerSpecError(f"{shape}; {spec!r} has no '='")
    try:
        weight = float(number)
    except ValueError:
        raise SteerSpecError(f"{shape}; {number.strip()!r} after the last '=' is not a number") from None
    if not math.isfinite(weight):
        raise SteerSpecError(f"{option} {spec!r}: the weight must be a finite number")
    key = key.strip()
    if len(key) >= 2 and key.startswith('"') and key.endswith('"'):
        return _phrase(key[1:-1], weight, mode, option, spec)
    if _FEATURE.fullmatch(key):
        return Intervention(weight=weight, feature=int(key), mode=mode)
    if _SIGNED_NUMBER.fullmatch(key):
        raise SteerSpecError(
            f"{option} {spec!r}: feature ids are 0 or more; put a phrase that looks like a number in "
            'double quotes ("-5"=+3)'
        )
    if key.startswith(_FAMILY_PREFIX):
        family_id = key[len(_FAMILY_PREFIX) :].strip()
        if not family_id:
            raise SteerSpecError(f"{option} {spec!r} names no family after 'family:'")
        return Intervention(weight=weight, family_id=family_id, mode=mode)
    return _phrase(key, weight, mode, option, spec)


def _phrase(phrase: str, weight: float, mode: SteerMode, option: str, spec: str) -> Intervention:
    phrase = phrase.strip()
    if not phrase:
        raise SteerSpecError(f"{option} {spec!r} names nothing to steer before the '='")
    return Intervention(weight=weight, phrase=phrase, mode=mode)


def parse_interventions(
    steer: list[str], clamp: list[str], *, per_member: bool = False
) -> list[Intervention]:
    """The interventions of the --steer and then the --clamp values, in the order given; with
    ``per_member``, the families of --steer are steered member by member."""
    steered = [parse_intervention(spec) for spec in steer]
    if per_member:
        if not any(i.family_id is not None for i in steered):
            raise SteerSpecError(
                "--per-member applies to the families of --steer, and it names none: "
                "add one, e.g. --steer family:f2370-p0=+3"
            )
        steered = [replace(i, per_member=True) if i.family_id is not None else i for i in steered]
    return steered + [parse_intervention(spec, "clamp", "--clamp") for spec in clamp]
