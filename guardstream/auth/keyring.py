"""Which keys a tenant signs with, and whether it must: tenant config plus the secrets file.

Tenant config (the `tenants` topic) names each key, its scheme and window, and holds Ed25519
public keys; HMAC secrets come from the workers' secrets file. The keyring joins the two per
tenant, and re-reads the secrets file when it changes, so `guardstream keys new` followed by
`tenants apply` reaches running workers without a restart.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from guardstream.auth.signature import Scheme
from guardstream.auth.verify import Key
from guardstream.config.secrets import load_secrets
from guardstream.config.tenants import AuthMode, TenantConfig, TenantKey, Tiers

log = logging.getLogger(__name__)
_SCHEMES = {"hmac-sha256": Scheme.HMAC_SHA256, "ed25519": Scheme.ED25519}
# How often the secrets file's modification time is looked at (it is a stat per check).
_SECRETS_CHECK_S = 1.0


@dataclass(frozen=True)
class TenantAuth:
    """What verification needs for one tenant: its mode and its usable keys."""

    mode: AuthMode
    keys: tuple[Key, ...] = ()


def to_key(key: TenantKey, secret: bytes | None) -> Key | None:
    """A tenant key with its material, or None for an HMAC key whose secret is not here."""
    if key.scheme == "ed25519":
        material = base64.b64decode(key.public_key or "")
    elif secret is None:
        return None
    else:
        material = secret
    nb, na = key.window_ms()
    return Key(key.key_id, _SCHEMES[key.scheme], material, nb, na)


@dataclass
class Keyring:
    """Per-tenant auth, built from the live tenant directory and the secrets file."""

    config_of: Callable[[str], TenantConfig | None]
    tiers: Tiers
    secrets_path: Path
    _secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    _secrets_mtime: float | None = None
    _checked_at: float = float("-inf")
    _cache: dict[str, tuple[TenantConfig | None, int, TenantAuth]] = field(default_factory=dict)
    _generation: int = 0
    _warned: set[tuple[str, str]] = field(default_factory=set)

    def for_tenant(self, tenant_id: str) -> TenantAuth:
        """The tenant's mode and keys (cached until its config or the secrets change)."""
        self._refresh_secrets()
        config = self.config_of(tenant_id)
        hit = self._cache.get(tenant_id)
        if hit is not None and hit[0] is config and hit[1] == self._generation:
            return hit[2]
        auth = self._build(tenant_id, config)
        if len(self._cache) > 100_000:  # claimed tenant ids are client input: bound them
            self._cache.clear()
        self._cache[tenant_id] = (config, self._generation, auth)
        return auth

    def _build(self, tenant_id: str, config: TenantConfig | None) -> TenantAuth:
        if config is None:
            return TenantAuth(self.tiers.auth)
        held = self._secrets.get(tenant_id, {})
        keys = []
        for tenant_key in config.keys:
            key = to_key(tenant_key, held.get(tenant_key.key_id))
            if key is None:
                if (tenant_id, tenant_key.key_id) not in self._warned:
                    self._warned.add((tenant_id, tenant_key.key_id))
                    log.warning(
                        "HMAC key %s of tenant %s has no secret in %s: its signatures fail; "
                        "copy the secret there (guardstream keys new writes it)",
                        tenant_key.key_id,
                        tenant_id,
                        self.secrets_path,
                    )
                continue
            keys.append(key)
        return TenantAuth(config.auth_mode(self.tiers), tuple(keys))

    def _refresh_secrets(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < _SECRETS_CHECK_S:
            return
        self._checked_at = now
        try:
            mtime: float | None = self.secrets_path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._secrets_mtime and self._generation:
            return
        try:
            self._secrets = load_secrets(self.secrets_path)
        except Exception as exc:  # a half-edited file: keep what worked, say why
            log.error("cannot read the HMAC secrets in %s: %s", self.secrets_path, exc)
            return
        self._secrets_mtime = mtime
        self._generation += 1
