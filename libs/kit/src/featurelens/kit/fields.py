"""Request fields that several services take, each checked by one rule: latent ids, model names
and the corpus description sent on to an LLM.

The family service checks a build's label options by the rule the labelling service applies when
the families reach it, so a bad option is refused before the build, not after it.
"""

from __future__ import annotations

from collections.abc import Sequence

from featurelens.interp.labelling import MAX_DOMAIN_CHARS
from featurelens.kit.echo import shown
from featurelens.kit.errors import InvalidArgumentError

#: Longest model name a caller may send.
MAX_MODEL_CHARS = 200


def feature_ids(values: Sequence[int], limit: int, field: str = "features") -> list[int]:
    """Latent ids without repeats, at most ``limit`` (a repeat is refused, naming it)."""
    if len(values) > limit:
        raise InvalidArgumentError(f"{field} names {len(values):,} latents; the limit is {limit:,} per call")
    seen: set[int] = set()
    for value in values:
        if value in seen:
            raise InvalidArgumentError(f"{field} names latent {value} twice")
        seen.add(value)
    return list(values)


def check_latents(features: Sequence[int], num_latents: int, sae: str, field: str = "") -> None:
    """Every id below the SAE's number of latents; ``field`` names the request field in the sentence."""
    bad = [f for f in features if f >= num_latents]
    if bad:
        where = f"{field}: " if field else ""
        raise InvalidArgumentError(
            f"{where}latent {bad[0]} is out of range: SAE {shown(sae)} has {num_latents} latents "
            f"(0 to {num_latents - 1})"
        )


def model_name(value: str, field: str) -> str:
    """A model name as sent ("" = the server's default)."""
    if len(value) > MAX_MODEL_CHARS or not value.isprintable():
        raise InvalidArgumentError(f"{field} {shown(value)} is not a model name")
    return value


def domain(value: str, default: str) -> str:
    """What the corpus is, for the LLM; "" means ``default``."""
    if not value:
        return default
    if len(value) > MAX_DOMAIN_CHARS or not value.isprintable() or not value.strip():
        raise InvalidArgumentError(
            f"domain {shown(value)} is not a short description: "
            f"use 1 to {MAX_DOMAIN_CHARS} printable characters"
        )
    return value.strip()
