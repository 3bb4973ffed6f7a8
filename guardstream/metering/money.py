"""Integer money: micro-dollars, prices per million tokens, multipliers in basis points."""

from __future__ import annotations

BASIS_POINTS = 10_000
PER_MILLION = 1_000_000


def cost_micros(tokens: int, micros_per_million_tokens: int) -> int:
    """Cost of `tokens` at a per-million price, rounded up so nothing is under-charged.

    The same function prices estimates (reservations) and actual usage (charges).
    """
    if tokens < 0 or micros_per_million_tokens < 0:
        raise ValueError("tokens and prices are never negative")
    return -(-tokens * micros_per_million_tokens // PER_MILLION)


def apply_multiplier(micros: int, basis_points: int) -> int:
    """`micros` scaled by `basis_points` / 10 000, rounded up."""
    return -(-micros * basis_points // BASIS_POINTS)
