"""Every code a completion can carry when it has no answer, with what it means.

A public, stable contract like the reason codes (`guardstream.reasons`): clients branch on
them, and the README's table lists them.
"""

from __future__ import annotations

from enum import StrEnum


class CompletionCode(StrEnum):
    """Why a completion is BLOCKED or FAILED."""

    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    PROVIDER_REJECTED = "PROVIDER_REJECTED"
    TIMEOUT = "TIMEOUT"
    INTERRUPTED = "INTERRUPTED"
    OUTPUT_PII_BLOCKED = "OUTPUT_PII_BLOCKED"
    OUTPUT_TOXICITY_BLOCKED = "OUTPUT_TOXICITY_BLOCKED"


DESCRIPTIONS: dict[CompletionCode, str] = {
    CompletionCode.PROVIDER_UNAVAILABLE: (
        "Every deployment of the model failed (5xx, 429, broken streams, unreachable) or "
        "had its circuit breaker open, after retries and fallbacks. The reservation is "
        "released; a call cut short (a broken stream, a timeout) is charged at the usage "
        "estimate, up to `max_tokens`, since the provider may bill what it generated."
    ),
    CompletionCode.PROVIDER_REJECTED: (
        "A deployment refused the request itself (a 4xx such as a bad key, or a prompt "
        "over the context window with no `context_fallback`): another try would fail too."
    ),
    CompletionCode.TIMEOUT: (
        "The last call made ran past its deployment's `timeout_s`, and no other deployment "
        "answered. Usage is charged at the estimate, up to `max_tokens`, for what may have been "
        "generated."
    ),
    CompletionCode.INTERRUPTED: (
        "A worker died while this request's call was in flight. guardstream never calls a "
        "provider twice for one request, so the call is not repeated; the provider may "
        "have answered and billed it, so it is charged at its reservation (the estimate "
        "for `max_tokens`). Send the request again with a new id to get an answer."
    ),
    CompletionCode.OUTPUT_PII_BLOCKED: (
        "The answer holds PII or a secret the tenant's policy blocks (`pii: block`); it is "
        "withheld (a stream is stopped where it was caught) and the detail names the kind, "
        "never the value. Usage is charged at the estimate, up to `max_tokens`: the provider "
        "billed what it generated."
    ),
    CompletionCode.OUTPUT_TOXICITY_BLOCKED: (
        "The answer reached the tenant's toxicity threshold (`toxicity: block`); it is "
        "withheld (a stream is stopped where it was caught) and the detail gives the score. "
        "Usage is charged at the estimate, up to `max_tokens`."
    ),
}
