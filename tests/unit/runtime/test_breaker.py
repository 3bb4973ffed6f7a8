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


def windowed(threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(
        threshold=threshold, base_cooldown_s=10.0, max_cooldown_s=10.0, window_s=5.0
    )


def test_windowed_opens_on_n_failures_in_the_window_despite_successes() -> None:
    b = windowed()
    b.failure(0.0)
    b.success()  # a success in between does not forgive the failures in the window
    b.failure(1.0)
    assert b.state(1.0) is BreakerState.CLOSED and b.failures == 2
    b.failure(4.0)
    assert b.state(4.0) is BreakerState.OPEN and b.wait_s(4.0) == 10.0


def test_windowed_forgets_failures_older_than_the_window() -> None:
    b = windowed()
    b.failure(0.0)
    b.failure(1.0)
    b.failure(5.5)  # the one at 0.0 is out of the 5 s window
    assert b.state(5.5) is BreakerState.CLOSED and b.failures == 2


def test_windowed_half_open_lets_one_probe_through_and_success_closes() -> None:
    b = windowed(threshold=1)
    b.failure(0.0)
    assert not b.try_acquire(9.9)
    assert b.try_acquire(10.0)  # the probe
    assert not b.try_acquire(10.0)  # a second caller waits for the probe's answer
    b.success()
    assert b.state(10.1) is BreakerState.CLOSED and b.failures == 0
    assert b.try_acquire(10.1) and b.try_acquire(10.1)


def test_windowed_failed_probe_reopens_and_abandoned_probe_frees_the_slot() -> None:
    b = windowed(threshold=2)
    b.failure(0.0)
    b.failure(0.1)
    assert b.try_acquire(10.1)
    b.abandon()
    assert b.try_acquire(10.2)
    b.failure(10.3)
    assert b.state(10.3) is BreakerState.OPEN and b.wait_s(10.3) == 10.0


def test_windowed_late_failure_while_open_does_not_extend_the_cooldown() -> None:
    b = windowed(threshold=1)
    b.failure(0.0)
    b.failure(3.0)  # a call that started before the breaker opened
    assert b.wait_s(3.0) == 7.0
