"""Retry decisions: full-jitter backoff, retry-after, which outcomes are retried."""

from __future__ import annotations

import random

from guardstream.config.providers import RetryPolicy
from guardstream.dispatch.attempt import Outcome
from guardstream.dispatch.retry import backoff_s, counts_against_deployment, retry_delay_s

POLICY = RetryPolicy(max_attempts=4, base_backoff_s=0.5, max_backoff_s=3.0)


def test_full_jitter_stays_under_the_exponential_ceiling_and_the_cap() -> None:
    rng = random.Random(1)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)):
        draws = [backoff_s(attempt, POLICY, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.9  # spread over the whole range, not a fixed step


def test_seeded_random_makes_backoff_reproducible() -> None:
    a = [backoff_s(2, POLICY, random.Random(5)) for _ in range(3)]
    b = [backoff_s(2, POLICY, random.Random(5)) for _ in range(3)]
    assert a == b


def test_retry_after_is_a_floor_and_a_longer_one_moves_on() -> None:
    rng = random.Random(1)
    assert retry_delay_s(Outcome.RATE_LIMITED, 1, POLICY, rng, retry_after_s=2.5) == 2.5
    assert retry_delay_s(Outcome.RATE_LIMITED, 1, POLICY, rng, retry_after_s=3.0) == 3.0
    assert retry_delay_s(Outcome.RATE_LIMITED, 1, POLICY, rng, retry_after_s=3.5) is None


def test_which_outcomes_are_retried_in_place() -> None:
    rng = random.Random(1)
    for outcome in (
        Outcome.RATE_LIMITED,
        Outcome.SERVER_ERROR,
        Outcome.TIMEOUT,
        Outcome.BROKEN_STREAM,
    ):
        assert retry_delay_s(outcome, 1, POLICY, rng) is not None, outcome
        assert retry_delay_s(outcome, 4, POLICY, rng) is None  # the policy's last try
    for outcome in (Outcome.MALFORMED, Outcome.REJECTED, Outcome.CONTEXT_LENGTH, "NEW_THING"):
        assert retry_delay_s(outcome, 1, POLICY, rng) is None, outcome


def test_only_the_deployments_faults_count_for_its_breaker() -> None:
    assert counts_against_deployment(Outcome.SERVER_ERROR)
    assert counts_against_deployment(Outcome.MALFORMED)
    assert counts_against_deployment("NEW_THING")
    for outcome in (Outcome.OK, Outcome.REJECTED, Outcome.CONTEXT_LENGTH):
        assert not counts_against_deployment(outcome)
