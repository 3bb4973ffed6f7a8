"""The HMAC signing secrets: a YAML file beside the workers, never on a topic.

    acme:
      billing-2026-12: whsec_<base64 of the secret>

Ed25519 keys need no secret here: tenant config holds their public keys. The file is written
owner-only (0600) by `guardstream keys new`.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import yaml

from guardstream.errors import GuardstreamError

PREFIX = "whsec_"


def encode_secret(secret: bytes) -> str:
    """A secret as it is written and shown (the Standard Webhooks spelling)."""
    return PREFIX + base64.b64encode(secret).decode()


def decode_secret(text: str) -> bytes:
    """A secret from its written form (raises ValueError if it is not `whsec_<base64>`)."""
    if not text.startswith(PREFIX):
        raise ValueError(f"not `{PREFIX}<base64>`")
    try:
        return base64.b64decode(text[len(PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError(f"not `{PREFIX}<base64>`") from None


def load_secrets(path: Path) -> dict[str, dict[str, bytes]]:
    """Secrets by tenant and key id ({} when the file does not exist)."""
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    out: dict[str, dict[str, bytes]] = {}
    for tenant, keys in raw.items() if isinstance(raw, dict) else []:
        for key_id, text in (keys or {}).items():
            try:
                out.setdefault(str(tenant), {})[str(key_id)] = decode_secret(str(text))
            except ValueError:
                raise GuardstreamError(
                    f"{path}: the secret of {tenant}/{key_id} is not `{PREFIX}<base64>`",
                    "write it as `guardstream keys new` printed it",
                ) from None
    return out


def add_secret(path: Path, tenant: str, key_id: str, secret: bytes) -> None:
    """Store one secret, keeping the file readable by its owner only."""
    current = yaml.safe_load(path.read_text()) if path.exists() else None
    data = current if isinstance(current, dict) else {}
    data.setdefault(tenant, {})[key_id] = encode_secret(secret)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=True)
    os.replace(tmp, path)
