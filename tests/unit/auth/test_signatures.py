"""Signing and verifying records: every way to misuse a signature fails with its reason."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from guardstream.auth.signature import (
    MAX_ENTRIES,
    Scheme,
    Signed,
    message,
    sign_ed25519,
    sign_hmac,
)
from guardstream.auth.verify import DEFAULT_TOLERANCE_MS, Failure, Key, Verdict, verify

INVALID = Failure.INVALID

SECRET = os.urandom(32)
PRIVATE = Ed25519PrivateKey.generate()
PUBLIC = PRIVATE.public_key().public_bytes_raw()
SIGNED = Signed(
    "acme", "req-1", "/billing/api", "io.guardstream.request.v1", "2026-12-01T10:00:00Z"
)
VALUE = b"\x00\x00\x00\x00\x07avro body with a . and a \n inside"
BROKER_MS = 1_796_119_200_000 + 2_000  # two seconds after SIGNED's time
HMAC_KEY = Key("k1", Scheme.HMAC_SHA256, SECRET)
ED_KEY = Key("e1", Scheme.ED25519, PUBLIC)


def _check(
    header: str | bytes | None,
    signed: Signed = SIGNED,
    value: bytes = VALUE,
    keys: Sequence[Key] = (HMAC_KEY, ED_KEY),
    at: int = BROKER_MS,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
) -> Verdict:
    raw = header.encode() if isinstance(header, str) else header
    return verify(raw, signed, value, keys, at, tolerance_ms)


def test_both_schemes_verify_and_name_their_key() -> None:
    assert _check(sign_hmac(SECRET, "k1", SIGNED, VALUE)).key_id == "k1"
    assert _check(sign_ed25519(PRIVATE.private_bytes_raw(), "e1", SIGNED, VALUE)).key_id == "e1"


@pytest.mark.parametrize("field", ["tenant_id", "ce_id", "ce_source", "ce_type"])
def test_a_signature_does_not_survive_a_changed_attribute(field: str) -> None:
    header = sign_hmac(SECRET, "k1", SIGNED, VALUE)
    verdict = _check(header, signed=replace(SIGNED, **{field: "other"}))
    assert verdict.failure is Failure.INVALID


def test_a_signature_does_not_survive_a_changed_time_or_body() -> None:
    header = sign_ed25519(PRIVATE.private_bytes_raw(), "e1", SIGNED, VALUE)
    assert (
        _check(header, signed=replace(SIGNED, ce_time="2026-12-01T10:00:01Z")).failure
        is Failure.INVALID
    )
    assert _check(header, value=VALUE + b"!").failure is Failure.INVALID


@given(st.integers(min_value=0, max_value=len(VALUE) - 1), st.integers(min_value=1, max_value=255))
def test_any_changed_byte_of_the_value_breaks_the_signature(at: int, flip: int) -> None:
    tampered = bytearray(VALUE)
    tampered[at] ^= flip
    assert (
        _check(sign_hmac(SECRET, "k1", SIGNED, VALUE), value=bytes(tampered)).failure
        is Failure.INVALID
    )


def test_fields_cannot_shift_into_each_other() -> None:
    # Joined with dots these two would be the same string; length prefixes keep them apart.
    a = replace(SIGNED, ce_id="a.b", ce_source="c")
    b = replace(SIGNED, ce_id="a", ce_source="b.c")
    assert message(Scheme.HMAC_SHA256, "k1", a, VALUE) != message(
        Scheme.HMAC_SHA256, "k1", b, VALUE
    )


def test_an_entry_cannot_move_to_another_key_or_scheme() -> None:
    entry = sign_hmac(SECRET, "k1", SIGNED, VALUE)
    twin = Key("k2", Scheme.HMAC_SHA256, SECRET)  # same secret, other id
    assert _check(entry.replace(",k1,", ",k2,"), keys=[twin]).failure is Failure.INVALID
    assert (
        _check(entry.replace("v1,", "v1a,", 1), keys=[Key("k1", Scheme.ED25519, PUBLIC)]).failure
        is Failure.INVALID
    )


def test_keys_of_another_tenant_or_unknown_ids_do_not_verify() -> None:
    header = sign_hmac(SECRET, "k1", SIGNED, VALUE)
    verdict = _check(header, keys=[Key("k1", Scheme.HMAC_SHA256, os.urandom(32))])
    assert verdict.failure is Failure.INVALID
    assert _check(header, keys=[ED_KEY]).failure is Failure.INVALID


def test_retired_and_not_yet_valid_keys_are_refused() -> None:
    header = sign_hmac(SECRET, "k1", SIGNED, VALUE)
    retired = replace(HMAC_KEY, not_after_ms=BROKER_MS - 1)
    future = replace(HMAC_KEY, not_before_ms=BROKER_MS + 1)
    for key in (retired, future):
        verdict = _check(header, keys=[key])
        assert verdict.failure is Failure.INVALID and "not valid" in verdict.detail
    assert _check(header, keys=[replace(HMAC_KEY, not_after_ms=BROKER_MS)]).ok


def test_rotation_any_valid_entry_of_several_verifies() -> None:
    old = sign_hmac(SECRET, "k1", SIGNED, VALUE)
    new_secret = os.urandom(32)
    new = sign_hmac(new_secret, "k2", SIGNED, VALUE)
    both = f"{old} {new}"
    new_key = Key("k2", Scheme.HMAC_SHA256, new_secret)
    # Before the tenant's config has the new key, and after the old one is retired.
    assert _check(both, keys=[HMAC_KEY]).key_id == "k1"
    assert _check(both, keys=[replace(HMAC_KEY, not_after_ms=0), new_key]).key_id == "k2"


def test_signed_time_far_from_the_broker_time_is_expired() -> None:
    header = sign_hmac(SECRET, "k1", SIGNED, VALUE)
    late = BROKER_MS + 10 * 60 * 1000
    verdict = _check(header, at=late)
    assert verdict.failure is Failure.EXPIRED and "tolerance 300 s" in verdict.detail
    assert _check(header, at=late, tolerance_ms=11 * 60 * 1000).ok


def test_a_time_without_an_offset_is_not_rfc3339() -> None:
    naive = replace(SIGNED, ce_time="2026-12-01T10:00:00")
    assert _check(sign_hmac(SECRET, "k1", naive, VALUE), signed=naive).failure is Failure.INVALID


@pytest.mark.parametrize(
    "header",
    [
        "v1,k1",  # two fields
        "v9,k1,AAAA",  # unknown scheme
        "v1,k 1,AAAA",  # key id with a space (read as two entries)
        "v1,k/1,AAAA",  # key id outside the alphabet
        "v1,k1,not base64!",
        " ".join(["v1,k1,AAAA"] * (MAX_ENTRIES + 1)),
        "v1,k1,AAAA\xe9".encode("latin-1"),
    ],
)
def test_malformed_headers_are_invalid_not_errors(header: str | bytes) -> None:
    assert _check(header).failure is Failure.INVALID


def test_no_header_is_missing() -> None:
    assert _check(None).failure is Failure.MISSING


def test_a_key_id_a_header_could_not_carry_is_refused_when_signing() -> None:
    with pytest.raises(ValueError, match="key id"):
        sign_hmac(SECRET, "has space", SIGNED, VALUE)
