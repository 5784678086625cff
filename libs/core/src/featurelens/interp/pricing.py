"""What LLM tokens cost, in US dollars, by model.

``DEFAULT_PRICES`` holds OpenAI's list prices per million tokens (standard tier, no cached-input
discount: an upper bound) for the models a labelling job is likely to use. A dated snapshot
("gpt-4o-mini-2024-07-18") costs what its model costs. Models the table does not know (a local
Ollama, vLLM or llama.cpp model) cost 0; ``is_priced`` tells the caller, which should say so once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

# The suffix of a dated snapshot: "-2024-07-18" or "-0613".
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")
_PER = 1_000_000


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million input (prompt) and output (completion) tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} is {value!r}; a price is a number of dollars per million tokens")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} is {value}; a price is a finite number of dollars, 0 or more")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / _PER


class PriceTable(Mapping[str, ModelPrice]):
    """Prices by model name (case-insensitive), with dated snapshots priced as their model."""

    def __init__(self, prices: Mapping[str, ModelPrice | tuple[float, float]]) -> None:
        table: dict[str, ModelPrice] = {}
        for model, price in prices.items():
            name = model.strip().lower()
            if not name:
                raise ValueError("a price table's model name is empty")
            if not isinstance(price, ModelPrice):
                if len(price) != 2:
                    raise ValueError(
                        f"the price of {model!r} is {price!r}; give (input_per_mtok, output_per_mtok)"
                    )
                price = ModelPrice(price[0], price[1])
            table[name] = price
        self._prices = table

    def __getitem__(self, model: str) -> ModelPrice:
        price = self.price(model)
        if price is None:
            raise KeyError(model)
        return price

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def price(self, model: str) -> ModelPrice | None:
        """The model's price; a dated snapshot's is its model's; None for a model not in the table."""
        name = model.strip().lower()
        found = self._prices.get(name)
        if found is None:
            base = _SNAPSHOT.sub("", name)
            if base != name:
                found = self._prices.get(base)
        return found

    def is_priced(self, model: str) -> bool:
        """Whether the table knows what the model costs (if not, its calls are counted as free)."""
        return self.price(model) is not None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for one call's tokens; 0 for a model not in the table."""
        if prompt_tokens < 0 or completion_tokens < 0:
            raise ValueError(
                f"token counts are {prompt_tokens} and {completion_tokens}; they cannot be negative"
            )
        price = self.price(model)
        return 0.0 if price is None else price.cost(prompt_tokens, completion_tokens)

    def with_prices(self, prices: Mapping[str, ModelPrice | tuple[float, float]]) -> PriceTable:
        """This table with ``prices`` added (or replacing the same models' prices)."""
        merged: dict[str, ModelPrice | tuple[float, float]] = dict(self._prices)
        merged.update({model.strip().lower(): price for model, price in prices.items()})
        return PriceTable(merged)


DEFAULT_PRICES = PriceTable(
    {
        "gpt-4o-mini": ModelPrice(0.15, 0.60),
        "gpt-4o": ModelPrice(2.50, 10.00),
        "gpt-4.1": ModelPrice(2.00, 8.00),
        "gpt-4.1-mini": ModelPrice(0.40, 1.60),
        "gpt-4.1-nano": ModelPrice(0.10, 0.40),
        "gpt-5": ModelPrice(1.25, 10.00),
        "gpt-5-mini": ModelPrice(0.25, 2.00),
        "gpt-5-nano": ModelPrice(0.05, 0.40),
        "o4-mini": ModelPrice(1.10, 4.40),
    }
)
