"""`guardstream keys`: a tenant's signing keys, kept in the operator's tenants file.

The tenants file stays the one source of truth (`tenants apply` publishes it), so these
commands edit it in place, keeping its comments and layout, and refuse any change after
which the file would not apply (a tenant that requires signatures left without a valid key).
Rotation: `keys new` (clients start signing with both keys), `keys retire` the old one once
every client has moved, `tenants apply` after each step.
"""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ruamel.yaml import YAML

from guardstream.config.secrets import add_secret, encode_secret, load_secrets
from guardstream.config.tenants import TenantKey, Tiers, load_tenants_file
from guardstream.errors import GuardstreamError

KeyScheme = Literal["ed25519", "hmac-sha256"]


@dataclass(frozen=True)
class NewKey:
    """A key just made: what goes to the client, shown once."""

    key_id: str
    scheme: KeyScheme
    client_secret: str  # the Ed25519 private key (base64) or the HMAC secret (whsec_...)


@dataclass(frozen=True)
class KeyState:
    """One key of a tenant, as `keys list` shows it."""

    key: TenantKey
    state: Literal["valid", "not yet valid", "retired"]
    secret_here: bool | None  # HMAC: whether this machine's secrets file has it


def new_key(
    tenants_file: Path,
    tiers: Tiers,
    tenant: str,
    scheme: KeyScheme,
    secrets_file: Path,
    key_id: str | None = None,
    now: datetime | None = None,
) -> NewKey:
    """Make a key, add it to the tenant in the file (valid from now), and return its secret."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    key_id = key_id or f"{tenant}-{now:%Y%m%d}-{secrets.token_hex(2)}"
    entry: dict[str, Any] = {"key_id": key_id, "scheme": scheme}
    if scheme == "ed25519":
        private = Ed25519PrivateKey.generate()
        entry["public_key"] = base64.b64encode(private.public_key().public_bytes_raw()).decode()
        shown = base64.b64encode(private.private_bytes_raw()).decode()
    else:
        secret = secrets.token_bytes(32)
        shown = encode_secret(secret)
    entry["not_before"] = _iso(now)

    def add(config: dict[str, Any]) -> None:
        if any(k.get("key_id") == key_id for k in config.get("keys") or []):
            raise GuardstreamError(f"{tenant} already has a key {key_id}", "pick another --id")
        config.setdefault("keys", []).append(entry)

    _edit(tenants_file, tiers, tenant, add, now)
    if scheme == "hmac-sha256":
        add_secret(secrets_file, tenant, key_id, secret)
    return NewKey(key_id, scheme, shown)


def retire_key(
    tenants_file: Path, tiers: Tiers, tenant: str, key_id: str, now: datetime | None = None
) -> None:
    """End a key's validity now (it stays listed, so records signed before still verify)."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)

    def retire(config: dict[str, Any]) -> None:
        for key in config.get("keys") or []:
            if key.get("key_id") == key_id:
                key["not_after"] = _iso(now)
                return
        raise GuardstreamError(
            f"{tenant} has no key {key_id}", f"see `guardstream keys list {tenant}`"
        )

    # Judged just after: the key is still valid at the instant it is retired.
    _edit(tenants_file, tiers, tenant, retire, now + timedelta(seconds=1))


def list_keys(
    tenants_file: Path, tiers: Tiers, tenant: str, secrets_file: Path, now: datetime | None = None
) -> list[KeyState]:
    """The tenant's keys in the file, with their state now."""
    now = now or datetime.now(UTC)
    config = next(
        (c for c in load_tenants_file(tenants_file, tiers, now) if c.tenant_id == tenant), None
    )
    if config is None:
        raise GuardstreamError(f"{tenants_file} has no tenant {tenant}", "check the tenant id")
    held = load_secrets(secrets_file).get(tenant, {})
    out = []
    for key in config.keys:
        state: Literal["valid", "not yet valid", "retired"] = "valid"
        if not key.valid_at(now):
            early = key.not_before is not None and now < key.not_before
            state = "not yet valid" if early else "retired"
        secret_here = key.key_id in held if key.scheme == "hmac-sha256" else None
        out.append(KeyState(key, state, secret_here))
    return out


def _edit(tenants_file: Path, tiers: Tiers, tenant: str, change: Any, check_at: datetime) -> None:
    """Apply `change` to the tenant's entry, validate the whole file at `check_at`, replace it."""
    yaml = YAML()  # round-trip: comments, order and layout survive
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # `  - item` lists, as the examples write them
    doc = yaml.load(tenants_file.read_text())
    entries = doc.get("tenants") if hasattr(doc, "get") else None
    config = next((t for t in entries or [] if t.get("tenant_id") == tenant), None)
    if config is None:
        raise GuardstreamError(
            f"{tenants_file} has no tenant {tenant}", "add the tenant to the file first"
        )
    change(config)
    fd, tmp_name = tempfile.mkstemp(dir=tenants_file.parent, suffix=".yaml")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as f:
            yaml.dump(doc, f)
        load_tenants_file(tmp, tiers, check_at)  # refuses what `tenants apply` would refuse
        os.replace(tmp, tenants_file)
    finally:
        tmp.unlink(missing_ok=True)


def _iso(when: datetime) -> str:
    """A UTC time as the tenants file spells it: 2026-12-01T10:00:00Z."""
    return when.isoformat().replace("+00:00", "Z")
