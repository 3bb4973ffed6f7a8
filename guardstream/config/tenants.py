"""Tenant configuration: tiers, per-tenant overrides, and the limits in force.

A tenant's config lives on the compacted `tenants` topic (keyed by tenant id); tiers live in
a versioned settings file. What is in force for a tenant is its own explicit values, and for
everything it leaves out, its tier's value scaled by the tier's rate multiplier.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from guardstream.auth.verify import in_window
from guardstream.config.loader import load_model, read_yaml, validate
from guardstream.errors import GuardstreamError
from guardstream.guardrails import PolicyError, policy_from
from guardstream.ingest.payload import TENANT_PATTERN

NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(gt=0)]
BASIS_POINTS = 10_000
# Whether a tenant's events must be signed (see `guardstream.auth`): `required` refuses an
# unsigned or badly signed event, `optional` refuses only a bad signature, `off` ignores them.
AuthMode = Annotated[
    Literal["required", "optional", "off"],
    # YAML 1.1 reads an unquoted `off` as false: take it as the word the operator wrote.
    BeforeValidator(lambda v: "off" if v is False else v),
]
KEY_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


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
    auth: AuthMode = "off"  # for tenants that do not set their own
    tiers: dict[str, TierSpec]


class TenantKey(BaseModel):
    """One of a tenant's signing keys. An HMAC key's secret is never here (nor on a topic)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key_id: Annotated[str, Field(pattern=KEY_ID_PATTERN)]
    scheme: Literal["hmac-sha256", "ed25519"]
    public_key: str | None = None  # ed25519: base64 of the 32 raw bytes
    not_before: AwareDatetime | None = None
    not_after: AwareDatetime | None = None

    @model_validator(mode="after")
    def _material_and_window(self) -> TenantKey:
        if self.scheme == "ed25519":
            try:
                raw = base64.b64decode(self.public_key or "", validate=True)
            except binascii.Error:
                raw = b""
            if len(raw) != 32:
                raise ValueError("an ed25519 key needs public_key: the base64 of its 32 raw bytes")
        elif self.public_key is not None:
            raise ValueError(
                "an hmac-sha256 key has no public_key: its secret stays with the workers"
            )
        if self.not_before and self.not_after and self.not_after <= self.not_before:
            raise ValueError("not_after must be later than not_before")
        return self

    def window_ms(self) -> tuple[int | None, int | None]:
        """not_before and not_after as epoch milliseconds (None: open)."""
        return _ms(self.not_before), _ms(self.not_after)

    def valid_at(self, when: datetime) -> bool:
        """Whether the key may sign at `when`."""
        return in_window(round(when.timestamp() * 1000), *self.window_ms())


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
    auth: AuthMode | None = None  # None: the tiers file's default
    keys: list[TenantKey] = []

    def to_avro(self, updated_at_ms: int) -> dict[str, Any]:
        """The `TenantConfig` Avro record (key windows as epoch milliseconds)."""
        record = self.model_dump()
        for key, model in zip(record["keys"], self.keys, strict=True):
            key["not_before"], key["not_after"] = model.window_ms()
        return {**record, "updated_at": updated_at_ms}

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> TenantConfig:
        """Read back a `TenantConfig` Avro record (ignores `updated_at`)."""
        fields = {k: v for k, v in record.items() if k != "updated_at"}
        fields["keys"] = [
            {
                **key,
                **{
                    end: None if key[end] is None else datetime.fromtimestamp(key[end] / 1000, UTC)
                    for end in ("not_before", "not_after")
                },
            }
            for key in fields.get("keys", [])
        ]
        return cls.model_validate(fields)

    def auth_mode(self, tiers: Tiers) -> AuthMode:
        """Whether this tenant's events must be signed (its own setting, else the tiers')."""
        return self.auth or tiers.auth


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


def _ms(when: datetime | None) -> int | None:
    return None if when is None else round(when.timestamp() * 1000)


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


def load_tenants_file(path: Path, tiers: Tiers, now: datetime | None = None) -> list[TenantConfig]:
    """Tenants from a YAML file (`tenants: [...]`), validated against the tiers.

    A tenant that requires signed events must have a key valid `now`, or none of its events
    could be admitted: such a file is refused, not applied.
    """
    now = now or datetime.now(UTC)
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
        if config.auth_mode(tiers) == "required" and not any(
            key.valid_at(now) for key in config.keys
        ):
            raise GuardstreamError(
                f"{path}: tenants[{i}] ({config.tenant_id}) requires signed events but has "
                "no key valid now",
                "add a key under `keys:` (key_id, scheme, and public_key for ed25519), or "
                "set `auth: optional` until its clients sign",
            )
        out.append(config)
    return out
