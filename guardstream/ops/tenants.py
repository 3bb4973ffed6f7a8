"""`guardstream tenants apply | show`: publishing tenant configuration and reading it back."""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer

from guardstream.config.settings import Settings
from guardstream.config.tenants import Limits, TenantConfig, load_tenants_file, load_tiers
from guardstream.errors import GuardstreamError
from guardstream.metering.view import TENANT_STATE_PATH
from guardstream.serde.codec import Codec
from guardstream.serde.registry import Registry
from guardstream.streams.clients import kafka_config
from guardstream.streams.reader import read_to_end
from guardstream.streams.topics import Topic


def apply(settings: Settings, path: Path) -> list[str]:
    """Validate a tenants file and publish each tenant to the compacted tenants topic."""
    tiers = load_tiers(settings.tiers_file)
    configs = load_tenants_file(path, tiers)
    registry = Registry(settings)
    codec = Codec(settings, registry)
    codec.resolve_output_ids()
    producer = Producer(kafka_config(settings, {"enable.idempotence": True, "log_level": 0}))
    errors: list[str] = []
    now_ms = int(time.time() * 1000)
    for config in configs:
        producer.produce(
            settings.topic(Topic.TENANTS),
            key=config.tenant_id.encode(),
            value=codec.encode(Topic.TENANTS, config.to_avro(now_ms)),
            on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
        )
    left = producer.flush(30)
    registry.close()
    if left or errors:
        raise GuardstreamError(
            f"{left} tenant configs undelivered: {errors[:3]}",
            "check the broker (`guardstream stack status`) and apply again",
        )
    return [c.tenant_id for c in configs]


def read_all(settings: Settings) -> dict[str, TenantConfig]:
    """Every tenant config currently on the tenants topic (the latest per tenant)."""
    registry = Registry(settings)
    codec = Codec(settings, registry)
    # Stops after 30 s with what it has read, caught up or not.
    records = read_to_end(
        settings, settings.topic(Topic.TENANTS), group_id="guardstream-tenants-show", timeout_s=30
    )
    try:
        out: dict[str, TenantConfig] = {}
        with closing(records):
            for msg in records:
                key = (msg.key() or b"").decode("utf-8", "replace")
                value = msg.value()
                if value is None:
                    out.pop(key, None)  # tombstone: the tenant was removed
                else:
                    out[key] = TenantConfig.from_avro(codec.decode(value, Topic.TENANTS))
        return out
    finally:
        registry.close()


@dataclass(frozen=True)
class Live:
    """What a worker said about a tenant: the view, or why there is none."""

    view: dict[str, Any] | None
    status: int | None  # HTTP status; None when no worker answered at all
    problem: str | None  # one line naming the cause and the fix, when view is None


def fetch_live(settings: Settings, tenant_id: str, timeout_s: float = 10.0) -> Live:
    """Ask a worker (any: it forwards to the tenant's owner) for the tenant's live state."""
    base = settings.worker_base_url
    url = base + TENANT_STATE_PATH.format(tenant_id=tenant_id)
    try:
        resp = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        kind = "no worker" if isinstance(exc, httpx.ConnectError) else "no answer from a worker"
        fix = "start one with `guardstream worker` (or set GUARDSTREAM_WORKER_URL to one)"
        return Live(None, None, f"{kind} at {base}: {fix}")
    try:
        body: dict[str, Any] = resp.json()
    except ValueError:
        return Live(
            None,
            resp.status_code,
            f"{base} answered HTTP {resp.status_code} without "
            "JSON: is GUARDSTREAM_WORKER_URL a guardstream worker?",
        )
    if resp.status_code == 200:
        return Live(body, 200, None)
    if resp.status_code == 503:
        reasons = ", ".join(body.get("reasons") or []) or "unavailable"
        return Live(
            None,
            503,
            f"the worker at {base} cannot answer yet ({reasons}): try again in a few seconds",
        )
    return Live(None, resp.status_code, f"{base}: {body.get('error', resp.reason_phrase)}")


def limits_json(limits: Limits) -> dict[str, Any]:
    """The configured limits of `tenants show --json`."""
    return {
        "tier": limits.tier,
        "configured": limits.configured,
        "requests_per_minute": limits.requests_per_minute,
        "tokens_per_minute": limits.tokens_per_minute,
        "burst_requests": limits.burst_requests,
        "burst_tokens": limits.burst_tokens,
        "daily_budget_micros": limits.daily_budget_micros,
        "monthly_budget_micros": limits.monthly_budget_micros,
        "cost_multiplier_bp": limits.cost_multiplier_bp,
        "policy": dict(sorted(limits.policy.items())),
    }
