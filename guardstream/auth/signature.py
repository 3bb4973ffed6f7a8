"""The signature format: what a client signs, and how signatures travel in a header.

A client signs each request or usage event it produces and puts the result in the
`ce_gssig` header (a CloudEvents extension attribute in Kafka binary mode, so the official
SDKs carry it untouched). The header holds one or more entries separated by single spaces,
so a client can sign with an old and a new key while a key is being rotated:

    v1,<key id>,<base64 signature>     HMAC-SHA256 with a secret shared with guardstream
    v1a,<key id>,<base64 signature>    Ed25519; guardstream holds only the public key

The scheme prefixes are Standard Webhooks' (`v1` HMAC, `v1a` Ed25519). Unlike Standard
Webhooks, which signs `id.timestamp.body`, the signed message here is a sequence of
length-prefixed fields: CloudEvents ids and sources may contain dots and the value is binary
Avro, so a joined string would be ambiguous. Each entry signs its own scheme and key id too,
so a signature cannot be moved to another key or algorithm:

    b"guardstream-sig/1" then, each as a 4-byte big-endian length and its bytes:
    scheme, key id, tenant id, ce_id, ce_source, ce_type, ce_time, the record value

The value is signed exactly as produced (the Confluent framing included), so neither the
body nor its schema id can change under a signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HEADER = "ce_gssig"
TAG = b"guardstream-sig/1"
# Entries looked at per record: each Ed25519 verify costs ~0.1 ms, so a header stuffed with
# junk entries must not buy a client that much of a worker's time.
MAX_ENTRIES = 4
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LENGTH = struct.Struct(">I")


class Scheme(StrEnum):
    """How an entry is signed (the entry's prefix)."""

    HMAC_SHA256 = "v1"
    ED25519 = "v1a"


@dataclass(frozen=True)
class Signed:
    """The attributes a signature covers, besides the value."""

    tenant_id: str
    ce_id: str
    ce_source: str
    ce_type: str
    ce_time: str


@dataclass(frozen=True)
class Entry:
    """One signature from the header."""

    scheme: Scheme
    key_id: str
    signature: bytes


class MalformedHeader(ValueError):
    """The signature header cannot be read (the record carries no usable signature)."""


def message(scheme: Scheme, key_id: str, signed: Signed, value: bytes) -> bytes:
    """The exact bytes an entry's signature is computed over."""
    parts = [
        scheme.value.encode(),
        key_id.encode(),
        signed.tenant_id.encode(),
        signed.ce_id.encode(),
        signed.ce_source.encode(),
        signed.ce_type.encode(),
        signed.ce_time.encode(),
        value,
    ]
    return TAG + b"".join(_LENGTH.pack(len(p)) + p for p in parts)


def sign_hmac(secret: bytes, key_id: str, signed: Signed, value: bytes) -> str:
    """A `v1` header entry: HMAC-SHA256 of the message with a shared secret."""
    mac = hmac.digest(secret, message(Scheme.HMAC_SHA256, key_id, signed, value), hashlib.sha256)
    return format_entry(Entry(Scheme.HMAC_SHA256, key_id, mac))


def sign_ed25519(private_key: bytes, key_id: str, signed: Signed, value: bytes) -> str:
    """A `v1a` header entry: Ed25519 signature of the message (32-byte raw private key)."""
    key = Ed25519PrivateKey.from_private_bytes(private_key)
    return format_entry(
        Entry(Scheme.ED25519, key_id, key.sign(message(Scheme.ED25519, key_id, signed, value)))
    )


def format_entry(entry: Entry) -> str:
    """One entry as it appears in the header."""
    if not _KEY_ID.fullmatch(entry.key_id):
        raise ValueError(f"key id {entry.key_id!r}: use 1-64 of A-Z a-z 0-9 . _ -")
    return f"{entry.scheme.value},{entry.key_id},{base64.b64encode(entry.signature).decode()}"


def parse_header(raw: bytes) -> list[Entry]:
    """The entries of a `ce_gssig` header value (raises `MalformedHeader`)."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedHeader("the signature header is not ASCII") from exc
    items = text.split(" ")
    if len(items) > MAX_ENTRIES:
        raise MalformedHeader(f"{len(items)} signatures; at most {MAX_ENTRIES} are read")
    entries = []
    for item in items:
        fields = item.split(",")
        if len(fields) != 3:
            raise MalformedHeader("an entry is not `scheme,key id,signature`")
        prefix, key_id, b64 = fields
        try:
            scheme = Scheme(prefix)
        except ValueError as exc:
            raise MalformedHeader(f"unknown signature scheme {prefix[:8]!r}") from exc
        if not _KEY_ID.fullmatch(key_id):
            raise MalformedHeader("a key id is not 1-64 of A-Z a-z 0-9 . _ -")
        try:
            signature = base64.b64decode(b64, validate=True)
        except binascii.Error as exc:
            raise MalformedHeader("a signature is not base64") from exc
        entries.append(Entry(scheme, key_id, signature))
    return entries
