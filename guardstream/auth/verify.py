"""Verifying a record's signature against its tenant's keys.

`verify` runs on the raw record, before anything reads the payload: it needs the signature
header, the signed attributes and the value bytes as they arrived. The tenant it checks is
the one the record claims in its signed attributes (`ce_tenantid`); the caller must then
refuse a payload whose own tenant id differs, so a valid signature of one tenant cannot
carry a body for another.

Time: a key's validity window and the signed `ce_time` are both judged against the record's
broker timestamp (LogAppendTime on the ingress topics), never the worker's clock, so a
worker catching up on an hour of lag accepts what was valid when it was produced.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from guardstream.auth.signature import (
    Entry,
    MalformedHeader,
    Scheme,
    Signed,
    message,
    parse_header,
)

DEFAULT_TOLERANCE_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class Key:
    """One of a tenant's keys: an HMAC secret or a raw 32-byte Ed25519 public key."""

    key_id: str
    scheme: Scheme
    material: bytes
    not_before_ms: int | None = None
    not_after_ms: int | None = None

    def valid_at(self, ts_ms: int) -> bool:
        """Whether the key may sign a record with this broker timestamp."""
        return in_window(ts_ms, self.not_before_ms, self.not_after_ms)


def in_window(ts_ms: int, not_before_ms: int | None, not_after_ms: int | None) -> bool:
    """Whether `ts_ms` lies in a key's validity window (both ends inclusive, None: open)."""
    if not_before_ms is not None and ts_ms < not_before_ms:
        return False
    return not_after_ms is None or ts_ms <= not_after_ms


class Failure(StrEnum):
    """Why a record is not authenticated (each becomes a reason code when refused)."""

    MISSING = "missing"  # no signature header
    INVALID = "invalid"  # unreadable, unknown or retired key, or no entry verifies
    EXPIRED = "expired"  # verified, but signed too far from when the broker took it


@dataclass(frozen=True)
class Verdict:
    """The outcome: the key that verified, or why none did."""

    key_id: str | None
    failure: Failure | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the record is authenticated."""
        return self.failure is None


def verify(
    header: bytes | None,
    signed: Signed,
    value: bytes,
    keys: Sequence[Key],
    broker_ts_ms: int,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
) -> Verdict:
    """Check the record's signature header against `keys` (the claimed tenant's)."""
    if header is None:
        return Verdict(None, Failure.MISSING, "no signature header")
    try:
        entries = parse_header(header)
    except MalformedHeader as exc:
        return Verdict(None, Failure.INVALID, str(exc))
    detail = "no signature is by a key of this tenant"
    for entry in entries:
        key = next((k for k in keys if k.key_id == entry.key_id), None)
        if key is None or key.scheme is not entry.scheme:
            continue
        if not key.valid_at(broker_ts_ms):
            detail = f"key {key.key_id} is not valid at the record's time"
            continue
        if not _verifies(key, entry, message(entry.scheme, entry.key_id, signed, value)):
            detail = f"the signature by key {key.key_id} does not match"
            continue
        return _fresh(key.key_id, signed.ce_time, broker_ts_ms, tolerance_ms)
    return Verdict(None, Failure.INVALID, detail)


def _verifies(key: Key, entry: Entry, msg: bytes) -> bool:
    if key.scheme is Scheme.HMAC_SHA256:
        return hmac.compare_digest(hmac.digest(key.material, msg, hashlib.sha256), entry.signature)
    try:
        Ed25519PublicKey.from_public_bytes(key.material).verify(entry.signature, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


def _fresh(key_id: str, ce_time: str, broker_ts_ms: int, tolerance_ms: int) -> Verdict:
    try:
        when = datetime.fromisoformat(ce_time)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:  # RFC 3339 times carry their offset
        return Verdict(None, Failure.INVALID, "ce_time is not an RFC 3339 time")
    signed_ms = round(when.timestamp() * 1000)
    if abs(signed_ms - broker_ts_ms) > tolerance_ms:
        return Verdict(
            None,
            Failure.EXPIRED,
            f"signed at {ce_time}, {abs(signed_ms - broker_ts_ms) // 1000} s from the "
            f"broker's time (tolerance {tolerance_ms // 1000} s)",
        )
    return Verdict(key_id)
