"""Budget periods (UTC day and month) and their running totals, in micro-dollars."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


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
    """The UTC day and month keys of a timestamp: ("d:2026-11-23", "m:2026-11")."""
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return f"d:{dt:%Y-%m-%d}", f"m:{dt:%Y-%m}"


def period_span_ms(key: str) -> tuple[int, int]:
    """Start (epoch ms) and length (ms) of a period key."""
    kind, value = key.split(":", 1)
    if kind == "d":
        start = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        return int(start.timestamp() * 1000), 86_400_000
    start = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
    nxt = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return int(start.timestamp() * 1000), int((nxt - start).total_seconds() * 1000)
