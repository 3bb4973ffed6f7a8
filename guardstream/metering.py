"""The metering decision for one record of `metering`: pure, deterministic, replay-safe.

`step()` takes a tenant's state, one metering record and where it sits in the log, and
returns the new state, the decision (for requests), the audit events, and the per-request
entries to store. No Kafka or Faust here: the meter agent reads and writes the tables.

Exactly-once state effects without Kafka transactions:
- the tenant state carries the (partition, offset) of the last metering record applied to it;
  a replayed record (offset not above it) changes nothing and re-emits what was stored;
- each request's decision and audit events are stored under its ingress coordinates, so the
  ingest stage emitting the same ingress record twice (after a crash) yields the identical
  decision again, while a client resending an event id in a new record gets DUPLICATE;
- decision and audit ids derive from the input, so redelivered outputs are identical copies.

Time is the metering record's broker timestamp (LogAppendTime), never a client's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guardstream import decisions
from guardstream.catalog import Catalog
from guardstream.decisions import Ingress
from guardstream.reasons import Reason
from guardstream.tables.ledger import Period, period_keys, period_span_ms
from guardstream.tables.money import apply_multiplier, cost_micros
from guardstream.tables.ratelimit import Bucket, take_all
from guardstream.tenants import Limits, TenantConfig, Tiers, limits_for

THRESHOLDS_PCT = (50, 80, 100)
RESERVATION_TTL_MS = 15 * 60 * 1000
DEDUP_WINDOW_MS = 24 * 60 * 60 * 1000
_AUDIT_NS = uuid.UUID("2f0b5cf4-8a55-5d1c-9e0e-6c1f3e3a7d21")


@dataclass(frozen=True)
class Position:
    """Where a metering record sits: its partition, offset and broker timestamp."""

    partition: int
    offset: int
    ts_ms: int


@dataclass
class Reservation:
    """Budget held for an admitted request until its usage arrives or the TTL passes."""

    amount: int
    day: str
    month: str
    created_ms: int


@dataclass
class TenantState:
    """A tenant's hot state: buckets, budget periods, outstanding reservations."""

    last_partition: int = -1
    last_offset: int = -1
    requests: Bucket = field(default_factory=Bucket)
    tokens: Bucket = field(default_factory=Bucket)
    periods: dict[str, Period] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)  # request id → settled at (ms)

    def to_bytes(self) -> bytes:
        """Compact JSON for the table value (hand-rolled: `asdict` deep-copies, too slow)."""
        return json.dumps(
            [
                self.last_partition,
                self.last_offset,
                [self.requests.level, self.requests.last_ms],
                [self.tokens.level, self.tokens.last_ms],
                {k: [p.limit, p.reserved, p.charged, p.released, p.alerts, p.forecast]
                 for k, p in self.periods.items()},
                {k: [r.amount, r.day, r.month, r.created_ms]
                 for k, r in self.reservations.items()},
                self.settled,
            ],
            separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> TenantState:
        """Read a table value (a new tenant when None)."""
        if raw is None:
            return cls()
        lp, lo, rq, tk, periods, reservations, settled = json.loads(raw)
        return cls(
            last_partition=lp,
            last_offset=lo,
            requests=Bucket(*rq),
            tokens=Bucket(*tk),
            periods={k: Period(*v) for k, v in periods.items()},
            reservations={k: Reservation(*v) for k, v in reservations.items()},
            settled=settled,
        )


@dataclass
class Step:
    """What one metering record produced."""

    state: TenantState
    changed: bool
    decision: dict[str, Any] | None
    audits: list[dict[str, Any]]
    writes: dict[bytes, bytes | None]  # per-request entries to store (None deletes)
    tier: str = "unknown"


Lookup = Callable[[bytes], bytes | None]


def limits(tenant_id: str, config: TenantConfig | None, tiers: Tiers) -> Limits | None:
    """The limits in force for a tenant (None: unknown and refused)."""
    return limits_for(tenant_id, config, tiers)


def request_key(tenant: str, ingress_key: str) -> bytes:
    """Table key of a stored decision, by the ingress record that caused it."""
    return f"r\x1f{tenant}\x1f{ingress_key}".encode()


def dedup_key(tenant: str, kind: str, value: str) -> bytes:
    """Table key of a duplicate-detection entry (event source+id, or idempotency key)."""
    return f"d\x1f{tenant}\x1f{kind}\x1f{value}".encode()


class _Audits:
    """Collects audit events with ids derived from the metering record."""

    def __init__(self, tenant: str, pos: Position) -> None:
        self.tenant = tenant
        self.pos = pos
        self.events: list[dict[str, Any]] = []

    def add(
        self,
        kind: str,
        request_id: str | None,
        amount: int = 0,
        period: str | None = None,
        detail: str = "",
    ) -> None:
        eid = uuid.uuid5(_AUDIT_NS, f"{self.pos.partition}/{self.pos.offset}/{len(self.events)}")
        self.events.append(
            {
                "event_id": str(eid),
                "kind": kind,
                "tenant_id": self.tenant,
                "request_id": request_id,
                "amount_micros": amount,
                "period": period,
                "detail": detail,
                "ts": self.pos.ts_ms,
                "metering_partition": self.pos.partition,
                "metering_offset": self.pos.offset,
            }
        )


def step(
    state: TenantState,
    record: dict[str, Any],
    pos: Position,
    lim: Limits | None,
    catalog: Catalog,
    lookup: Lookup,
    *,
    reservation_ttl_ms: int = RESERVATION_TTL_MS,
    dedup_window_ms: int = DEDUP_WINDOW_MS,
) -> Step:
    """Apply one metering record to a tenant's state (see the module doc)."""
    tenant = record["tenant_id"]
    ingress = Ingress(
        record["ingress_topic"],
        record["ingress_partition"],
        record["ingress_offset"],
        pos.ts_ms,
    )
    ikey = f"{ingress.topic}/{ingress.partition}/{ingress.offset}"
    tier = lim.tier if lim else "unknown"

    # The same ingress record seen before (a replay, or the ingest stage forwarding it twice
    # after a crash): emit what was stored, change nothing. A stored entry counts only if the
    # tenant state already includes it; otherwise the crash came between writing the entry
    # and the state, and the record is applied again (deterministically: same decision).
    stored = lookup(request_key(tenant, ikey)) if record["kind"] == "REQUEST" else None
    if stored is not None:
        saved = json.loads(stored)
        at_partition, at_offset = saved["pos"]
        if at_partition == state.last_partition and at_offset <= state.last_offset:
            return Step(state, False, saved["decision"], saved["audits"], {}, tier)
    elif pos.partition == state.last_partition and pos.offset <= state.last_offset:
        return Step(state, False, None, [], {}, tier)  # a replayed usage report

    audits = _Audits(tenant, pos)
    _expire(state, pos.ts_ms, reservation_ttl_ms, audits)
    writes: dict[bytes, bytes | None] = {}
    decision: dict[str, Any] | None = None
    if record["kind"] == "USAGE":
        _settle(state, record, pos, lim, catalog, audits)
    else:
        decision = _decide(state, record, ingress, ikey, pos, lim, catalog, lookup, audits,
                           writes, dedup_window_ms)  # fmt: skip
        saved = {"decision": decision, "audits": audits.events, "pos": [pos.partition, pos.offset]}
        writes[request_key(tenant, ikey)] = json.dumps(saved, separators=(",", ":")).encode()
    state.last_partition, state.last_offset = pos.partition, pos.offset
    _prune(state, pos.ts_ms, dedup_window_ms)
    return Step(state, True, decision, audits.events, writes, tier)


def _decide(
    state: TenantState,
    record: dict[str, Any],
    ingress: Ingress,
    ikey: str,
    pos: Position,
    lim: Limits | None,
    catalog: Catalog,
    lookup: Lookup,
    audits: _Audits,
    writes: dict[bytes, bytes | None],
    dedup_window_ms: int,
) -> dict[str, Any]:
    tenant, request_id = record["tenant_id"], record["request_id"]

    def reject(code: Reason, detail: str, **extra: Any) -> dict[str, Any]:
        return decisions.decision(
            ingress, request_id=request_id, request_source=record["request_source"],
            tenant_id=tenant, admitted=False, reasons=[{"code": str(code), "detail": detail,
                                                        "field": None}],
            findings=record["findings"], injection_score=record["injection_score"], **extra,
        )  # fmt: skip

    if lim is None:
        return reject(Reason.UNKNOWN_TENANT, f"tenant '{tenant}' is not configured")

    keys = [dedup_key(tenant, "e", f"{record['request_source']}\x1f{request_id}")]
    if record["idempotency_key"]:
        keys.append(dedup_key(tenant, "i", record["idempotency_key"]))
    for k in keys:
        raw = lookup(k)
        if raw is None:
            continue
        first = json.loads(raw)
        # Our own key, written by an attempt whose state write never happened, is no duplicate.
        if first["ikey"] != ikey and first["ts"] + dedup_window_ms > pos.ts_ms:
            audits.add("DUPLICATE", request_id, detail=f"duplicate of {first['decision_id']}")
            return reject(
                Reason.DUPLICATE,
                "this event id (or idempotency key) was already admitted; see duplicate_of",
                duplicate_of=first["decision_id"],
            )

    spec = catalog.get(record["model"])
    if spec is None:  # the catalog changed between ingest and metering
        return reject(Reason.MODEL_UNKNOWN, f"model '{record['model']}' left the catalog")
    total_tokens = record["estimated_input_tokens"] + record["max_tokens"]
    allowed, retry_after = take_all(
        [
            (state.requests, lim.burst_requests, lim.requests_per_minute, 1),
            (state.tokens, lim.burst_tokens, lim.tokens_per_minute, total_tokens),
        ],
        pos.ts_ms,
    )
    if not allowed:
        if retry_after < 0:
            audits.add("LIMIT_HIT", request_id, detail="tokens above burst capacity")
            return reject(
                Reason.RATE_LIMITED,
                f"the request needs {total_tokens} tokens, above the tenant's burst capacity "
                f"of {lim.burst_tokens}; lower max_tokens or raise the limit",
            )
        audits.add("LIMIT_HIT", request_id, detail=f"rate limit; retry after {retry_after} ms")
        return reject(
            Reason.RATE_LIMITED,
            f"rate limit of {lim.requests_per_minute} requests / {lim.tokens_per_minute} "
            f"tokens per minute reached; retry after {retry_after} ms",
            retry_after_ms=retry_after,
        )

    amount = apply_multiplier(
        cost_micros(record["estimated_input_tokens"], spec.input_micros_per_mtok)
        + cost_micros(record["max_tokens"], spec.output_micros_per_mtok),
        lim.cost_multiplier_bp,
    )
    day, month = period_keys(pos.ts_ms)
    remaining: int | None = None
    for key, limit in ((day, lim.daily_budget_micros), (month, lim.monthly_budget_micros)):
        if limit is None:
            continue
        p = state.periods.setdefault(key, Period(limit=limit))
        p.limit = limit
        left = limit - p.reserved - p.charged
        remaining = left if remaining is None else min(remaining, left)
        if amount > left:
            audits.add("LIMIT_HIT", request_id, amount, key, "budget exceeded")
            return reject(
                Reason.BUDGET_EXCEEDED,
                f"reserving {amount} µ$ would exceed the {key} budget of {limit} µ$ "
                f"({max(left, 0)} µ$ left)",
                budget_remaining_micros=max(left, 0),
                cost_estimate_micros=amount,
            )
    state.periods.setdefault(day, Period(limit=lim.daily_budget_micros))
    state.periods.setdefault(month, Period(limit=lim.monthly_budget_micros))
    for key in (day, month):
        state.periods[key].reserved += amount
    state.reservations[request_id] = Reservation(amount, day, month, pos.ts_ms)
    audits.add("RESERVE", request_id, amount)
    _alerts(state, (day, month), pos.ts_ms, audits)

    first = {"decision_id": decisions.decision_id(ingress), "ts": pos.ts_ms, "ikey": ikey}
    for k in keys:
        writes[k] = json.dumps(first).encode()
    return decisions.decision(
        ingress,
        request_id=request_id,
        request_source=record["request_source"],
        tenant_id=tenant,
        admitted=True,
        sanitized_request=record["sanitized_request"],
        cost_estimate_micros=amount,
        findings=record["findings"],
        injection_score=record["injection_score"],
        budget_remaining_micros=None if remaining is None else remaining - amount,
    )


def _settle(
    state: TenantState,
    record: dict[str, Any],
    pos: Position,
    lim: Limits | None,
    catalog: Catalog,
    audits: _Audits,
) -> None:
    request_id = record["request_id"]
    if request_id in state.settled:
        audits.add("USAGE_DUPLICATE", request_id, detail="usage for an already-settled request")
        return
    res = state.reservations.pop(request_id, None)
    if res is None:
        audits.add("USAGE_UNKNOWN", request_id, detail="usage for no outstanding reservation")
        return
    spec = catalog.get(record["model"])
    multiplier = lim.cost_multiplier_bp if lim else 10_000
    if spec is None:  # cannot price it: charge what was reserved, say why
        actual = res.amount
        audits.add("USAGE_UNKNOWN", request_id, detail=f"model '{record['model']}' unpriced")
    else:
        actual = apply_multiplier(
            cost_micros(record["usage_input_tokens"] or 0, spec.input_micros_per_mtok)
            + cost_micros(record["usage_output_tokens"] or 0, spec.output_micros_per_mtok),
            multiplier,
        )
    release = max(res.amount - actual, 0)
    for key in (res.day, res.month):
        p = state.periods.setdefault(key, Period(limit=None))
        p.reserved -= res.amount
        p.charged += actual
        p.released += release
    audits.add("CHARGE", request_id, actual)
    if release:
        audits.add("RELEASE", request_id, release)
    if actual > res.amount:
        audits.add("OVERRUN", request_id, actual - res.amount, detail="usage above reservation")
    state.settled[request_id] = pos.ts_ms
    _alerts(state, (res.day, res.month), pos.ts_ms, audits)


def _expire(state: TenantState, now_ms: int, ttl_ms: int, audits: _Audits) -> None:
    """Release reservations whose usage never came (oldest first: insertion is time order)."""
    while state.reservations:
        request_id, res = next(iter(state.reservations.items()))
        if res.created_ms + ttl_ms > now_ms:
            break
        del state.reservations[request_id]
        for key in (res.day, res.month):
            p = state.periods.setdefault(key, Period(limit=None))
            p.reserved -= res.amount
            p.released += res.amount
        audits.add("EXPIRE", request_id, res.amount, detail="no usage within the TTL")


def _alerts(state: TenantState, keys: tuple[str, str], now_ms: int, audits: _Audits) -> None:
    for key in keys:
        p = state.periods[key]
        if p.limit is None or p.limit == 0:
            continue
        used = p.charged + p.reserved
        for pct in THRESHOLDS_PCT:
            if pct not in p.alerts and used * 100 >= p.limit * pct:
                p.alerts.append(pct)
                audits.add("ALERT_THRESHOLD", None, used, key, f"{pct}% of {p.limit} µ$")
        start, length = period_span_ms(key)
        elapsed = now_ms - start
        # Forecast once per period, after a twenty-fourth of it, from settled spend only.
        if not p.forecast and elapsed * 24 >= length and p.charged * length > p.limit * elapsed:
            p.forecast = True
            audits.add("ALERT_FORECAST", None, p.charged, key,
                       "spend rate projects exhaustion before the period ends")  # fmt: skip


def _prune(state: TenantState, now_ms: int, window_ms: int) -> None:
    day, month = period_keys(now_ms)
    held = {r.day for r in state.reservations.values()} | {
        r.month for r in state.reservations.values()
    }
    for key in list(state.periods):
        if key not in (day, month) and key not in held:
            del state.periods[key]
    for rid, at in list(state.settled.items()):
        if at + window_ms <= now_ms:
            del state.settled[rid]
