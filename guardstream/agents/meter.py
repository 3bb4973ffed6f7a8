"""The metering stage: per-tenant rate limits, budgets and duplicates, exact and replay-safe.

Every tenant's state has exactly one writer: the worker that owns the tenant's partition of
`metering`. The decision logic is `guardstream.metering.step` (pure); this agent reads the
tables, applies the step, writes the tables and sends what it produced.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from guardstream.agents.context import Context, Outputs, await_tenant_directory, hold_if_stopping
from guardstream.config.tenants import load_tiers
from guardstream.metering import step as metering
from guardstream.metering.keys import state_key
from guardstream.reasons import Reason
from guardstream.records import Ingress, Outcome, Position, RawRecord, dead_letter, decision_outcome
from guardstream.runtime.continuity import InputWatch
from guardstream.runtime.metrics import (
    BUDGET_ALERTS,
    RATE_LIMITED,
    RESERVED,
    SPEND,
    TABLE_KEYS,
    TENANT_BUDGET,
    TENANT_SPEND,
    record_outcome,
)
from guardstream.streams.topics import Topic
from guardstream.tables.storage import fail_stop, is_storage_error

STAGE = "meter"
SOURCE = "/guardstream/meter"
log = logging.getLogger(__name__)


def step_outcomes(step: metering.Step, record: dict[str, Any], key: bytes | None) -> list[Outcome]:
    """What one metering step sends: its audit events, then its decision (if any)."""
    tenant = record["tenant_id"]
    outs = [Outcome(Topic.AUDIT, key, a, [], a["kind"], tenant) for a in step.audits]
    if step.decision is not None:
        d = step.decision
        outs.append(
            decision_outcome(
                d, d["request_id"], record["traceparent"], key, SOURCE, record["authid"]
            )
        )
    return outs


def register(app: faust.App, ctx: Context) -> None:
    """Define the meter agent on the app."""
    settings, codec, tables = ctx.settings, ctx.codec, ctx.tables
    tiers = load_tiers(settings.tiers_file)
    watched = {t.strip() for t in settings.metrics_tenants.split(",") if t.strip()}

    def record_money(audit: dict[str, Any], tier: str, limits: Any) -> None:
        """Spend by tier always; per tenant only for the allow-listed (bounded labels)."""
        if audit["kind"] != "CHARGE":
            return
        SPEND.labels(tier).inc(audit["amount_micros"])
        tenant = audit["tenant_id"]
        if tenant in watched:
            TENANT_SPEND.labels(tenant).inc(audit["amount_micros"])
            if limits is not None:
                for period, value in (
                    ("daily", limits.daily_budget_micros),
                    ("monthly", limits.monthly_budget_micros),
                ):
                    if value is not None:
                        TENANT_BUDGET.labels(tenant, period).set(value)

    outputs = Outputs(app, ctx)

    def apply(msg: Any) -> tuple[list[tuple[Outcome, bytes]], metering.Step, dict[str, Any]]:
        record = codec.decode(msg.value, Topic.METERING)
        tenant = record["tenant_id"]
        limits = metering.limits(tenant, tables.tenant_config(tenant), tiers)
        step = metering.step(
            metering.TenantState.from_bytes(tables.meter.get(state_key(tenant))),
            record,
            Position(msg.partition, msg.offset, round(msg.timestamp * 1000)),
            limits,
            ctx.catalog,
            tables.meter.get,
            reservation_ttl_ms=settings.reservation_ttl_s * 1000,
            dedup_window_ms=settings.dedup_window_s * 1000,
        )
        if step.changed:  # replays re-send outputs but must not count money twice
            for audit in step.audits:
                record_money(audit, step.tier, limits)
            held[tenant] = (step.tier, step.state.held_micros())
        # Encoded before any table write: a record that cannot be encoded changes nothing.
        outs = [(out, outputs.encode(out)) for out in step_outcomes(step, record, msg.key)]
        # Per-request entries first, tenant state (with its last offset) last, into the one
        # table whose changelog keeps their order: a crash loses a suffix, so a state that
        # made it means its entries did, and a record the state lacks is applied again.
        for key, value in step.writes.items():
            if value is None:
                del tables.meter[key]  # a tombstone; RocksDB ignores a missing key
            else:
                tables.meter[key] = value
        if step.changed:
            tables.meter[state_key(tenant)] = step.state.to_bytes()
        return outs, step, record

    # Budget held by outstanding reservations, per tenant on this worker's partitions, as of
    # each tenant's last record; forgotten when partitions move (the new owner reports them).
    held: dict[str, tuple[str, int]] = {}

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types the handler narrowly
    def forget_held(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        held.clear()

    @app.timer(interval=30.0)
    async def sample_tables() -> None:
        # Counting keys walks the store: sampled, never done per record.
        TABLE_KEYS.labels("meter").set(len(tables.meter))
        by_tier: dict[str, int] = dict.fromkeys(tiers.tiers, 0)
        for tier, amount in list(held.values()):
            by_tier[tier] = by_tier.get(tier, 0) + amount
        for tier, amount in by_tier.items():
            RESERVED.labels(tier).set(amount)

    watch = InputWatch(app, STAGE, {settings.topic(Topic.METERING)}, settings)

    @app.timer(interval=1.0)
    async def check_input_continuity() -> None:
        await watch.check_idle()

    @app.agent(app.topic(settings.topic(Topic.METERING)), name="guardstream.meter")
    async def meter(stream: Any) -> None:
        await await_tenant_directory(ctx)
        async for event in stream.events():
            msg = event.message
            started = time.perf_counter()
            await hold_if_stopping(app)
            watch.see(msg)
            try:
                outs, step, record = apply(msg)
            except Exception as exc:  # a bug must not stop the partition
                if is_storage_error(exc):  # but a full disk must stop the worker
                    fail_stop(exc, settings.state_dir)
                log.exception("meter failed on %s[%d]@%d", msg.topic, msg.partition, msg.offset)
                rec = RawRecord(
                    Ingress(msg.topic, msg.partition, msg.offset, round(msg.timestamp * 1000)),
                    msg.key,
                    msg.value,
                    list(msg.headers or []),
                )
                out = dead_letter(rec, Reason.INTERNAL_ERROR, repr(exc)[:500], STAGE)
                await outputs.send(out, outputs.encode(out))
                record_outcome(STAGE, out.topic, out.code, started, rec.ingress.timestamp_ms)
                continue
            for out, value in outs:
                await outputs.send(out, value)
                if out.code.startswith("ALERT_"):
                    BUDGET_ALERTS.labels(out.code, step.tier).inc()
                elif out.topic is not Topic.AUDIT:
                    record_outcome(STAGE, out.topic, out.code, started, record["ingress_timestamp"])
                    if out.code == "RATE_LIMITED":
                        RATE_LIMITED.labels(step.tier).inc()
