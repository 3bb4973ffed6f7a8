"""The metering step's fast paths give exactly what the straightforward code gives.

Stored bytes, ids and period keys must not change when the step gets faster: each helper is
compared with the plain standard-library code it replaces, over generated inputs, and a
generated record sequence is run twice, once with every helper swapped back for its plain
version, with every output compared.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardstream.metering import periods
from guardstream.metering import step as metering
from guardstream.metering.buckets import UNIT, Bucket, refill, take_all, wait_ms
from guardstream.metering.keys import state_key
from guardstream.metering.periods import Period
from guardstream.records import Position

from .test_metering import CATALOG, T0, limits, req, usage

DAY = 86_400_000
# datetime's range, a day inside either end
TS = st.integers(min_value=-62_135_596_800_000 + DAY, max_value=253_402_300_799_999 - DAY)


def plain_period_keys(ts_ms: int) -> tuple[str, str]:
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return f"d:{dt:%Y-%m-%d}", f"m:{dt:%Y-%m}"


# The parse itself, without the cache in front of it.
plain_period_span_ms = periods.period_span_ms.__wrapped__


def plain_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def outcome(f: Any, *args: Any) -> tuple[Any, ...]:
    """What a call gives: its value, or its error (both versions must fail alike)."""
    try:
        return ("value", f(*args))
    except Exception as exc:
        return ("error", type(exc), str(exc))


@given(TS)
def test_period_keys_are_the_plain_ones(ts: int) -> None:
    assert periods.period_keys(ts) == plain_period_keys(ts)


@given(st.integers(min_value=-719_000, max_value=2_932_000), st.sampled_from((-1, 0, 1)))
def test_period_keys_at_day_boundaries(day: int, delta: int) -> None:
    ts = day * DAY + delta
    assert periods.period_keys(ts) == plain_period_keys(ts)
    assert periods.period_keys(ts) == plain_period_keys(ts)  # cached


@given(TS)
def test_period_spans_are_the_plain_ones(ts: int) -> None:
    for key in plain_period_keys(ts):  # (the years 1-999 and 9999 fail, in both)
        assert outcome(periods.period_span_ms, key) == outcome(plain_period_span_ms, key)
        assert outcome(periods.period_span_ms, key) == outcome(plain_period_span_ms, key)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_dumps_is_json_dumps(value: Any) -> None:
    assert metering.dumps(value) == plain_dumps(value)


def plain_take_all(buckets: list[tuple[Bucket, int, int, int]], now_ms: int) -> tuple[bool, int]:
    levels = []
    retry = 0
    for b, capacity, per_minute, cost in buckets:
        if cost > capacity:
            return False, -1
        level = refill(b, capacity, per_minute, now_ms)
        levels.append(level)
        retry = max(retry, wait_ms(b, capacity, per_minute, cost * UNIT, now_ms))
    if retry:
        return False, retry
    for (b, _capacity, _per_minute, cost), level in zip(buckets, levels, strict=True):
        b.level = level - cost * UNIT
        b.last_ms = max(now_ms, b.last_ms)
    return True, 0


BUCKET_CALLS = st.lists(
    st.tuples(
        st.integers(0, 5_000),  # ms since the previous call (or before it, below)
        st.booleans(),  # time ran backwards
        st.lists(st.tuples(st.integers(1, 200), st.integers(1, 1_000), st.integers(0, 250))),
    ),
    max_size=30,
)


@given(st.integers(1, 3), BUCKET_CALLS)
def test_take_all_is_the_plain_one(n: int, calls: list[Any]) -> None:
    fast = [Bucket() for _ in range(n)]
    plain = [Bucket() for _ in range(n)]
    now = T0
    for gap, back, spec in calls:
        now += -gap if back else gap
        args = [(c, per_minute, cost) for c, per_minute, cost in spec[:n]]
        assert take_all([(b, *a) for b, a in zip(fast, args, strict=False)], now) == (
            plain_take_all([(b, *a) for b, a in zip(plain, args, strict=False)], now)
        )
        assert fast == plain


INT = st.integers(min_value=-(2**62), max_value=2**62)
PERIOD = st.builds(
    Period,
    st.none() | INT,
    INT,
    INT,
    INT,
    st.lists(st.sampled_from((50, 80, 100)), unique=True),
    st.booleans(),
)
STATE = st.builds(
    metering.TenantState,
    INT,
    INT,
    st.builds(Bucket, INT, INT),
    st.builds(Bucket, INT, INT),
    st.dictionaries(st.text(), PERIOD, max_size=4),
    INT,
    INT,
    INT,
)


@given(STATE)
def test_state_bytes_are_the_plain_ones(state: metering.TenantState) -> None:
    raw = state.to_bytes()
    assert raw == plain_dumps(
        [
            metering.STATE_FORMAT,
            state.last_partition,
            state.last_offset,
            [state.requests.level, state.requests.last_ms],
            [state.tokens.level, state.tokens.last_ms],
            {
                k: [p.limit, p.reserved, p.charged, p.released, p.alerts, p.forecast]
                for k, p in state.periods.items()
            },
            [state.q_gc, state.q_exp, state.q_next],
        ]
    )
    assert metering.TenantState.from_bytes(raw) == state


TENANTS = ("t1", "t2", "t3")
LIMITS = {
    "t1": limits(tenant_id="t1", burst_requests=5, requests_per_minute=60),
    "t2": limits(tenant_id="t2", daily_budget_micros=2_000, monthly_budget_micros=50_000),
    "t3": None,  # unknown
}
MONTH_END = 1_796_083_000_000  # 2026-12-01T00:36:40Z, less than an hour into December


def _run(spec: list[tuple[int, int, int, int, bool]], t_start: int) -> list[Any]:
    """Every output of a record sequence applied as the meter agent applies it."""
    table: dict[bytes, bytes] = {}
    outputs: list[Any] = []
    ts = t_start
    sent: list[tuple[str, str]] = []
    for n, (t, gap_s, kind, tokens, replay) in enumerate(spec):
        tenant = TENANTS[t]
        ts += gap_s * 1000
        if kind == 0 or not sent:
            record = req(n, tokens=tokens, idem=f"i{tokens % 4}" if tokens % 3 == 0 else None)
            sent.append((tenant, record["request_id"]))
        elif kind == 1:  # a usage report for some request (maybe another tenant's)
            _, rid = sent[tokens % len(sent)]
            record = usage(n, rid, tokens, tokens // 2)
        else:  # a resent request id
            record = req(n, rid=sent[tokens % len(sent)][1], tokens=tokens)
        record["tenant_id"] = tenant
        for pos in [Position(0, n, ts)] * (2 if replay else 1):
            stored = table.get(state_key(tenant))
            s = metering.step(
                metering.TenantState.from_bytes(stored),
                record,
                pos,
                LIMITS[tenant],
                CATALOG,
                table.get,
                reservation_ttl_ms=20 * 60 * 1000,
                dedup_window_ms=60 * 60 * 1000,
            )
            for k, v in s.writes.items():
                if v is None:
                    table.pop(k, None)
                else:
                    table[k] = v
            raw = s.state.to_bytes() if s.changed else None
            if raw is not None:
                table[state_key(tenant)] = raw
            outputs.append((s.changed, s.decision, s.audits, s.writes, raw, s.tier))
    outputs.append(sorted(table.items()))
    return outputs


SPEC = st.lists(
    st.tuples(
        st.integers(0, len(TENANTS) - 1),
        st.sampled_from((0, 1, 5, 60, 700, 3600, 20_000)),
        st.integers(0, 2),
        st.integers(1, 3000),
        st.booleans(),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=40, deadline=None)
@given(SPEC, st.sampled_from((T0, MONTH_END - 3_600_000)))
def test_a_sequence_gives_what_the_plain_helpers_give(
    spec: list[tuple[int, int, int, int, bool]], t_start: int
) -> None:
    fast = _run(spec, t_start)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(metering, "dumps", plain_dumps)
        mp.setattr(metering, "period_keys", plain_period_keys)
        mp.setattr(metering, "period_span_ms", plain_period_span_ms)
        plain = _run(spec, t_start)
    assert fast == plain
