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

The tenant state is small and of constant size (buckets, budget periods, three journal
counters): everything that grows with traffic lives in per-request table entries, so a
record costs the same whether the tenant has ten reservations outstanding or a million.
The entries and their keys are written down in `guardstream.metering.keys`.
An entry changed by a record the tenant state does not yet include (a crash came between
the two writes) carries that record's position and its previous status, and is read as it
was before: the record is then applied again exactly as the first time.

Time is the metering record's broker timestamp (LogAppendTime), never a client's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guardstream import records as decisions
from guardstream.config.catalog import Catalog
from guardstream.config.tenants import Limits, TenantConfig, Tiers, limits_for
from guardstream.metering.buckets import Bucket, take_all
from guardstream.metering.keys import (
    dedup_key,
    journal_key,
    request_key,
    reservation_key,
)
from guardstream.metering.money import apply_multiplier, token_cost_micros
from guardstream.metering.periods import Period, period_keys, period_span_ms
from guardstream.reasons import Reason
from guardstream.records import Ingress, Position

THRESHOLDS_PCT = (50, 80, 100)
RESERVATION_TTL_MS = 15 * 60 * 1000
DEDUP_WINDOW_MS = 24 * 60 * 60 * 1000
# Journal entries expired or deleted per record at most, so a tenant idle for a day does not
# stall its partition on its next request; the rest follows with the next records.
JOURNAL_STEP = 256
STATE_FORMAT = 2
_AUDIT_NS = uuid.UUID("2f0b5cf4-8a55-5d1c-9e0e-6c1f3e3a7d21")
# Compact JSON for table values; one encoder, not one per value as `json.dumps(v, separators=
# (",", ":"))` builds (same bytes).
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def dumps(value: Any) -> bytes:
    """A table value as compact JSON."""
    return _COMPACT.encode(value).encode()


def loads(raw: bytes) -> Any:
    """A table value read back."""
    return json.loads(raw)


@dataclass
class TenantState:
    """A tenant's hot state: buckets, budget periods, journal counters (constant size)."""

    last_partition: int = -1
    last_offset: int = -1
    requests: Bucket = field(default_factory=Bucket)
    tokens: Bucket = field(default_factory=Bucket)
    periods: dict[str, Period] = field(default_factory=dict)
    q_gc: int = 0  # oldest journal entry not yet deleted
    q_exp: int = 0  # oldest journal entry not yet checked for reservation expiry
    q_next: int = 0  # sequence number of the next journal entry

    def to_bytes(self) -> bytes:
        """Compact JSON for the table value (hand-rolled: `asdict` deep-copies, too slow)."""
        return dumps(
            [
                STATE_FORMAT,
                self.last_partition,
                self.last_offset,
                [self.requests.level, self.requests.last_ms],
                [self.tokens.level, self.tokens.last_ms],
                {
                    k: [p.limit, p.reserved, p.charged, p.released, p.alerts, p.forecast]
                    for k, p in self.periods.items()
                },
                [self.q_gc, self.q_exp, self.q_next],
            ]
        )

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> TenantState:
        """Read a table value (a new tenant when None)."""
        if raw is None:
            return cls()
        value = loads(raw)
        if value[0] != STATE_FORMAT:
            raise ValueError(
                f"tenant state in format {value[0]}, this guardstream reads format "
                f"{STATE_FORMAT}: start the worker with a new GUARDSTREAM_APP_ID (fresh tables)"
            )
        _, lp, lo, rq, tk, periods, (q_gc, q_exp, q_next) = value
        return cls(
            last_partition=lp,
            last_offset=lo,
            requests=Bucket(*rq),
            tokens=Bucket(*tk),
            periods={k: Period(*v) for k, v in periods.items()},
            q_gc=q_gc,
            q_exp=q_exp,
            q_next=q_next,
        )

    def covers(self, pos: list[int]) -> bool:
        """Whether the record at `pos` ([partition, offset]) is already applied to this state."""
        return pos[0] == self.last_partition and pos[1] <= self.last_offset

    def held_micros(self) -> int:
        """Budget held by outstanding reservations (each is in one month period)."""
        return sum(p.reserved for k, p in self.periods.items() if k.startswith("m:"))


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


