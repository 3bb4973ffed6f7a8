"""The client's side: signing a binary-mode event's headers and value with a tenant's keys.

guardstream's own producers (`guardstream produce`, the demo, the benchmarks) sign with this;
the README shows the same steps for a stock client. Signing reads the attributes from the
headers as they will be sent, so what is signed is exactly what goes on the wire.

A client keys file (what `guardstream keys new` showed, kept by the client) looks like:

    acme:
      - {key_id: acme-20261201-1a2b, scheme: ed25519, secret: <base64 private key>}
    globex:
      - {key_id: globex-20261201-3c4d, scheme: hmac-sha256, secret: whsec_<base64>}
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from guardstream.auth.signature import HEADER, Scheme, Signed, sign_ed25519, sign_hmac
from guardstream.config.secrets import decode_secret, encode_secret
from guardstream.errors import GuardstreamError

TENANT_HEADER = "ce_tenantid"
_SCHEMES = {"hmac-sha256": Scheme.HMAC_SHA256, "ed25519": Scheme.ED25519}


@dataclass(frozen=True)
class ClientKey:
    """A key a client signs with: an HMAC secret or a raw 32-byte Ed25519 private key."""

    key_id: str
    scheme: Scheme
    secret: bytes

    @classmethod
    def from_shown(cls, key_id: str, scheme: str, shown: str) -> ClientKey:
        """The key from what `guardstream keys new` printed (raises ValueError)."""
        if scheme not in _SCHEMES:
            raise ValueError(f"scheme {scheme!r} is not ed25519 or hmac-sha256")
        try:
            if scheme == "hmac-sha256":
                secret = decode_secret(shown)
            else:
                secret = base64.b64decode(shown, validate=True)
        except (ValueError, binascii.Error):
            raise ValueError(f"the secret of key {key_id} is not as `keys new` showed it") from None
        if scheme == "ed25519" and len(secret) != 32:
            raise ValueError(f"key {key_id}: an ed25519 private key is 32 bytes")
        return cls(key_id, _SCHEMES[scheme], secret)

    def to_shown(self) -> dict[str, str]:
        """The key as one entry of a client keys file."""
        if self.scheme is Scheme.HMAC_SHA256:
            secret = encode_secret(self.secret)
            return {"key_id": self.key_id, "scheme": "hmac-sha256", "secret": secret}
        raw = base64.b64encode(self.secret).decode()
        return {"key_id": self.key_id, "scheme": "ed25519", "secret": raw}


def sign_headers(
    headers: Sequence[tuple[str, bytes]], value: bytes, keys: Sequence[ClientKey]
) -> list[tuple[str, bytes]]:
    """`headers` plus the `ce_gssig` header: one signature per key (two while rotating).

    The headers must already hold `ce_id`, `ce_source`, `ce_type`, `ce_time` and
    `ce_tenantid`: those are what the signature covers, with the value.
    """
    attrs = {k: v.decode() for k, v in headers}
    missing = [
        h for h in ("ce_id", "ce_source", "ce_type", "ce_time", TENANT_HEADER) if h not in attrs
    ]
    if missing:
        raise ValueError(f"cannot sign an event without {', '.join(missing)}")
    signed = Signed(
        attrs[TENANT_HEADER], attrs["ce_id"], attrs["ce_source"], attrs["ce_type"], attrs["ce_time"]
    )
    entries = [
        sign_hmac(k.secret, k.key_id, signed, value)
        if k.scheme is Scheme.HMAC_SHA256
        else sign_ed25519(k.secret, k.key_id, signed, value)
        for k in keys
    ]
    return [*headers, (HEADER, " ".join(entries).encode())]


def load_client_keys(path: Path) -> dict[str, list[ClientKey]]:
    """A client keys file: the keys each tenant signs with."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise GuardstreamError(
            f"cannot read the client keys file {path}: {exc}",
            "pass the file the keys were saved to (see the README's signing section)",
        ) from None
    out: dict[str, list[ClientKey]] = {}
    for tenant, entries in raw.items() if isinstance(raw, dict) else []:
        for i, entry in enumerate(entries or []):
            try:
                key = ClientKey.from_shown(
                    str(entry["key_id"]), str(entry["scheme"]), str(entry["secret"])
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise GuardstreamError(
                    f"{path}: {tenant}[{i}] is not a key ({exc})",
                    "write each key as {key_id, scheme, secret}",
                ) from None
            out.setdefault(str(tenant), []).append(key)
    return out


def save_client_keys(path: Path, keys: Mapping[str, Sequence[ClientKey]]) -> None:
    """Write a client keys file readable by its owner only."""
    data: dict[str, Any] = {t: [k.to_shown() for k in ks] for t, ks in keys.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=True)
