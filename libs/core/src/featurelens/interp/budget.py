"""A dollar budget for one labelling job, checked before every LLM call.

Before a call the client reserves what the call could cost at most (its prompt at about four
characters a token, and ``max_tokens`` of answer); after it, the reservation is settled with what
the response's usage says it cost. A reservation that would take spent + reserved past the limit
raises ``BudgetExhausted`` before anything is sent, so a job stops with its finished work kept.
Once refused, the budget refuses every later reservation too: the job stops instead of
squeezing in cheaper calls. One job's tasks share a budget on one event loop; it has no lock.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from featurelens.interp.pricing import PriceTable

#: Characters per token assumed when estimating a prompt's size before sending it.
CHARS_PER_TOKEN = 4
#: Tokens a chat message costs beyond its content (role and separators).
_TOKENS_PER_MESSAGE = 4


class BudgetExhausted(Exception):  # noqa: N818 - the name the job and the service know
    """The next LLM call could take the job past its budget; nothing was sent."""

    def __init__(self, limit_usd: float, spent_usd: float, reserved_usd: float, estimate_usd: float) -> None:
        super().__init__(
            f"the budget of ${limit_usd:.4f} would be passed: ${spent_usd:.4f} spent, "
            f"${reserved_usd:.4f} held by calls in flight, the next call could cost ${estimate_usd:.4f}"
        )
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.estimate_usd = estimate_usd


@dataclass(frozen=True)
class Reservation:
    """Money held for one call in flight."""

    id: int
    amount_usd: float


class Budget:
    """At most ``limit_usd`` dollars for one job; None means no limit (the spending is still counted)."""

    def __init__(self, limit_usd: float | None) -> None:
        if limit_usd is not None and (not math.isfinite(limit_usd) or limit_usd < 0):
            raise ValueError(f"limit_usd is {limit_usd}; a budget is a finite number of dollars, 0 or more")
        self.limit_usd = limit_usd
        self._spent = 0.0
        self._held: dict[int, float] = {}
        self._ids = itertools.count(1)
        self._exhausted = False

    @property
    def spent(self) -> float:
        """Dollars that settled calls cost."""
        return self._spent

    @property
    def reserved(self) -> float:
        """Dollars held by calls in flight."""
        return sum(self._held.values())

    @property
    def remaining(self) -> float | None:
        """Dollars neither spent nor held; None without a limit."""
        if self.limit_usd is None:
            return None
        return max(0.0, self.limit_usd - self._spent - self.reserved)

    @property
    def exhausted(self) -> bool:
        """True once a reservation has been refused."""
        return self._exhausted

    def reserve(self, estimate_usd: float) -> Reservation:
        """Hold ``estimate_usd`` for a call; raises ``BudgetExhausted`` when that would pass the limit."""
        if not math.isfinite(estimate_usd) or estimate_usd < 0:
            raise ValueError(
                f"estimate_usd is {estimate_usd}; a cost is a finite number of dollars, 0 or more"
            )
        if self.limit_usd is not None:
            reserved = self.reserved
            if self._exhausted or self._spent + reserved + estimate_usd > self.limit_usd:
                self._exhausted = True
                raise BudgetExhausted(self.limit_usd, self._spent, reserved, estimate_usd)
        reservation = Reservation(next(self._ids), estimate_usd)
        self._held[reservation.id] = estimate_usd
        return reservation

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace a reservation by what the call cost (which may be more or less than held)."""
        if not math.isfinite(actual_usd) or actual_usd < 0:
            raise ValueError(f"actual_usd is {actual_usd}; a cost is a finite number of dollars, 0 or more")
        if self._held.pop(reservation.id, None) is None:
            raise ValueError(f"reservation {reservation.id} was already settled or released")
        self._spent += actual_usd

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation whose call failed before costing anything (idempotent)."""
        self._held.pop(reservation.id, None)


def estimate_prompt_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """A prompt's tokens, estimated from its characters (about four a token) before sending it."""
    characters = sum(len(str(message.get("content") or "")) for message in messages)
    return math.ceil(characters / CHARS_PER_TOKEN) + _TOKENS_PER_MESSAGE * len(messages)


def estimate_call_usd(
    prices: PriceTable, model: str, messages: Sequence[Mapping[str, str]], max_tokens: int
) -> float:
    """The most a call should cost: its estimated prompt, and ``max_tokens`` of answer."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens is {max_tokens}; a call needs room for at least one token of answer")
    return prices.cost(model, estimate_prompt_tokens(messages), max_tokens)
