"""Steering interventions: what a request may ask for, and the one rule that checks it.

Torch-free, so services without torch (search) check interventions with the same code as sae;
the steering arithmetic itself lives in ``featurelens.sae.steering``.
"""

from featurelens.steering.interventions import (
    MAX_ECHOED_CHARS,
    MAX_INTERVENTIONS,
    MAX_PHRASE_CHARS,
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
    SteerPlan,
    check_interventions,
    check_request_size,
    echo,
    expand_families,
    resolve_targets,
)

__all__ = [
    "MAX_ECHOED_CHARS",
    "MAX_INTERVENTIONS",
    "MAX_PHRASE_CHARS",
    "MAX_STEERED_FEATURES",
    "MAX_STEER_WEIGHT",
    "FamilyIntervention",
    "FamilyMembers",
    "Intervention",
    "InterventionError",
    "PhraseIntervention",
    "PhraseMatch",
    "RequestedIntervention",
    "SteerMode",
    "SteerPlan",
    "check_interventions",
    "check_request_size",
    "echo",
    "expand_families",
    "resolve_targets",
]
