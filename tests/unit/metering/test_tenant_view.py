"""The live tenant view (`/tenants/{id}/state`) as a pure function of state, limits and time."""

from __future__ import annotations

from typing import Any

import pytest

from guardstream.config.catalog import load_catalog
from guardstream.config.settings import Settings
from guardstream.config.tenants import Limits
from guardstream.metering.buckets import UNIT, Bucket
from guardstream.metering.money import apply_multiplier, cost_micros
from guardstream.metering.periods import Period, period_keys
from guardstream.metering.step import TenantState, step
from guardstream.metering.view import UnknownTenantError, tenant_view
from guardstream.records import Position

CATALOG = load_catalog(Settings().model_catalog)
T0 = 1_795_400_000_000  # 2026-11-23T02:13:20Z
DAY, MONTH = period_keys(T0)


def limits(**kw: Any) -> Limits:
    base: dict[str, Any] = dict(
        tenant_id="t1",
        tier="standard",
        requests_per_minute=60,
        tokens_per_minute=6000,
        burst_requests=10,
        burst_tokens=1000,
        daily_budget_micros=1000,
        monthly_budget_micros=10_000,
        cost_multiplier_bp=10_000,
        policy={},
        configured=True,
    )
    return Limits(**{**base, **kw})


def record(n: int, kind: str = "REQUEST", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": kind,
        "request_id": f"r{n}",
        "request_source": "/s",
        "tenant_id": "t1",
        "ingress_topic": "in",
        "ingress_partition": 0,
        "ingress_offset": n,
        "model": "gpt-4o-mini",
        "idempotency_key": None,
        "estimated_input_tokens": 100,
        "max_tokens": 50,
        "findings": {},
        "injection_score": 0,
        "sanitized_request": None,
        "traceparent": None,
        "usage_input_tokens": None,
        "usage_output_tokens": None,
    }
    return {**base, **kw}


def test_a_configured_tenant_never_metered_shows_zeros_and_full_buckets() -> None:
    view = tenant_view("t1", None, limits(), T0, answered_by="http://w:1")
    assert view["metered"] is False and view["configured"] is True
    assert view["as_of"]["last_metered_ms"] is None and view["as_of"]["now_ms"] == T0
    daily = view["budget"]["daily"]
    assert daily == {
        "period": DAY.split(":")[1],
        "limit_micros": 1000,
        "charged_micros": 0,
        "reserved_micros": 0,
        "released_micros": 0,
        "remaining_micros": 1000,
        "alerts_crossed_pct": [],
    }
    assert view["budget"]["monthly"]["remaining_micros"] == 10_000
    assert view["rate"]["requests"] == {"level": 10, "capacity": 10, "per_minute": 60}
    assert view["rate"]["tokens"] == {"level": 1000, "capacity": 1000, "per_minute": 6000}
    assert view["answered_by"] == "http://w:1"


def test_an_unknown_tenant_never_seen_is_an_error_naming_the_fix() -> None:
    with pytest.raises(UnknownTenantError, match="tenants apply"):
        tenant_view("ghost", None, None, T0)


def test_a_removed_tenant_with_state_still_shows_its_money_without_limits() -> None:
    state = TenantState(
        periods={
            DAY: Period(limit=500, reserved=7, charged=3),
            MONTH: Period(limit=None, reserved=7, charged=3),
        }
    )
    view = tenant_view("t1", state, None, T0)
    assert view["configured"] is False and view["tier"] is None
    assert view["budget"]["daily"]["charged_micros"] == 3
    assert view["budget"]["daily"]["remaining_micros"] is None  # no limit in force
    assert view["rate"]["tokens"] == {"level": None, "capacity": None, "per_minute": None}


