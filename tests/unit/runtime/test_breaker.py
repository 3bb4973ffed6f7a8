"""The registry circuit breaker, driven by explicit time."""

from __future__ import annotations

from guardstream.runtime.breaker import BreakerState, CircuitBreaker


def test_opens_after_threshold_and_probes_after_cooldown() -> None:
    b = CircuitBreaker(threshold=3, base_cooldown_s=1.0, max_cooldown_s=4.0)
    for t in (0.0, 0.1):
        b.failure(t)
        assert b.state(t) is BreakerState.CLOSED
    b.failure(0.2)
    assert b.state(0.5) is BreakerState.OPEN and not b.allow(0.5)
    assert b.wait_s(0.5) == 0.7
    assert b.state(1.2) is BreakerState.HALF_OPEN and b.allow(1.2)


def test_failed_probe_doubles_cooldown_up_to_cap() -> None:
    b = CircuitBreaker(threshold=1, base_cooldown_s=1.0, max_cooldown_s=3.0)
    b.failure(0.0)
    assert b.cooldown_s == 1.0
    b.failure(1.0)  # the half-open probe failed
    assert b.cooldown_s == 2.0 and b.state(2.9) is BreakerState.OPEN
    b.failure(3.0)
    b.failure(6.0)
    assert b.cooldown_s == 3.0


def test_success_closes() -> None:
    b = CircuitBreaker(threshold=1)
    b.failure(0.0)
    b.success()
    assert b.state(0.0) is BreakerState.CLOSED and b.failures == 0
