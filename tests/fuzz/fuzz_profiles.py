"""The fuzz suite's Hypothesis profiles and its count of what it sent.

- ``fuzz-short`` runs in the default ``make test``: derandomized (the same examples every run, so
  CI is reproducible), no shrinking (a regression fails fast and shows the first failing request);
- ``fuzz-long`` runs under ``-m slow``: random examples each run, shrunk to a small failing one.

Neither keeps a database (``database=None``: nothing is written into the repository) and neither
has a per-example deadline (each call has its own gRPC deadline). The profiles are used
explicitly by the tests (``settings.get_profile``), never loaded globally.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, settings

SHORT = "fuzz-short"
LONG = "fuzz-long"
#: How the kit marks a status sentence it cut to its bound (``featurelens.kit.echo.bounded``).
CUT_MARKER = "... (cut from "
#: Examples per RPC of typed (descriptor-built) messages; mutated raw bytes get half as many.
SHORT_EXAMPLES = 50
LONG_EXAMPLES = 300

settings.register_profile(
    SHORT,
    max_examples=SHORT_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
settings.register_profile(
    LONG,
    max_examples=LONG_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


@dataclass
class Tally:
    """Calls and request messages sent, by profile (``regressions`` for the explicit cases)."""

    calls: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    rpcs: dict[str, set[str]] = field(default_factory=dict)
    #: How the calls ended, by profile and RPC: shows whether fuzzing gets past validation (OK answers).
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)

    #: Sentences the kit had to cut (a service wrote one longer than the bound), by RPC, with one
    #: example each: acceptable answers, but a sign that the service echoes too much.
    cut: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, profile: str, rpc_id: str, messages: int, outcome: str, details: str = "") -> None:
        self.calls[profile] += 1
        self.messages[profile] += messages
        self.rpcs.setdefault(profile, set()).add(rpc_id)
        self.outcomes.setdefault(f"{profile} {rpc_id}", Counter())[outcome] += 1
        if CUT_MARKER in details:
            count, example = self.cut.get(rpc_id, (0, details[:160]))
            self.cut[rpc_id] = (count + 1, example)