def test_money_matches_what_the_meter_did_after_requests_and_usage() -> None:
    lim = limits()
    spec = CATALOG.models["gpt-4o-mini"]
    state, table = TenantState(), {}
    for n in range(3):
        s = step(state, record(n), Position(0, n, T0 + n), lim, CATALOG, table.get)
        assert s.decision is not None and s.decision["outcome"] == "ADMITTED"
        table.update({k: v for k, v in s.writes.items() if v is not None})
        state = s.state
    usage = record(3, "USAGE", request_id="r0", usage_input_tokens=40, usage_output_tokens=10)
    state = step(state, usage, Position(0, 3, T0 + 3), lim, CATALOG, table.get).state

    reserve = cost_micros(100, spec.input_micros_per_mtok) + cost_micros(
        50, spec.output_micros_per_mtok
    )
    charge = cost_micros(40, spec.input_micros_per_mtok) + cost_micros(
        10, spec.output_micros_per_mtok
    )
    view = tenant_view("t1", state, lim, T0 + 3, last_metered_ms=T0 + 3)
    daily = view["budget"]["daily"]
    assert daily["charged_micros"] == charge
    assert daily["reserved_micros"] == 2 * reserve
    assert daily["released_micros"] == reserve - charge
    assert daily["remaining_micros"] == 1000 - charge - 2 * reserve
    assert view["reserved_total_micros"] == 2 * reserve
    assert view["as_of"]["last_metered"] == "2026-11-23T02:13:20.003+00:00"
    # Three requests of 150 tokens taken within 3 ms; refill is 100 tokens a second.
    assert view["rate"]["requests"]["level"] == 10 - 3
    assert view["rate"]["tokens"]["level"] == 1000 - 3 * 150


def test_remaining_is_never_negative_and_uses_the_limit_in_force_now() -> None:
    # The period was created under a higher limit; the configuration has since been lowered.
    state = TenantState(periods={DAY: Period(limit=5000, reserved=300, charged=900)})
    view = tenant_view("t1", state, limits(daily_budget_micros=1000), T0)
    assert view["budget"]["daily"]["remaining_micros"] == 0
    assert view["budget"]["daily"]["limit_micros"] == 1000
    unlimited = tenant_view("t1", state, limits(daily_budget_micros=None), T0)
    assert unlimited["budget"]["daily"]["remaining_micros"] is None


def test_alerts_crossed_are_reported_in_order() -> None:
    state = TenantState(periods={DAY: Period(limit=1000, charged=900, alerts=[80, 50])})
    daily = tenant_view("t1", state, limits(), T0)["budget"]["daily"]
    assert daily["alerts_crossed_pct"] == [50, 80]


def test_only_the_periods_containing_now_count_as_today_and_this_month() -> None:
    yesterday, _ = period_keys(T0 - 86_400_000)
    held = {
        yesterday: Period(limit=1000, reserved=40, charged=500),
        MONTH: Period(limit=10_000, reserved=40, charged=500),
    }
    state = TenantState(periods=held)
    view = tenant_view("t1", state, limits(), T0)
    assert view["budget"]["daily"]["charged_micros"] == 0  # a new UTC day
    assert view["budget"]["monthly"]["charged_micros"] == 500
    assert view["reserved_total_micros"] == 40  # yesterday's reservation is still held


@pytest.mark.parametrize(
    ("level_tokens", "last_ms", "now_ms", "expected"),
    [
        (0, T0, T0, 0),
        (0, T0, T0 + 9, 0),  # 6000 tokens a minute: 1 token per 10 ms, rounded down
        (0, T0, T0 + 10, 1),
        (0, T0, T0 + 599, 59),
        (990, T0, T0 + 60_000, 1000),  # never above capacity
        (5, T0, T0 - 1_000, 5),  # a clock behind the last refill never drains the bucket
    ],
)
def test_bucket_level_is_refilled_to_now_without_changing_the_state(
    level_tokens: int, last_ms: int, now_ms: int, expected: int
) -> None:
    state = TenantState(tokens=Bucket(level_tokens * UNIT, last_ms))
    before = state.to_bytes()
    assert tenant_view("t1", state, limits(), now_ms)["rate"]["tokens"]["level"] == expected
    assert state.to_bytes() == before


def test_cost_multiplier_is_in_the_state_not_recomputed() -> None:
    # The view reports what the meter charged (multiplier included), not a fresh estimate.
    state = TenantState(periods={DAY: Period(limit=1000, charged=apply_multiplier(100, 9000))})
    assert tenant_view("t1", state, limits(), T0)["budget"]["daily"]["charged_micros"] == 90
