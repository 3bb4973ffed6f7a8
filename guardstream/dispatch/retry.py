"""Retry decisions for calls to a provider deployment: what is retried, and how long to wait.

Pure functions; the random source is passed in, so tests seed it.

Outcome classes:

* retried on the same deployment (up to `max_attempts`), then the next one: RATE_LIMITED,
  SERVER_ERROR, TIMEOUT, BROKEN_STREAM, UNREACHABLE - passing trouble at the provider;
* the next deployment at once: MALFORMED - a deployment answering garbage is likely to do it
  again, another one may not - and any outcome this module does not know (a newer client);
* final for the request: REJECTED (the request is refused; another deployment of the same
  model would refuse it too), CONTEXT_LENGTH (handled by the router: the model's
  `context_fallback`, if any) and STOPPED (an answer our output guardrail cut off).

Every outcome of the first two classes counts as a failure for the deployment's breaker;
those of the third prove the deployment is up (it answered) and count as successes.
"""

from __future__ import annotations

import random

from guardstream.config.providers import RetryPolicy
from guardstream.dispatch.attempt import Outcome

RETRY_HERE = frozenset(
    {
        Outcome.RATE_LIMITED,
        Outcome.SERVER_ERROR,
        Outcome.TIMEOUT,
        Outcome.BROKEN_STREAM,
        Outcome.UNREACHABLE,
    }
)
# STOPPED: the deployment answered and our output guardrail hung up; the answer stands.
FINAL = frozenset({Outcome.REJECTED, Outcome.CONTEXT_LENGTH, Outcome.STOPPED})


def counts_against_deployment(outcome: str) -> bool:
    """Whether this outcome is the deployment's fault (a breaker failure)."""
    return outcome != Outcome.OK and outcome not in FINAL


def backoff_s(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """The wait after failed try number `attempt` (1-based): full jitter.

    A uniform draw in [0, min(max_backoff_s, base_backoff_s * 2^(attempt-1))]: the
    exponential ceiling spaces retries out, the full jitter spreads the retries of many
    requests that failed together (a provider blip) instead of sending them back in step.
    """
    ceiling = min(policy.max_backoff_s, policy.base_backoff_s * 2 ** (attempt - 1))
    return rng.uniform(0.0, ceiling)


def retry_delay_s(
    outcome: str,
    attempt: int,
    policy: RetryPolicy,
    rng: random.Random,
    retry_after_s: float | None = None,
) -> float | None:
    """How long to wait before trying the same deployment again; None: do not, move on.

    None when the outcome is not retried in place, when `attempt` was the policy's last, or
    when the provider's retry-after is longer than `max_backoff_s` (waiting that long in
    place would hold the request while another deployment may answer now). Otherwise the
    larger of the retry-after and the jittered backoff: a retry sooner than the provider
    asked only earns another 429.
    """
    if outcome not in RETRY_HERE or attempt >= policy.max_attempts:
        return None
    delay = backoff_s(attempt, policy, rng)
    if retry_after_s is not None:
        if retry_after_s > policy.max_backoff_s:
            return None
        delay = max(delay, retry_after_s)
    return min(delay, policy.max_backoff_s)
