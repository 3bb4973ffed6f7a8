"""What a tenant has spent, holds and has left right now: the body of `/tenants/{id}/state`.

Pure (no Faust or Kafka): the worker that owns the tenant's metering partition reads the
tenant state from its table and passes it here with the limits in force and the time.
Nothing is written: bucket levels are refilled to `now` arithmetically, exactly as the meter
would refill them for a request arriving at that instant.

Budgets are shown for the UTC day and month containing `now` (the periods a request at
`now` would be judged against). Reservations past their TTL still count as reserved until
the tenant's next metering record releases them: the view reports the state, not a guess.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from guardstream.config.tenants import Limits
from guardstream.metering.buckets import UNIT, Bucket, refill
from guardstream.metering.periods import Period, period_keys
from guardstream.metering.step import TenantState

TENANT_STATE_PATH = "/tenants/{tenant_id}/state"


class UnknownTenantError(LookupError):
    """The tenant is not configured (and refused) and no worker has ever metered it."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(
            f"tenant '{tenant_id}' is not configured and has no metering state "
            "(unknown tenants are rejected); add it with `guardstream tenants apply FILE`"
        )
        self.tenant_id = tenant_id


def iso_ms(ts_ms: int) -> str:
    """An epoch-millisecond timestamp as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _period(key: str, period: Period | None, limit: int | None) -> dict[str, Any]:
    # The limit in force now, not the one stored in the period: the meter applies the
    # current configuration to the next request, so "remaining" must use it too.
    p = period or Period(limit=limit)
    remaining = None if limit is None else max(0, limit - p.charged - p.reserved)
    return {
        "period": key.split(":", 1)[1],
        "limit_micros": limit,
        "charged_micros": p.charged,
        "reserved_micros": p.reserved,
        "released_micros": p.released,
        "remaining_micros": remaining,
        "alerts_crossed_pct": sorted(p.alerts),
    }


def _bucket(b: Bucket, capacity: int | None, per_minute: int | None, now_ms: int) -> dict[str, Any]:
    if capacity is None or per_minute is None:  # limits unknown: no capacity to refill towards
        return {"level": None, "capacity": None, "per_minute": None}
    # Whole tokens/requests, rounded down: what a request arriving now could take.
    return {
        "level": refill(b, capacity, per_minute, now_ms) // UNIT,
        "capacity": capacity,
        "per_minute": per_minute,
    }


def tenant_view(
    tenant_id: str,
    state: TenantState | None,
    limits: Limits | None,
    now_ms: int,
    *,
    last_metered_ms: int | None = None,
    answered_by: str | None = None,
) -> dict[str, Any]:
    """The live view of one tenant as a JSON-ready dict.

    `state` is None when the tenant has never been metered (then everything is zero and
    every bucket full); `limits` is None when the tenant is not configured and unknown
    tenants are refused. Raises `UnknownTenantError` when both are None: there is nothing
    to show, and the caller answers 404.
    """
    if state is None and limits is None:
        raise UnknownTenantError(tenant_id)
    st = state or TenantState()
    day, month = period_keys(now_ms)
    daily = limits.daily_budget_micros if limits else None
    monthly = limits.monthly_budget_micros if limits else None
    return {
        "tenant_id": tenant_id,
        "configured": bool(limits and limits.configured),
        "tier": limits.tier if limits else None,
        "metered": state is not None,
        "as_of": {
            "now_ms": now_ms,
            "now": iso_ms(now_ms),
            "last_metered_ms": last_metered_ms,
            "last_metered": None if last_metered_ms is None else iso_ms(last_metered_ms),
        },
        "budget": {
            "daily": _period(day, st.periods.get(day), daily),
            "monthly": _period(month, st.periods.get(month), monthly),
        },
        # Across every period still holding money (a reservation made yesterday and not yet
        # settled is held in yesterday's day period and this month's).
        "reserved_total_micros": st.held_micros(),
        "rate": {
            "requests": _bucket(
                st.requests,
                limits.burst_requests if limits else None,
                limits.requests_per_minute if limits else None,
                now_ms,
            ),
            "tokens": _bucket(
                st.tokens,
                limits.burst_tokens if limits else None,
                limits.tokens_per_minute if limits else None,
                now_ms,
            ),
        },
        "answered_by": answered_by,
    }
