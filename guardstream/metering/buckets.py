"""Token buckets in exact integer units, refilled by the metering record's timestamp.

A level is counted in 1/60 000 of a token: a bucket refilling `per_minute` tokens gains
exactly `per_minute` units per millisecond, so refill never rounds and requests arriving
faster than one unit of refill still accumulate it (milli-tokens would lose the remainder on
every refill and starve slow buckets hit often).

Capacity and rate are not stored: they are read from the tenant's limits on every call, so a
configuration change applies to the next request. Only the level and the time of the last
refill are state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

UNIT = 60_000  # units per token: one minute in milliseconds


@dataclass
class Bucket:
    """A bucket's state: fill level in units of 1/60 000 token (-1: never used, i.e. full)."""

    level: int = -1
    last_ms: int = 0


def refill(b: Bucket, capacity: int, per_minute: int, now_ms: int) -> int:
    """The level at `now_ms` (never above capacity; time never runs backwards)."""
    cap = capacity * UNIT
    if b.level < 0:
        return cap
    return min(cap, b.level + max(0, now_ms - b.last_ms) * per_minute)


def wait_ms(b: Bucket, capacity: int, per_minute: int, need: int, now_ms: int) -> int:
    """Milliseconds from `now_ms` until the bucket holds `need` units (exact).

    Counted from the last refill, as `refill` does, so taking at now + wait succeeds and at
    now + wait - 1 does not.
    """
    return _wait(b, refill(b, capacity, per_minute, now_ms), per_minute, need, now_ms)


def _wait(b: Bucket, level: int, per_minute: int, need: int, now_ms: int) -> int:
    """`wait_ms` given the bucket's `level` at `now_ms` (so a caller refills only once)."""
    if level >= need:
        return 0
    since_last = -(-(need - b.level) // per_minute)
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
        retry = max(retry, _wait(b, level, per_minute, cost * UNIT, now_ms))
    if retry:
        return False, retry
    for (b, _capacity, _per_minute, cost), level in zip(buckets, levels, strict=True):
        b.level = level - cost * UNIT
        b.last_ms = max(now_ms, b.last_ms)
    return True, 0