class _Entries:
    """The per-request table as this step sees it: its own writes first, then the table."""

    def __init__(self, lookup: Lookup, state: TenantState, pos: Position) -> None:
        self.lookup = lookup
        self.state = state
        self.at = [pos.partition, pos.offset]
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> dict[str, Any] | None:
        raw = self.writes[key] if key in self.writes else self.lookup(key)
        return None if raw is None else loads(raw)

    def put(self, key: bytes, value: dict[str, Any]) -> None:
        self.writes[key] = dumps(value)

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def reservation(self, tenant: str, request_id: str) -> dict[str, Any] | None:
        """The reservation as the tenant state knows it (see the module doc).

        What this record wrote itself is current: a usage report that comes after the TTL
        first expires its reservation, then settles it as expired (not as held again).
        """
        key = reservation_key(tenant, request_id)
        v = self.get(key)
        if v is None or key in self.writes or self.state.covers(v["by"]):
            return v
        if v["p"] is None:
            return None  # created by the record being applied again
        return {**v, "s": v["p"]}

    def set_status(self, tenant: str, request_id: str, v: dict[str, Any], status: str) -> None:
        """Change a reservation's status, keeping what it was before this record in `p`.

        A record may change one reservation twice (expire it, then settle it late): `p` keeps
        the status from before the first change, which is what a replay must read back.
        """
        key = reservation_key(tenant, request_id)
        earlier = self.get(key) if key in self.writes else None
        before = earlier["p"] if earlier is not None and earlier["by"] == self.at else v["s"]
        self.put(key, {**v, "s": status, "p": before, "by": self.at})


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
    # and the state, and the record is applied again (deterministically: same outputs).
    stored = lookup(request_key(tenant, ikey))
    if stored is not None:
        saved = loads(stored)
        if state.covers(saved["pos"]):
            return Step(state, False, saved["decision"], saved["audits"], {}, tier)
    elif state.covers([pos.partition, pos.offset]):
        return Step(state, False, None, [], {}, tier)  # applied, and its entry since deleted

    audits = _Audits(tenant, pos)
    entries = _Entries(lookup, state, pos)
    journal: dict[str, Any] = {"ts": pos.ts_ms, "ikey": ikey, "rid": None, "keys": []}
    # Nothing is stored for a tenant nobody configured and nothing knows: tenant ids a client
    # invents must not grow the tables. The answer depends only on the record, so a replay
    # repeats it. (A tenant removed from the configuration keeps its state and settles.)
    ephemeral = lim is None and state.last_partition == -1
    if not ephemeral:
        _expire(state, tenant, entries, pos.ts_ms, reservation_ttl_ms, audits)
        _collect(state, tenant, entries, pos.ts_ms, max(dedup_window_ms, reservation_ttl_ms))
    decision: dict[str, Any] | None = None
    if record["kind"] == "USAGE":
        _settle(state, tenant, entries, record, lim, catalog, audits)
    else:
        decision = _decide(
            state,
            record,
            ingress,
            ikey,
            pos,
            lim,
            catalog,
            entries,
            audits,
            journal,
            dedup_window_ms,
        )
    if ephemeral:
        return Step(state, False, decision, audits.events, {}, tier)
    entries.put(
        request_key(tenant, ikey),
        {"decision": decision, "audits": audits.events, "pos": [pos.partition, pos.offset]},
    )
    entries.put(journal_key(tenant, state.q_next), journal)
    state.q_next += 1
    state.last_partition, state.last_offset = pos.partition, pos.offset
    _prune(state, pos.ts_ms)
    return Step(state, True, decision, audits.events, entries.writes, tier)


