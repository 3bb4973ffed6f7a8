"""Budget periods (UTC day and month) and their running totals, in micro-dollars."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

DAY_MS = 86_400_000


@dataclass
class Period:
    """Totals of one budget period.

    `reserved` is what outstanding reservations hold now; `charged` and `released` only grow.
    Every reservation ends as charged + released (an overrun charges more, and is audited).
    """

    limit: int | None
    reserved: int = 0
    charged: int = 0
    released: int = 0
    alerts: list[int] = field(default_factory=list)  # threshold percentages already alerted
    forecast: bool = False


def period_keys(ts_ms: int) -> tuple[str, str]:
    """The UTC day and month keys of a timestamp: ("d:2026-11-23", "m:2026-11").

    Computed once per UTC day (called for every metering record): a day holds no other keys.
    """
    if type(ts_ms) is int:
        return _day_keys(ts_ms // DAY_MS)
    return _period_keys(ts_ms)


@lru_cache(maxsize=64)
def _day_keys(day: int) -> tuple[str, str]:
    return _period_keys(day * DAY_MS)


def _period_keys(ts_ms: float) -> tuple[str, str]:
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return f"d:{dt:%Y-%m-%d}", f"m:{dt:%Y-%m}"


@lru_cache(maxsize=256)
def period_span_ms(key: str) -> tuple[int, int]:
    """Start (epoch ms) and length (ms) of a period key (parsed once per key: `strptime`)."""
    kind, value = key.split(":", 1)
    if kind == "d":
        start = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        return int(start.timestamp() * 1000), DAY_MS
    start = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
    nxt = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return int(start.timestamp() * 1000), int((nxt - start).total_seconds() * 1000)
