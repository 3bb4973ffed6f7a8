"""A circuit breaker for calls to a dependency that may be down (the schema registry).

Closed: calls go through. After `threshold` consecutive failures it opens and refuses calls
for a cool-down that doubles on each failed probe (up to a cap); when the cool-down ends
one probe is let through (half-open): success closes it, failure opens it again.
Time is passed in, so the logic is deterministic and tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """Consecutive-failure breaker with exponential cool-down."""

    threshold: int = 3
    base_cooldown_s: float = 0.5
    max_cooldown_s: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    cooldown_s: float = 0.0

    def state(self, now: float) -> BreakerState:
        """The state at time `now` (monotonic seconds)."""
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self, now: float) -> bool:
        """Whether a call may be attempted now."""
        return self.state(now) is not BreakerState.OPEN

    def wait_s(self, now: float) -> float:
        """Seconds until a call may be attempted (0 when allowed)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - now)

    def success(self) -> None:
        """Record a call that reached the dependency: close the breaker."""
        self.failures = 0
        self.opened_at = None
        self.cooldown_s = 0.0

    def failure(self, now: float) -> None:
        """Record a failed call; opens (or re-opens, longer) the breaker past the threshold."""
        self.failures += 1
        if self.failures >= self.threshold:
            was_probe = self.opened_at is not None
            self.cooldown_s = (
                min(self.cooldown_s * 2, self.max_cooldown_s) if was_probe else self.base_cooldown_s
            )
            self.opened_at = now
