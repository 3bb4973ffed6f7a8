"""Token buckets in integer milli-tokens, refilled by the metering record's timestamp.

Capacity and rate are not stored: they are read from the tenant's limits on every call, so a
configuration change applies to the next request. Only the level and the time of the last
refill are state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MILLI = 1000
MS_PER_MINUTE = 60_000


@dataclass
class Bucket:
    """A bucket's state: fill level in milli-tokens (-1: never used, i.e. full)."""

    level: int = -1
    last_ms: int = 0


def refill(b: Bucket, capacity: int, per_minute: int, now_ms: int) -> int:
    """The level at `now_ms` (never above capacity; time never runs backwards)."""
    cap = capacity * MILLI
    if b.level < 0:
        return cap
    elapsed = max(0, now_ms - b.last_ms)
    # milli-tokens gained = elapsed_ms * per_minute * 1000 / 60_000
    return min(cap, b.level + elapsed * per_minute // 60)


def wait_ms(b: Bucket, capacity: int, per_minute: int, need: int, now_ms: int) -> int:
    """Milliseconds from `now_ms` until the bucket holds `need` milli-tokens (exact).

    Counted from the last refill, as `refill` does, so taking at now + wait succeeds and at
    now + wait - 1 does not.
    """
    if refill(b, capacity, per_minute, now_ms) >= need:
        return 0
    since_last = -(-(need - b.level) * 60 // per_minute)
    return max(0, b.last_ms + since_last - now_ms)


def take_all(buckets: Sequence[tuple[Bucket, int, int, int]], now_ms: int) -> tuple[bool, int]:
    """Take `cost` from every (bucket, capacity, per_minute, cost), all or none.

    Returns (allowed, retry_after_ms): retry_after_ms is 0 when allowed, the wait until every
    bucket could pay when not, and -1 when some cost exceeds its bucket's capacity (waiting
    would never help).
    """
    levels = []
    retry = 0
    for b, capacity, per_minute, cost in buckets:
        if cost > capacity:
            return False, -1
        level = refill(b, capacity, per_minute, now_ms)
        levels.append(level)
        retry = max(retry, wait_ms(b, capacity, per_minute, cost * MILLI, now_ms))
    if retry:
        return False, retry
    for (b, _capacity, _per_minute, cost), level in zip(buckets, levels, strict=True):
        b.level = level - cost * MILLI
        b.last_ms = max(now_ms, b.last_ms)
    return True, 0
