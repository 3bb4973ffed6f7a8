"""Signed events through the ingest judge: each way to misuse a signature gets its code.

The judge here is the one the worker runs (same codec, same schemas); tenants' keys come
from a Keyring over an in-memory directory and a real secrets file. "Forwarded" means the
event reached `metering` (charging happens only there, so a refusal here charges nothing).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from guardstream.auth.client import ClientKey, load_client_keys, save_client_keys, sign_headers
from guardstream.auth.keyring import Keyring
from guardstream.auth.signature import Scheme
from guardstream.config.catalog import cached_catalog
from guardstream.config.secrets import add_secret
from guardstream.config.tenants import TenantConfig, Tiers
from guardstream.ingest.authenticate import Authenticator
from guardstream.ingest.judge import Judge
from guardstream.records import Ingress, Outcome, RawRecord, decision_outcome
from guardstream.serde.avro import encode
from guardstream.serde.schemas import reader_schema
from guardstream.streams.cloudevents import format_time
from guardstream.streams.topics import REQUEST_TYPE, Topic
from tests import SCHEMA_DIR
from tests.corpus import hostile
from tests.unit.ingest.test_judge import CODEC, SETTINGS, USAGE_ID, _record, _request, _usage

BROKER_MS = 1_796_119_200_000
SECRET = os.urandom(32)
PRIVATE = Ed25519PrivateKey.generate()
ACME_KEY = ClientKey("acme-1", Scheme.HMAC_SHA256, SECRET)
GLOBEX_KEY = ClientKey("globex-1", Scheme.ED25519, PRIVATE.private_bytes_raw())
RETIRED_AT = datetime.fromtimestamp(BROKER_MS / 1000, UTC) - timedelta(hours=1)


def _tenants() -> dict[str, TenantConfig]:
    public = PRIVATE.public_key().public_bytes_raw()
    return {
        "acme": TenantConfig.model_validate(
            {
                "tenant_id": "acme",
                "auth": "required",
                "keys": [
                    {"key_id": "acme-1", "scheme": "hmac-sha256"},
                    {"key_id": "acme-old", "scheme": "hmac-sha256", "not_after": RETIRED_AT},
                ],
            }
        ),
        "globex": TenantConfig.model_validate(
            {
                "tenant_id": "globex",
                "auth": "optional",
                "keys": [
                    {
                        "key_id": "globex-1",
                        "scheme": "ed25519",
                        "public_key": base64.b64encode(public).decode(),
                    }
                ],
            }
        ),
        "initech": TenantConfig(tenant_id="initech", auth="off"),
    }


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> Judge:
    secrets = tmp_path_factory.mktemp("auth") / "secrets.yaml"
    add_secret(secrets, "acme", "acme-1", SECRET)
    add_secret(secrets, "acme", "acme-old", SECRET)
    tenants = _tenants()
    tiers = Tiers.model_validate(
        {
            "version": 1,
            "default_tier": "standard",
            "auth": "off",
            "tiers": {
                "standard": {
                    "requests_per_minute": 1,
                    "tokens_per_minute": 1,
                    "burst_requests": 1,
                    "burst_tokens": 1,
                }
            },
        }
    )
    keyring = Keyring(tenants.get, tiers, secrets)
    return Judge(
        CODEC,
        cached_catalog(SETTINGS.model_catalog),
        SETTINGS.max_record_bytes,
        authenticator=Authenticator(keyring.for_tenant),
    )


def _event(
    tenant: str,
    *,
    claimed: str | None = "same",
    keys: Sequence[ClientKey] = (),
    signed_at_ms: int = BROKER_MS - 1500,
    event_id: str = "req-1",
    value: bytes | None = None,
) -> tuple[list[tuple[str, bytes]], bytes]:
    """Binary-mode headers and value of a request for `tenant`, signed with `keys`."""
    value = value if value is not None else _request(tenant_id=tenant)
    headers = [
        (k, v)
        for k, v in hostile.headers(
            event_id, extra=(("ce_time", format_time(signed_at_ms).encode()),)
        )
        if v is not None
    ]
    if claimed is not None:
        headers.append(("ce_tenantid", (tenant if claimed == "same" else claimed).encode()))
    if keys:
        headers = sign_headers(headers, value, keys)
    return headers, value


def _judge(judge: Judge, headers: list[tuple[str, bytes]], value: bytes) -> Outcome:
    rec = RawRecord(
        Ingress(SETTINGS.topic(Topic.REQUESTS), 0, 1, BROKER_MS), b"k", value, list(headers)
    )
    return judge.judge(rec)


def _code(out: Outcome) -> str | None:
    record = _record(out)
    if out.topic == Topic.METERING:
        return None
    return str(record["reasons"][0]["code"])


def test_a_signed_request_is_forwarded_naming_who_signed(judge: Judge) -> None:
    for tenant, key in (("acme", ACME_KEY), ("globex", GLOBEX_KEY)):
        out = _judge(judge, *_event(tenant, keys=[key]))
        assert out.topic == Topic.METERING
        assert _record(out)["authid"] == f"{tenant}/{key.key_id}"


def test_a_missing_signature_on_a_required_tenant_is_refused(judge: Judge) -> None:
    # Naming the tenant or not: the payload's tenant requires a signature either way.
    for claimed in ("same", None):
        out = _judge(judge, *_event("acme", claimed=claimed))
        assert out.topic == Topic.REJECTED and _code(out) == "AUTH_MISSING"
        assert _record(out)["tenant_id"] == "acme"


def test_a_forged_tenant_is_refused_even_with_a_valid_signature(judge: Judge) -> None:
    # globex's client signs correctly as globex, but the body spends acme's budget.
    headers, value = _event("acme", claimed="globex", keys=[GLOBEX_KEY])
    out = _judge(judge, headers, value)
    assert _code(out) == "AUTH_INVALID"
    assert "ce_tenantid" in _record(out)["reasons"][0]["detail"]
    assert _record(out)["tenant_id"] == "globex"  # the refusal goes to whoever signed


def test_a_tampered_body_is_refused(judge: Judge) -> None:
    headers, value = _event("acme", keys=[ACME_KEY])
    tampered = _request(tenant_id="acme", max_tokens=4000)
    assert tampered != value
    assert _code(_judge(judge, headers, tampered)) == "AUTH_INVALID"


def test_a_signature_moved_to_another_event_is_refused(judge: Judge) -> None:
    headers, value = _event("acme", keys=[ACME_KEY])
    other, _ = _event("acme", event_id="req-2")
    moved = [*other, *[h for h in headers if h[0] == "ce_gssig"]]
    assert _code(_judge(judge, moved, value)) == "AUTH_INVALID"


def test_a_retired_key_is_refused(judge: Judge) -> None:
    old = ClientKey("acme-old", Scheme.HMAC_SHA256, SECRET)
    out = _judge(judge, *_event("acme", keys=[old]))
    assert _code(out) == "AUTH_INVALID"
    assert "acme-old is not valid" in _record(out)["reasons"][0]["detail"]


def test_a_replay_outside_the_tolerance_is_refused(judge: Judge) -> None:
    late = BROKER_MS - 301_000  # signed over five minutes before the broker took it
    out = _judge(judge, *_event("acme", keys=[ACME_KEY], signed_at_ms=late))
    assert _code(out) == "AUTH_EXPIRED"


def test_during_rotation_either_key_verifies(judge: Judge) -> None:
    unknown = ClientKey("acme-2", Scheme.HMAC_SHA256, os.urandom(32))  # not yet in config
    out = _judge(judge, *_event("acme", keys=[unknown, ACME_KEY]))
    assert out.topic == Topic.METERING and _record(out)["authid"] == "acme/acme-1"


def test_optional_tenants_pass_unsigned_but_not_badly_signed(judge: Judge) -> None:
    out = _judge(judge, *_event("globex"))
    assert out.topic == Topic.METERING and _record(out)["authid"] is None
    wrong = ClientKey("globex-1", Scheme.ED25519, Ed25519PrivateKey.generate().private_bytes_raw())
    assert _code(_judge(judge, *_event("globex", keys=[wrong]))) == "AUTH_INVALID"


def test_off_tenants_are_not_checked(judge: Judge) -> None:
    wrong = ClientKey("x", Scheme.HMAC_SHA256, os.urandom(32))
    assert _judge(judge, *_event("initech", keys=[wrong])).topic == Topic.METERING


def test_an_unsigned_claim_for_another_tenant_is_refused(judge: Judge) -> None:
    out = _judge(judge, *_event("globex", claimed="initech"))
    assert _code(out) == "AUTH_INVALID"


def test_the_signature_is_checked_before_the_payload_is_read(judge: Judge) -> None:
    # A forged event with an unreadable body: refused for its signature, never decoded (an
    # undecodable body would otherwise go to deadletter as AVRO_FRAMING_INVALID).
    headers, _ = _event("acme", keys=[ACME_KEY])
    out = _judge(judge, headers, b"not avro at all")
    assert out.topic == Topic.REJECTED and _code(out) == "AUTH_INVALID"


def test_decisions_carry_authcontext_set_by_guardstream() -> None:
    record = {"decision_id": "d", "decided_at": BROKER_MS, "outcome": "ADMITTED"}
    record.update(tenant_id="acme", reasons=[], sanitized_request=None)
    signed = dict(decision_outcome(record, "r", None, None, "/s", "acme/acme-1").headers)
    assert signed["ce_authtype"] == b"api_key" and signed["ce_authid"] == b"acme/acme-1"
    unsigned = dict(decision_outcome(record, "r", None, None, "/s", None).headers)
    assert unsigned["ce_authtype"] == b"unauthenticated" and "ce_authid" not in unsigned


def test_a_refusal_never_copies_an_authcontext_from_input(judge: Judge) -> None:
    headers, value = _event("acme")
    headers += [("ce_authtype", b"api_key"), ("ce_authid", b"acme/acme-1")]
    out = _judge(judge, headers, value)
    assert _code(out) == "AUTH_MISSING"
    sent = dict(out.headers)
    assert sent["ce_authtype"] == b"unauthenticated" and "ce_authid" not in sent


def test_the_keyring_picks_up_a_new_secret_without_a_restart(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.yaml"
    tenants = {
        "acme": TenantConfig.model_validate(
            {"tenant_id": "acme", "keys": [{"key_id": "k", "scheme": "hmac-sha256"}]}
        )
    }
    tiers = Tiers.model_validate(
        {"version": 1, "default_tier": "t", "auth": "optional", "tiers": {"t": _tier()}}
    )
    keyring = Keyring(tenants.get, tiers, secrets)
    assert keyring.for_tenant("acme").keys == ()  # no secret here: that key cannot verify
    assert keyring.for_tenant("nobody").mode == "optional"  # the tiers' default
    add_secret(secrets, "acme", "k", SECRET)
    os.utime(secrets, (1, 1))  # a different mtime than "missing"
    keyring._checked_at = float("-inf")  # skip the once-a-second stat
    assert [k.material for k in keyring.for_tenant("acme").keys] == [SECRET]


def test_a_client_keys_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "client-keys.yaml"
    save_client_keys(path, {"acme": [ACME_KEY], "globex": [GLOBEX_KEY]})
    assert path.stat().st_mode & 0o077 == 0
    assert load_client_keys(path) == {"acme": [ACME_KEY], "globex": [GLOBEX_KEY]}


def _tier() -> dict[str, int]:
    return {
        "requests_per_minute": 1,
        "tokens_per_minute": 1,
        "burst_requests": 1,
        "burst_tokens": 1,
    }


def test_signing_needs_the_attributes_it_covers() -> None:
    with pytest.raises(ValueError, match="ce_tenantid"):
        sign_headers(
            [
                ("ce_id", b"1"),
                ("ce_source", b"/s"),
                ("ce_type", REQUEST_TYPE.encode()),
                ("ce_time", b"2026-12-01T00:00:00Z"),
            ],
            b"v",
            [ACME_KEY],
        )


def test_usage_reports_are_verified_like_requests(judge: Judge) -> None:
    value = encode(USAGE_ID, reader_schema("usage", SCHEMA_DIR), _usage(tenant_id="acme"))
    when = format_time(BROKER_MS - 1000).encode()
    usage_type = str(Topic.USAGE.ce_type).encode()
    headers = [
        (k, v)
        for k, v in hostile.headers("u-1", ce_type=usage_type, ce_time=when, ce_tenantid=b"acme")
        if v is not None
    ]
    ingress = Ingress(SETTINGS.topic(Topic.USAGE), 0, 1, BROKER_MS)
    signed = judge.judge(RawRecord(ingress, b"k", value, sign_headers(headers, value, [ACME_KEY])))
    assert signed.topic == Topic.METERING and _record(signed)["authid"] == "acme/acme-1"
    unsigned = judge.judge(RawRecord(ingress, b"k", value, list(headers)))
    assert _code(unsigned) == "AUTH_MISSING"