def _decide(
    state: TenantState,
    record: dict[str, Any],
    ingress: Ingress,
    ikey: str,
    pos: Position,
    lim: Limits | None,
    catalog: Catalog,
    entries: _Entries,
    audits: _Audits,
    journal: dict[str, Any],
    dedup_window_ms: int,
) -> dict[str, Any]:
    tenant, request_id = record["tenant_id"], record["request_id"]

    def reject(code: Reason, detail: str, **extra: Any) -> dict[str, Any]:
        return decisions.decision(
            ingress,
            request_id=request_id,
            request_source=record["request_source"],
            tenant_id=tenant,
            admitted=False,
            reasons=[{"code": str(code), "detail": detail, "field": None}],
            findings=record["findings"],
            injection_score=record["injection_score"],
            **extra,
        )

    if lim is None:
        return reject(Reason.UNKNOWN_TENANT, f"tenant '{tenant}' is not configured")

    keys = [dedup_key(tenant, "e", f"{record['request_source']}\x1f{request_id}")]
    if record["idempotency_key"]:
        keys.append(dedup_key(tenant, "i", record["idempotency_key"]))
    for k in keys:
        first = entries.get(k)
        if first is None:
            continue
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
        token_cost_micros(spec, record["estimated_input_tokens"], record["max_tokens"]),
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
    entries.put(
        reservation_key(tenant, request_id),
        {"a": amount, "d": day, "m": month, "s": "held", "p": None, "by": entries.at, "ikey": ikey},
    )
    audits.add("RESERVE", request_id, amount)
    _alerts(state, (day, month), pos.ts_ms, audits)

    admitted = decisions.decision(
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
    # The decision's id (`decisions.decision_id(ingress)`), not derived a second time.
    seen = dumps({"decision_id": admitted["decision_id"], "ts": pos.ts_ms, "ikey": ikey})
    for k in keys:
        entries.writes[k] = seen
    journal["rid"] = request_id
    journal["keys"] = [k.decode() for k in (*keys, reservation_key(tenant, request_id))]
    return admitted


def _settle(
    state: TenantState,
    tenant: str,
    entries: _Entries,
    record: dict[str, Any],
    lim: Limits | None,
    catalog: Catalog,
    audits: _Audits,
) -> None:
    request_id = record["request_id"]
    res = entries.reservation(tenant, request_id)
    if res is None:
        audits.add("USAGE_UNKNOWN", request_id, detail="usage for no reservation of this tenant")
        return
    if res["s"] == "settled":
        audits.add("USAGE_DUPLICATE", request_id, detail="usage for an already-settled request")
        return
    spec = catalog.get(record["model"])
    multiplier = lim.cost_multiplier_bp if lim else 10_000
    if spec is None:  # cannot price it: charge what was reserved, say why
        actual = res["a"]
        audits.add("USAGE_UNKNOWN", request_id, detail=f"model '{record['model']}' unpriced")
    else:
        actual = apply_multiplier(
            token_cost_micros(
                spec,
                record["usage_input_tokens"] or 0,
                record["usage_output_tokens"] or 0,
                record.get("usage_cached_input_tokens") or 0,
            ),
            multiplier,
        )
    late = res["s"] == "expired"  # its budget was released already: charge it all now
    held = 0 if late else res["a"]
    release = max(held - actual, 0)
    for key in (res["d"], res["m"]):
        p = state.periods.setdefault(key, Period(limit=None))
        p.reserved -= held
        p.charged += actual
        p.released += release
    audits.add(
        "CHARGE", request_id, actual, detail="late: the reservation had expired" if late else ""
    )
    if release:
        audits.add("RELEASE", request_id, release)
    if actual > held and not late:
        audits.add("OVERRUN", request_id, actual - held, detail="usage above reservation")
    entries.set_status(tenant, request_id, res, "settled")
    _alerts(state, (res["d"], res["m"]), audits.pos.ts_ms, audits)


def _expire(
    state: TenantState,
    tenant: str,
    entries: _Entries,
    now_ms: int,
    ttl_ms: int,
    audits: _Audits,
) -> None:
    """Release reservations whose usage never came, walking the journal oldest first."""
    for _ in range(JOURNAL_STEP):
        if state.q_exp >= state.q_next:
            return
        entry = entries.get(journal_key(tenant, state.q_exp))
        if entry is not None:
            if entry["ts"] + ttl_ms > now_ms:
                return
            rid = entry["rid"]
            res = entries.reservation(tenant, rid) if rid else None
            if res is not None and res["s"] == "held" and res["ikey"] == entry["ikey"]:
                for key in (res["d"], res["m"]):
                    p = state.periods.setdefault(key, Period(limit=None))
                    p.reserved -= res["a"]
                    p.released += res["a"]
                entries.set_status(tenant, rid, res, "expired")
                audits.add("EXPIRE", rid, res["a"], detail="no usage within the TTL")
        state.q_exp += 1


def _collect(
    state: TenantState, tenant: str, entries: _Entries, now_ms: int, window_ms: int
) -> None:
    """Delete every entry of records older than the window (after their expiry check)."""
    for _ in range(JOURNAL_STEP):
        if state.q_gc >= state.q_exp:
            return
        qkey = journal_key(tenant, state.q_gc)
        entry = entries.get(qkey)
        if entry is not None:
            if entry["ts"] + window_ms > now_ms:
                return
            ikey = entry["ikey"]
            entries.delete(request_key(tenant, ikey))
            # Dedup and reservation keys: a later record may own the same key by now.
            for raw_key in entry["keys"]:
                key = raw_key.encode()
                found = entries.get(key)
                if found is not None and found["ikey"] == ikey:
                    entries.delete(key)
            entries.delete(qkey)
        state.q_gc += 1


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
            audits.add(
                "ALERT_FORECAST",
                None,
                p.charged,
                key,
                "spend rate projects exhaustion before the period ends",
            )


def _prune(state: TenantState, now_ms: int) -> None:
    """Forget past periods once nothing is held in them."""
    day, month = period_keys(now_ms)
    for key in list(state.periods):
        if key not in (day, month) and state.periods[key].reserved == 0:
            del state.periods[key]
