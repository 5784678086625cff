"""What tokens cost (the price table) and how a job's budget holds money for calls in flight."""

from __future__ import annotations

import math

import pytest

from featurelens.interp.budget import (
    Budget,
    BudgetExhausted,
    estimate_call_usd,
    estimate_prompt_tokens,
)
from featurelens.interp.pricing import DEFAULT_PRICES, ModelPrice, PriceTable


def test_a_call_costs_its_tokens_at_the_models_price_per_million() -> None:
    # gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens.
    assert DEFAULT_PRICES.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert DEFAULT_PRICES.cost("gpt-4o-mini", 2_000, 500) == pytest.approx((2_000 * 0.15 + 500 * 0.60) / 1e6)
    assert DEFAULT_PRICES.cost("gpt-5", 1_000_000, 1_000_000) == pytest.approx(11.25)


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("GPT-4o-Mini", "gpt-4o-mini"),
    ],
)
def test_a_dated_snapshot_costs_what_its_model_costs(model: str, priced_as: str) -> None:
    assert DEFAULT_PRICES.price(model) == DEFAULT_PRICES[priced_as]


def test_a_model_is_never_priced_as_a_different_model_that_shares_its_prefix() -> None:
    table = PriceTable({"gpt-4o": ModelPrice(2.5, 10.0)})

    assert not table.is_priced("gpt-4o-mini")
    assert table.cost("gpt-4o-mini", 1000, 1000) == 0.0


def test_a_local_model_costs_nothing_and_says_it_is_not_priced() -> None:
    assert not DEFAULT_PRICES.is_priced("llama3.1:8b")
    assert DEFAULT_PRICES.cost("llama3.1:8b", 10_000, 10_000) == 0.0
    assert DEFAULT_PRICES.is_priced("gpt-4.1-mini")


def test_settings_add_prices_and_replace_known_ones_without_changing_the_defaults() -> None:
    table = DEFAULT_PRICES.with_prices({"llama3.1:8b": (0.02, 0.05), "gpt-4o-mini": ModelPrice(0.075, 0.30)})

    assert table.cost("llama3.1:8b", 1_000_000, 1_000_000) == pytest.approx(0.07)
    assert table["gpt-4o-mini"] == ModelPrice(0.075, 0.30)
    assert DEFAULT_PRICES["gpt-4o-mini"] == ModelPrice(0.15, 0.60)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ModelPrice(-1.0, 1.0), "input_per_mtok"),
        (lambda: ModelPrice(1.0, math.inf), "output_per_mtok"),
        (lambda: PriceTable({"": ModelPrice(1, 1)}), "empty"),
        (lambda: PriceTable({"m": (1.0,)}), "input_per_mtok, output_per_mtok"),  # type: ignore[dict-item]
        (lambda: DEFAULT_PRICES.cost("gpt-4o", -5, 0), "negative"),
    ],
)
def test_bad_prices_and_token_counts_are_refused(make: object, field: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=field):
        make()


def test_a_prompt_is_estimated_at_four_characters_a_token_plus_a_little_per_message() -> None:
    messages = [{"role": "system", "content": "x" * 400}, {"role": "user", "content": "y" * 401}]

    assert estimate_prompt_tokens(messages) == 100 + 101 + 2 * 4
    # The estimate assumes the whole max_tokens is answered: it is an upper bound.
    assert estimate_call_usd(DEFAULT_PRICES, "gpt-4o-mini", messages, 100) == pytest.approx(
        DEFAULT_PRICES.cost("gpt-4o-mini", 209, 100)
    )


def test_a_reservation_that_would_pass_the_limit_is_refused_and_stops_the_budget() -> None:
    budget = Budget(1.0)
    first = budget.reserve(0.4)
    budget.settle(first, 0.5)
    budget.reserve(0.3)  # in flight

    with pytest.raises(BudgetExhausted) as refused:
        budget.reserve(0.25)

    assert refused.value.spent_usd == pytest.approx(0.5)
    assert refused.value.reserved_usd == pytest.approx(0.3)
    assert budget.exhausted
    # Once refused, the job stops: even a call that would fit is refused.
    with pytest.raises(BudgetExhausted):
        budget.reserve(0.01)


def test_a_reservation_that_exactly_reaches_the_limit_is_allowed() -> None:
    budget = Budget(1.0)

    budget.reserve(0.5)
    budget.reserve(0.5)

    assert budget.remaining == 0.0
    assert not budget.exhausted


def test_settling_counts_the_actual_cost_and_releasing_frees_the_money() -> None:
    budget = Budget(1.0)
    settled, released = budget.reserve(0.3), budget.reserve(0.6)

    budget.settle(settled, 0.1)
    budget.release(released)
    budget.release(released)

    assert budget.spent == pytest.approx(0.1)
    assert budget.reserved == 0.0
    assert budget.remaining == pytest.approx(0.9)
    with pytest.raises(ValueError, match="already settled"):
        budget.settle(settled, 0.1)


def test_without_a_limit_spending_is_counted_and_never_refused() -> None:
    budget = Budget(None)
    for _ in range(3):
        budget.settle(budget.reserve(1e6), 2.0)

    assert budget.spent == pytest.approx(6.0)
    assert budget.remaining is None


def test_free_calls_fit_a_zero_budget() -> None:
    budget = Budget(0.0)

    budget.settle(budget.reserve(0.0), 0.0)

    assert not budget.exhausted


@pytest.mark.parametrize("limit", [-1.0, math.nan, math.inf])
def test_a_budget_must_be_a_finite_number_of_dollars(limit: float) -> None:
    with pytest.raises(ValueError, match="limit_usd"):
        Budget(limit)
