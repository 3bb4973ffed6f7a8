"""Integer money: micro-dollars, prices per million tokens, multipliers in basis points."""

from __future__ import annotations

from typing import Protocol

BASIS_POINTS = 10_000
PER_MILLION = 1_000_000


def cost_micros(tokens: int, micros_per_million_tokens: int) -> int:
    """Cost of `tokens` at a per-million price, rounded up so nothing is under-charged.

    The same function prices estimates (reservations) and actual usage (charges).
    """
    if tokens < 0 or micros_per_million_tokens < 0:
        raise ValueError("tokens and prices are never negative")
    return -(-tokens * micros_per_million_tokens // PER_MILLION)


class Prices(Protocol):
    """A model's per-million prices (`ModelSpec` of the catalog is one)."""

    @property
    def input_micros_per_mtok(self) -> int: ...
    @property
    def output_micros_per_mtok(self) -> int: ...
    @property
    def cached_input_micros_per_mtok(self) -> int | None: ...


def token_cost_micros(
    prices: Prices, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> int:
    """Cost of one request's tokens at a model's prices: the one place tokens become money.

    Providers report cached tokens as part of the prompt tokens and reasoning tokens as part
    of the completion tokens, so neither is ever added on top: the prompt splits into
    `cached_tokens` at the cached price (the input price when the model has none) and the
    rest at the input price, and reasoning tokens are simply completion tokens at the output
    price. Each part is rounded up (`cost_micros`); with no cached tokens this is exactly the
    input cost plus the output cost.
    """
    if not 0 <= cached_tokens <= prompt_tokens:
        raise ValueError("cached tokens are part of the prompt tokens: 0 <= cached <= prompt")
    cached_price = prices.cached_input_micros_per_mtok
    if cached_price is None:
        cached_price = prices.input_micros_per_mtok
    return (
        cost_micros(prompt_tokens - cached_tokens, prices.input_micros_per_mtok)
        + cost_micros(cached_tokens, cached_price)
        + cost_micros(completion_tokens, prices.output_micros_per_mtok)
    )


def apply_multiplier(micros: int, basis_points: int) -> int:
    """`micros` scaled by `basis_points` / 10 000, rounded up."""
    return -(-micros * basis_points // BASIS_POINTS)
