"""Usage of a dispatched call: reported or estimated, and priced without double counting."""

from __future__ import annotations

import pytest

from guardstream.config.catalog import ModelSpec
from guardstream.dispatch.attempt import Outcome
from guardstream.dispatch.usage import Usage, call_usage, estimate_usage, usage_cost_micros
from guardstream.guardrails.tokens import estimate_prompt_tokens
from guardstream.metering.money import cost_micros, token_cost_micros
from tests.unit.dispatch.fakes import FakeUsage, Res

SPEC = ModelSpec(
    family="gpt",
    context_window=128_000,
    max_output_tokens=16_384,
    input_micros_per_mtok=2_500_000,
    output_micros_per_mtok=10_000_000,
    cached_input_micros_per_mtok=1_250_000,
)
MESSAGES = [("system", "be brief"), ("user", "what is Kafka? " * 20)]


def test_cached_and_reasoning_tokens_are_never_counted_twice() -> None:
    # 1M prompt tokens of which 400k cached; 200k completion of which 150k reasoning.
    usage = Usage(1_000_000, 200_000, cached_tokens=400_000, reasoning_tokens=150_000)
    assert usage_cost_micros(usage, SPEC) == (
        600_000 * 2_500_000 // 1_000_000  # uncached prompt at the input price
        + 400_000 * 1_250_000 // 1_000_000  # cached prompt at the cached price
        + 200_000 * 10_000_000 // 1_000_000  # completion, reasoning included, at output
    )


def test_no_cached_price_means_no_discount() -> None:
    plain = SPEC.model_copy(update={"cached_input_micros_per_mtok": None})
    with_cache = Usage(1000, 10, cached_tokens=900)
    assert usage_cost_micros(with_cache, plain) == usage_cost_micros(Usage(1000, 10), plain)
    assert usage_cost_micros(Usage(1000, 10), plain) == cost_micros(1000, 2_500_000) + cost_micros(
        10, 10_000_000
    )


def test_each_part_is_rounded_up() -> None:
    assert usage_cost_micros(Usage(1, 1, cached_tokens=1), SPEC) == 2 + 10


def test_reported_usage_is_made_consistent() -> None:
    usage = Usage.reported(FakeUsage(100, 10, cached_tokens=500, reasoning_tokens=-3))
    assert usage == Usage(100, 10, cached_tokens=100, reasoning_tokens=0)


def test_provider_usage_is_used_when_given() -> None:
    result = Res(Outcome.OK, "hi", FakeUsage(50, 5, cached_tokens=20, reasoning_tokens=2))
    assert call_usage(result, MESSAGES, SPEC, max_tokens=100) == Usage(50, 5, 20, 2)


def test_estimate_without_usage_counts_the_text_received() -> None:
    text = "Kafka is a distributed log. " * 10
    usage = call_usage(Res(Outcome.OK, text), MESSAGES, SPEC, max_tokens=1000)
    assert usage.estimated and usage.cached_tokens == 0
    assert usage.prompt_tokens == estimate_prompt_tokens(MESSAGES, "gpt")
    assert len(text) // 4 <= usage.completion_tokens < 1000


def test_broken_stream_is_estimated_at_max_tokens_even_with_partial_usage() -> None:
    result = Res(Outcome.BROKEN_STREAM, "Kafka is", FakeUsage(40, 3))
    usage = call_usage(result, MESSAGES, SPEC, max_tokens=512)
    assert usage.estimated and usage.completion_tokens == 512
    assert usage.prompt_tokens == estimate_prompt_tokens(MESSAGES, "gpt")


def test_broken_stream_without_max_tokens_falls_back_to_the_text() -> None:
    usage = estimate_usage(MESSAGES, SPEC, "x" * 400, complete=False, max_tokens=None)
    assert usage.completion_tokens >= 100


def test_failed_or_missing_call_has_no_usage() -> None:
    assert call_usage(None, MESSAGES, SPEC, 100) == Usage(0, 0)
    assert call_usage(Res(Outcome.SERVER_ERROR), MESSAGES, SPEC, 100) == Usage(0, 0)
    assert usage_cost_micros(Usage(0, 0), SPEC) == 0


def test_the_pricing_function_refuses_cached_tokens_outside_the_prompt() -> None:
    with pytest.raises(ValueError, match="part of the prompt"):
        token_cost_micros(SPEC, 10, 0, cached_tokens=11)
