"""The metering step: buckets, budgets, duplicates and replays, as pure logic.

Property tests (hypothesis) drive random request/usage sequences through `step` with an
in-memory dict standing in for the per-request table (plain data, not a fake service).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from guardstream.config.catalog import load_catalog
from guardstream.config.settings import Settings
from guardstream.config.tenants import Limits
from guardstream.metering.buckets import UNIT, Bucket, take_all
from guardstream.metering.keys import reservation_key
from guardstream.metering.money import apply_multiplier, cost_micros
from guardstream.metering.periods import period_keys, period_span_ms
from guardstream.metering.step import TenantState, step
from guardstream.records import Position

CATALOG = load_catalog(Settings().model_catalog)
T0 = 1_795_400_000_000  # 2026-11-23


def limits(**kw: Any) -> Limits:
    base: dict[str, Any] = dict(
        tenant_id="t1",
        tier="standard",
        requests_per_minute=600,
        tokens_per_minute=10**6,
        burst_requests=100,
        burst_tokens=10**6,
        daily_budget_micros=10**9,
        monthly_budget_micros=10**10,
        cost_multiplier_bp=10_000,
        policy={},
        configured=True,
    )
    return Limits(**{**base, **kw})


def req(
    n: int,
    *,
    tokens: int = 100,
    max_tokens: int = 50,
    rid: str | None = None,
    source: str = "/s",
    idem: str | None = None,
) -> dict[str, Any]:
    return {
        "kind": "REQUEST",
        "request_id": rid or f"r{n}",
        "request_source": source,
        "tenant_id": "t1",
        "ingress_topic": "in",
        "ingress_partition": 0,
        "ingress_offset": n,
        "ingress_timestamp": T0,
        "traceparent": None,
        "idempotency_key": idem,
        "model": "gpt-4o-mini",
        "catalog_version": 1,
        "estimated_input_tokens": tokens,
        "max_tokens": max_tokens,
        "findings": {},
        "injection_score": 0,
        "sanitized_request": None,
        "usage_input_tokens": None,
        "usage_output_tokens": None,
    }


def usage(n: int, rid: str, inp: int, out: int) -> dict[str, Any]:
    r = req(n, rid=rid)
    r.update(kind="USAGE", usage_input_tokens=inp, usage_output_tokens=out)
    return r


class Log:
    """Applies records in order like the agent does, keeping the per-request table."""

    def __init__(self, lim: Limits) -> None:
        self.state = TenantState()
        self.table: dict[bytes, bytes] = {}
        self.lim = lim
        self.offset = 0
        self.audits: list[dict[str, Any]] = []

    def apply(self, record: dict[str, Any], ts: int) -> Any:
        s = step(
            self.state, record, Position(0, self.offset, ts), self.lim, CATALOG, self.table.get
        )
        for k, v in s.writes.items():
            if v is None:
                self.table.pop(k, None)
            else:
                self.table[k] = v
        self.state = TenantState.from_bytes(s.state.to_bytes())  # as stored
        self.audits += s.audits
        self.offset += 1
        return s


def test_money_rounds_up_and_stays_integer() -> None:
    assert cost_micros(1, 150_000) == 1  # 0.15 µ$ → 1 µ$: never under-charge
    assert cost_micros(1_000_000, 150_000) == 150_000
    assert apply_multiplier(101, 9000) == 91
    assert isinstance(cost_micros(7, 3), int)


@given(
    st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 30)), max_size=60),
    st.integers(1, 50),
    st.integers(1, 600),
)
def test_bucket_never_negative_nor_over_capacity(
    steps: list[tuple[int, int]], capacity: int, per_minute: int
) -> None:
    b = Bucket()
    now = T0
    for dt, cost in steps:
        now += dt
        take_all([(b, capacity, per_minute, cost)], now)
        assert b.level == -1 or 0 <= b.level <= capacity * UNIT


@given(st.integers(1, 20), st.integers(1, 600), st.integers(1, 20))
def test_retry_after_is_exact(capacity: int, per_minute: int, cost: int) -> None:
    b = Bucket()
    while take_all([(b, capacity, per_minute, 1)], T0)[0]:
        pass
    cost = min(cost, capacity)
    ok, retry = take_all([(b, capacity, per_minute, cost)], T0)
    assert not ok and retry > 0
    before = Bucket(b.level, b.last_ms)
    assert not take_all([(before, capacity, per_minute, cost)], T0 + retry - 1)[0]
    assert take_all([(b, capacity, per_minute, cost)], T0 + retry)[0]


@given(
    st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 5)), max_size=80),
    st.integers(1, 30),
    st.integers(1, 120),
)
def test_bucket_admits_exactly_capacity_plus_refill(
    steps: list[tuple[int, int]], capacity: int, per_minute: int
) -> None:
    # Whatever the spacing of requests, what is admitted never exceeds the burst plus the
    # refill over the elapsed time, and refill is never lost to rounding: a request that the
    # exact arithmetic allows is admitted.
    # Reference: a level refilled at every step, whether or not anything is taken.
    b = Bucket()
    now, admitted, ref = T0, 0, capacity * UNIT
    for dt, cost in steps:
        now += dt
        ref = min(capacity * UNIT, ref + dt * per_minute)
        ok, _ = take_all([(b, capacity, per_minute, cost)], now)
        assert ok == (cost * UNIT <= ref)
        if ok:
            ref -= cost * UNIT
            admitted += cost
        assert admitted * UNIT <= capacity * UNIT + (now - T0) * per_minute


def test_slow_bucket_hit_often_still_refills() -> None:
    # 1 token a minute, asked every 59 ms: milli-token rounding would never refill.
    b = Bucket()
    assert take_all([(b, 1, 1, 1)], T0)[0]
    now, granted = T0, 0
    while now < T0 + 60_000:
        now += 59
        granted += take_all([(b, 1, 1, 1)], now)[0]
    assert granted == 1


def test_cost_above_burst_is_never_retryable() -> None:
    assert take_all([(Bucket(), 10, 60, 11)], T0) == (False, -1)


def test_all_or_nothing_across_buckets() -> None:
    a, b = Bucket(), Bucket()
    ok, _ = take_all([(a, 5, 60, 1), (b, 5, 60, 6)], T0)
    assert ok is False and a.level == -1  # the first bucket was not debited


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["req", "use", "dup"]),
            st.integers(0, 40_000),
            st.integers(1, 4000),
            st.integers(0, 120_000),
        ),
        max_size=40,
    ),
    st.integers(10_000, 3_000_000),
)
def test_budget_invariants(ops: list[tuple[str, int, int, int]], budget: int) -> None:
    log = Log(limits(daily_budget_micros=budget, monthly_budget_micros=budget * 3))
    ts = T0
    admitted: dict[str, tuple[int, int]] = {}
    for i, (op, tokens, out, dt) in enumerate(ops):
        ts += dt
        if op == "req" or (op == "dup" and not admitted):
            s = log.apply(req(i, tokens=tokens, max_tokens=min(out, 16000)), ts)
            if s.decision["outcome"] == "ADMITTED":
                admitted[s.decision["request_id"]] = (tokens, min(out, 16000))
        elif op == "dup":
            rid = sorted(admitted)[i % len(admitted)]
            s = log.apply(req(i, rid=rid), ts)
            assert s.decision["outcome"] == "REJECTED"
        else:
            rid = sorted(admitted)[i % len(admitted)] if admitted else "nope"
            used_in, used_out = admitted.get(rid, (0, 0))
            log.apply(usage(i, rid, used_in // 2, used_out // 2), ts)  # within the reservation
        for key, p in log.state.periods.items():
            assert p.reserved >= 0 and p.charged >= 0 and p.released >= 0
            if p.limit is not None:
                assert p.reserved + p.charged <= p.limit, key  # never over budget
    # Audit replay reproduces totals to the micro-dollar.
    reserved = sum(a["amount_micros"] for a in log.audits if a["kind"] == "RESERVE")
    charged = sum(a["amount_micros"] for a in log.audits if a["kind"] == "CHARGE")
    released = sum(a["amount_micros"] for a in log.audits if a["kind"] in ("RELEASE", "EXPIRE"))
    outstanding = log.state.held_micros()
    assert reserved == charged + released + outstanding  # reserved = charged + released (+ held)


def test_replay_of_an_applied_offset_changes_nothing_and_repeats_the_decision() -> None:
    log = Log(limits())
    first = log.apply(req(0), T0)
    before = log.state.to_bytes()
    again = step(log.state, req(0), Position(0, 0, T0 + 999), log.lim, CATALOG, log.table.get)
    assert again.decision == first.decision and again.audits == first.audits
    assert not again.changed and again.state.to_bytes() == before


def test_redelivered_ingress_record_is_identical_but_a_resend_is_duplicate() -> None:
    log = Log(limits())
    first = log.apply(req(7, rid="a"), T0)
    # The ingest stage forwarded the same ingress record again (new metering offset).
    redelivered = log.apply(req(7, rid="a"), T0 + 10)
    assert redelivered.decision == first.decision
    # A client resent event id "a" in a new ingress record.
    resend = log.apply(req(8, rid="a"), T0 + 20)
    assert resend.decision["reasons"][0]["code"] == "DUPLICATE"
    assert resend.decision["duplicate_of"] == first.decision["decision_id"]
    # Same idempotency key under a new event id: duplicate too.
    log.apply(req(9, rid="b", idem="k1"), T0 + 30)
    assert log.apply(req(10, rid="c", idem="k1"), T0 + 40).decision["reasons"][0]["code"] == (
        "DUPLICATE"
    )
    # After the window the key is free again.
    later = log.apply(req(11, rid="a"), T0 + 25 * 3600 * 1000)
    assert later.decision["outcome"] == "ADMITTED"


def test_rejection_is_not_remembered_as_a_duplicate() -> None:
    log = Log(limits(burst_requests=1, requests_per_minute=1))
    assert log.apply(req(0, rid="x"), T0).decision["outcome"] == "ADMITTED"
    limited = log.apply(req(1, rid="y"), T0 + 1)
    assert limited.decision["reasons"][0]["code"] == "RATE_LIMITED"
    assert limited.decision["retry_after_ms"] == 60_000 - 1
    retried = log.apply(req(2, rid="y"), T0 + 60_000)
    assert retried.decision["outcome"] == "ADMITTED"


def test_same_inputs_same_decisions() -> None:
    records = [req(i, tokens=1000 * i, max_tokens=100) for i in range(30)]
    a, b = Log(limits(daily_budget_micros=5000)), Log(limits(daily_budget_micros=5000))
    da = [a.apply(r, T0 + i * 500).decision for i, r in enumerate(records)]
    db = [b.apply(r, T0 + i * 500).decision for i, r in enumerate(records)]
    assert da == db
    assert any(d["reasons"] and d["reasons"][0]["code"] == "BUDGET_EXCEEDED" for d in da)


def test_usage_settles_once_and_unknown_is_flagged() -> None:
    log = Log(limits())
    admitted = log.apply(req(0, tokens=1000, max_tokens=1000), T0).decision
    log.apply(usage(1, "r0", 500, 200), T0 + 1)
    log.apply(usage(2, "r0", 500, 200), T0 + 2)
    log.apply(usage(3, "ghost", 1, 1), T0 + 3)
    kinds = [a["kind"] for a in log.audits]
    assert kinds.count("CHARGE") == 1
    assert "USAGE_DUPLICATE" in kinds and "USAGE_UNKNOWN" in kinds
    charge = next(a for a in log.audits if a["kind"] == "CHARGE")["amount_micros"]
    release = next(a for a in log.audits if a["kind"] == "RELEASE")["amount_micros"]
    assert charge == cost_micros(500, 150_000) + cost_micros(200, 600_000)
    assert charge + release == admitted["cost_estimate_micros"]


def test_unsettled_reservation_expires_and_is_released() -> None:
    log = Log(limits())
    est = log.apply(req(0), T0).decision["cost_estimate_micros"]
    log.apply(req(1), T0 + 16 * 60 * 1000)  # past the 15 min TTL
    expired = [a for a in log.audits if a["kind"] == "EXPIRE"]
    assert [(a["request_id"], a["amount_micros"]) for a in expired] == [("r0", est)]


def test_thresholds_alert_once_per_period_and_roll_over() -> None:
    log = Log(limits(daily_budget_micros=1000, monthly_budget_micros=None))
    for i in range(12):
        log.apply(req(i, tokens=1000, max_tokens=0), T0 + i)  # 150 µ$ each
    alerts = [a["detail"] for a in log.audits if a["kind"] == "ALERT_THRESHOLD"]
    assert alerts == ["50% of 1000 µ$", "80% of 1000 µ$"]
    start, length = period_span_ms(period_keys(T0)[0])
    log.apply(req(99, tokens=1000, max_tokens=0), start + length + 1)  # next UTC day
    assert period_keys(start + length + 1)[0] in log.state.periods


def test_leap_day_and_month_end_periods() -> None:
    ts = 1_835_395_200_000  # 2028-02-29T00:00:00Z
    assert period_keys(ts) == ("d:2028-02-29", "m:2028-02")
    start, length = period_span_ms("m:2028-02")
    assert length == 29 * 86_400_000
    assert period_keys(start + length) == ("d:2028-03-01", "m:2028-03")


def test_unknown_tenant_is_rejected() -> None:
    s = step(TenantState(), req(0), Position(0, 0, T0), None, CATALOG, {}.get)
    assert s.decision is not None and s.decision["reasons"][0]["code"] == "UNKNOWN_TENANT"


def test_crash_between_entry_write_and_state_write_reapplies_identically() -> None:
    log = Log(limits())
    log.apply(req(0), T0)
    before = TenantState.from_bytes(log.state.to_bytes())
    # Record 1 is applied: its entries reach the table, then the worker dies before the
    # tenant state is written; after restart the state is `before` and record 1 replays.
    first = step(
        TenantState.from_bytes(before.to_bytes()),
        req(1),
        Position(0, 1, T0 + 5),
        log.lim,
        CATALOG,
        log.table.get,
    )
    for k, v in first.writes.items():
        if v is not None:
            log.table[k] = v
    again = step(
        TenantState.from_bytes(before.to_bytes()),
        req(1),
        Position(0, 1, T0 + 5),
        log.lim,
        CATALOG,
        log.table.get,
    )
    assert again.changed, "the replay must be applied to the state it never reached"
    assert again.decision == first.decision and again.audits == first.audits
    assert again.decision is not None and again.decision["outcome"] == "ADMITTED"
    held = json.loads(again.writes[reservation_key("t1", "r1")] or b"")
    assert held["s"] == "held" and again.state.held_micros() == before.held_micros() + held["a"]


def test_crash_between_settling_and_state_write_charges_once() -> None:
    log = Log(limits())
    log.apply(req(0), T0)
    before = TenantState.from_bytes(log.state.to_bytes())
    first = step(
        TenantState.from_bytes(before.to_bytes()),
        usage(1, "r0", 10, 10),
        Position(0, 1, T0 + 5),
        log.lim,
        CATALOG,
        log.table.get,
    )
    for k, v in first.writes.items():  # the reservation now says "settled"; the state not
        if v is not None:
            log.table[k] = v
    again = step(
        TenantState.from_bytes(before.to_bytes()),
        usage(1, "r0", 10, 10),
        Position(0, 1, T0 + 5),
        log.lim,
        CATALOG,
        log.table.get,
    )
    assert [a["kind"] for a in again.audits] == [a["kind"] for a in first.audits]
    assert "CHARGE" in [a["kind"] for a in again.audits]
    assert again.audits == first.audits and again.state.to_bytes() == first.state.to_bytes()


def test_state_stays_small_and_the_table_forgets_after_the_window() -> None:
    log = Log(limits(burst_requests=10**6, requests_per_minute=10**6))
    for i in range(600):  # no usage: 600 reservations outstanding at once
        log.apply(req(i, rid=f"a{i}", idem=f"k{i}"), T0 + i)
    assert len(log.state.to_bytes()) < 400  # constant size, however much is outstanding
    # Half a day later every reservation has expired; a day later every entry is gone.
    log.apply(req(1000, rid="b"), T0 + 12 * 3600 * 1000)
    for i in range(3):
        log.apply(req(1001 + i, rid=f"c{i}"), T0 + 25 * 3600 * 1000 + i)
    expired = [a for a in log.audits if a["kind"] == "EXPIRE"]
    assert len(expired) == 601  # the 600, and "b"
    left = {k.split(b"\x1f")[0] for k in log.table}
    assert len(log.table) <= 4 * 8, left  # only the latest records' entries remain
    assert not any(b"\x1fa1" in k for k in log.table)
    # The old event ids and idempotency keys are free again.
    assert (
        log.apply(req(2000, rid="a5", idem="k5"), T0 + 26 * 3600 * 1000).decision["outcome"]
        == "ADMITTED"
    )


def test_usage_after_expiry_is_charged_late_and_flagged() -> None:
    log = Log(limits())
    log.apply(req(0), T0)
    log.apply(req(1), T0 + 16 * 60 * 1000)  # r0 expires
    log.apply(usage(2, "r0", 100, 10), T0 + 17 * 60 * 1000)
    charge = [a for a in log.audits if a["kind"] == "CHARGE"]
    assert len(charge) == 1 and charge[0]["detail"].startswith("late")
    assert charge[0]["amount_micros"] == cost_micros(100, 150_000) + cost_micros(10, 600_000)
    log.apply(usage(3, "r0", 100, 10), T0 + 18 * 60 * 1000)
    assert log.audits[-1]["kind"] == "USAGE_DUPLICATE"


def test_usage_that_itself_expires_its_reservation_is_charged_late_and_released_once() -> None:
    # No record in between: the usage report finds the reservation past its TTL, expires it
    # (releasing the estimate) and then settles it as expired, not as held a second time.
    log = Log(limits())
    est = log.apply(req(0), T0).decision["cost_estimate_micros"]
    s = log.apply(usage(1, "r0", 100, 10), T0 + 16 * 60 * 1000)
    actual = cost_micros(100, 150_000) + cost_micros(10, 600_000)
    kinds = [(a["kind"], a["amount_micros"]) for a in s.audits]
    assert kinds == [("EXPIRE", est), ("CHARGE", actual)]
    assert s.audits[1]["detail"].startswith("late")
    for period in log.state.periods.values():
        assert (period.reserved, period.released, period.charged) == (0, est, actual)


def test_unknown_tenants_leave_nothing_behind() -> None:
    s = step(TenantState(), req(0), Position(0, 0, T0), None, CATALOG, {}.get)
    assert not s.changed and s.writes == {}
