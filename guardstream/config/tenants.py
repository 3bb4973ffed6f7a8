"""Tenant configuration: tiers, per-tenant overrides, and the limits in force.

A tenant's config lives on the compacted `tenants` topic (keyed by tenant id); tiers live in
a versioned settings file. What is in force for a tenant is its own explicit values, and for
everything it leaves out, its tier's value scaled by the tier's rate multiplier.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from guardstream.config.loader import load_model, read_yaml, validate
from guardstream.errors import GuardstreamError
from guardstream.guardrails import PolicyError, policy_from
from guardstream.ingest.payload import TENANT_PATTERN

NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(gt=0)]
BASIS_POINTS = 10_000


class TierSpec(BaseModel):
    """A tier's defaults. Budgets of None mean unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    requests_per_minute: Positive
    tokens_per_minute: Positive
    burst_requests: Positive
    burst_tokens: Positive
    daily_budget_micros: NonNegative | None = None
    monthly_budget_micros: NonNegative | None = None
    rate_multiplier_bp: Positive = BASIS_POINTS
    cost_multiplier_bp: Positive = BASIS_POINTS


class Tiers(BaseModel):
    """The tiers file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Positive
    default_tier: str
    unknown_tenants: Literal["reject", "default"] = "reject"
    tiers: dict[str, TierSpec]


class TenantConfig(BaseModel):
    """One tenant as an operator writes it (`guardstream tenants apply FILE.yaml`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tenant_id: Annotated[str, Field(pattern=TENANT_PATTERN)]
    tier: str = "standard"
    requests_per_minute: Positive | None = None
    tokens_per_minute: Positive | None = None
    burst_requests: Positive | None = None
    burst_tokens: Positive | None = None
    daily_budget_micros: NonNegative | None = None
    monthly_budget_micros: NonNegative | None = None
    policy: dict[str, str] = {}

    def to_avro(self, updated_at_ms: int) -> dict[str, Any]:
        """The `TenantConfig` Avro record."""
        return {**self.model_dump(), "updated_at": updated_at_ms}

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> TenantConfig:
        """Read back a `TenantConfig` Avro record (ignores `updated_at`)."""
        return cls.model_validate({k: v for k, v in record.items() if k != "updated_at"})


@dataclass(frozen=True)
class Limits:
    """What is in force for one tenant."""

    tenant_id: str
    tier: str
    requests_per_minute: int
    tokens_per_minute: int
    burst_requests: int
    burst_tokens: int
    daily_budget_micros: int | None
    monthly_budget_micros: int | None
    cost_multiplier_bp: int
    policy: dict[str, str]
    configured: bool  # False when an unknown tenant got the default tier


def _scaled(value: int, bp: int) -> int:
    return max(1, value * bp // BASIS_POINTS)


def limits_for(tenant_id: str, config: TenantConfig | None, tiers: Tiers) -> Limits | None:
    """The limits in force, or None for an unknown tenant when unknown tenants are refused."""
    if config is None and tiers.unknown_tenants == "reject":
        return None
    tier_name = config.tier if config is not None else tiers.default_tier
    tier = tiers.tiers.get(tier_name) or tiers.tiers[tiers.default_tier]
    own = config or TenantConfig(tenant_id=tenant_id, tier=tier_name)
    bp = tier.rate_multiplier_bp

    def pick(mine: int | None, default: int) -> int:
        return mine if mine is not None else _scaled(default, bp)

    return Limits(
        tenant_id=tenant_id,
        tier=tier_name,
        requests_per_minute=pick(own.requests_per_minute, tier.requests_per_minute),
        tokens_per_minute=pick(own.tokens_per_minute, tier.tokens_per_minute),
        burst_requests=pick(own.burst_requests, tier.burst_requests),
        burst_tokens=pick(own.burst_tokens, tier.burst_tokens),
        daily_budget_micros=(
            own.daily_budget_micros
            if own.daily_budget_micros is not None
            else tier.daily_budget_micros
        ),
        monthly_budget_micros=(
            own.monthly_budget_micros
            if own.monthly_budget_micros is not None
            else tier.monthly_budget_micros
        ),
        cost_multiplier_bp=tier.cost_multiplier_bp,
        policy=dict(own.policy),
        configured=config is not None,
    )


_FIX_ENTRY = "fix that entry and apply again"


@lru_cache(maxsize=4)
def load_tiers(path: Path) -> Tiers:
    """The tiers file, validated (and its default tier checked to exist)."""
    tiers = load_model(Tiers, path, "the tiers file", _FIX_ENTRY)
    if tiers.default_tier not in tiers.tiers:
        raise GuardstreamError(
            f"{path}: default_tier '{tiers.default_tier}' is not one of the tiers",
            "name one of: " + ", ".join(tiers.tiers),
        )
    return tiers


def load_tenants_file(path: Path, tiers: Tiers) -> list[TenantConfig]:
    """Tenants from a YAML file (`tenants: [...]`), validated against the tiers."""
    raw = read_yaml(path, "the tenants file")
    items = raw.get("tenants") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise GuardstreamError(
            f"{path} has no `tenants:` list", "write `tenants:` followed by one entry per tenant"
        )
    out = []
    for i, item in enumerate(items):
        config = validate(TenantConfig, item, path, _FIX_ENTRY, prefix=f"tenants[{i}].")
        try:
            policy_from(config.policy)
        except PolicyError as exc:
            raise GuardstreamError(f"{path}: tenants[{i}].{exc}", "fix that entry") from None
        if config.tier not in tiers.tiers:
            raise GuardstreamError(
                f"{path}: tenants[{i}].tier '{config.tier}' is not a tier",
                "use one of: " + ", ".join(tiers.tiers),
            )
        out.append(config)
    return out
