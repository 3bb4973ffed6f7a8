"""A circuit breaker for calls to a dependency that may be down.

Two counting rules, one class:

* Consecutive (the default, used for the schema registry): after `threshold` failures in a
  row it opens; a success resets the count.
* Windowed (`window_s` set, used per LLM provider deployment): it opens once `threshold`
  failures fall within the last `window_s` seconds, successes in between notwithstanding. A
  busy deployment interleaves successes with failures, and "one success resets everything"
  would keep a half-broken deployment in rotation forever.

Open: calls are refused for a cool-down that doubles on each failed probe (up to
`max_cooldown_s`; set it equal to `base_cooldown_s` for a fixed cool-down). When the
cool-down ends the breaker is half-open: a probe is let through, success closes it, failure
opens it again. `try_acquire` lets only one probe through at a time (concurrent callers);
`allow` lets every caller through while half-open (the registry gate is serial, so it
never needed more).

Time is passed in, so the logic is deterministic and tested without sleeping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class BreakerState(StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """Consecutive- or windowed-failure breaker with exponential cool-down."""

    threshold: int = 3
    base_cooldown_s: float = 0.5
    max_cooldown_s: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    cooldown_s: float = 0.0
    # None: count consecutive failures. Seconds: count failures within this window.
    window_s: float | None = None
    # Whether a half-open probe handed out by try_acquire has not reported back yet.
    probing: bool = False
    _recent: deque[float] = field(default_factory=deque, repr=False)

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

    def try_acquire(self, now: float) -> bool:
        """Whether this caller may call now; while half-open, only one caller at a time.

        A caller that got True must report `success`, `failure` or `abandon`, or the
        half-open breaker refuses everyone else until a later cool-down would have ended.
        """
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self.probing:
            return False
        self.probing = True
        return True

    def abandon(self) -> None:
        """The caller gave up without an answer (cancelled): its probe slot is free again."""
        self.probing = False

    def wait_s(self, now: float) -> float:
        """Seconds until a call may be attempted (0 when allowed)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - now)

    def success(self) -> None:
        """Record a call that reached the dependency: close the breaker.

        Windowed, a success while closed leaves the window alone (failures in the window
        still count); a successful probe starts afresh.
        """
        if self.window_s is None or self.opened_at is not None:
            self._recent.clear()
            self.failures = 0
        self.opened_at = None
        self.cooldown_s = 0.0
        self.probing = False

    def failure(self, now: float) -> None:
        """Record a failed call; opens (or re-opens, longer) the breaker past the threshold."""
        self.probing = False
        if self.window_s is None:
            self.failures += 1
            if self.failures >= self.threshold:
                self._open(now, was_probe=self.opened_at is not None)
            return
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - self.window_s:
            self._recent.popleft()
        self.failures = len(self._recent)
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            self._open(now, was_probe=True)
        elif state is BreakerState.CLOSED and self.failures >= self.threshold:
            self._open(now, was_probe=False)
        # OPEN: a call that started before the breaker opened failed late; the cool-down
        # already running is the answer to it, so it neither extends nor doubles it.

    def _open(self, now: float, *, was_probe: bool) -> None:
        self.cooldown_s = (
            min(self.cooldown_s * 2, self.max_cooldown_s) if was_probe else self.base_cooldown_s
        )
        self.opened_at = now
