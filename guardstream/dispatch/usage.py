"""A dispatched call's usage: the provider's counts, or a documented estimate, and its price.

Providers count cached prompt tokens inside `prompt_tokens` and reasoning tokens inside
`completion_tokens`. `Usage` keeps that convention and pricing goes through the one
pricing function (`metering.money.token_cost_micros`), which splits the prompt into cached
and uncached parts and never adds either subset on top.

The estimate, when the provider reported no usage or the stream broke:

* prompt tokens: guardstream's own estimate for the model's family
  (`guardrails.tokens.estimate_prompt_tokens`), the figure the reservation was made with,
  which errs high;
* completion tokens, call complete: the same estimator over the text received (it adds a
  message's chat overhead, so it errs high by a few tokens);
* completion tokens, call cut short (stream broken, timed out, or stopped by our output
  guardrail): `max_tokens`, not the text received. The provider went
  on generating after the break and bills what it generated, which we never saw; only
  `max_tokens` bounds it. Charging the bound is what was reserved, so the budget is never
  under-charged, at the cost of over-charging a broken request by what was not generated.
  (The received-text estimate is kept when it is larger: max_tokens may be absent.)
* cached and reasoning tokens: 0 - no discount without the provider's word, and reasoning
  tokens are completion tokens either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from guardstream.config.catalog import ModelSpec
from guardstream.dispatch.attempt import CallResult, Outcome, TokenUsage
from guardstream.guardrails.tokens import Messages, estimate_prompt_tokens
from guardstream.metering.money import token_cost_micros


@dataclass(frozen=True)
class Usage:
    """A call's tokens (cached within prompt, reasoning within completion)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False  # True: guardstream's estimate, the provider reported none

    @classmethod
    def reported(cls, usage: TokenUsage) -> Usage:
        """The provider's counts, made consistent: negatives become 0, and a cached or
        reasoning count larger than the total it is part of is cut to that total (a provider
        bug must not make a subset cost more than the whole)."""
        prompt = max(usage.prompt_tokens, 0)
        completion = max(usage.completion_tokens, 0)
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=min(max(usage.cached_tokens, 0), prompt),
            reasoning_tokens=min(max(usage.reasoning_tokens, 0), completion),
        )


def estimate_usage(
    messages: Messages,
    spec: ModelSpec,
    text: str,
    *,
    complete: bool,
    max_tokens: int | None,
) -> Usage:
    """guardstream's estimate of a call's usage (the rule is in the module docstring)."""
    prompt = estimate_prompt_tokens(messages, spec.family)
    received = estimate_prompt_tokens([("assistant", text)], spec.family)
    completion = received if complete else max(received, max_tokens or 0)
    return Usage(prompt, completion, estimated=True)


# Calls that may have generated more than was received: estimated up to max_tokens.
CUT_SHORT = frozenset({Outcome.BROKEN_STREAM, Outcome.TIMEOUT, Outcome.STOPPED})


def call_usage(
    result: CallResult | None, messages: Messages, spec: ModelSpec, max_tokens: int | None
) -> Usage:
    """The usage to report for a call: the provider's when it gave one, else the estimate.

    A call cut short - a broken stream, a timeout, or a stream our output guardrail stopped
    (`CUT_SHORT`) - is estimated even when the provider sent usage so far: that usage stops
    at the cut, while the provider bills what it went on generating after it. Any other
    failure, or no call at all (every breaker open), is zero usage: the provider refused
    before generating, and the request's reservation is released in full.
    """
    if result is None or (result.outcome != Outcome.OK and result.outcome not in CUT_SHORT):
        return Usage(0, 0)
    broken = result.outcome in CUT_SHORT
    if result.usage is not None and not broken:
        return Usage.reported(result.usage)
    return estimate_usage(messages, spec, result.text, complete=not broken, max_tokens=max_tokens)


def usage_cost_micros(usage: Usage, spec: ModelSpec) -> int:
    """The usage's price in micro-dollars (before any tenant multiplier), rounded up."""
    return token_cost_micros(
        spec, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
    )
