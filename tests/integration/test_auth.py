"""Signed events on the real stack: every misuse is refused with its code and charges nothing;
a key rotation with overlapping keys loses no request; optional tenants work unsigned.

Records are built as a stock client builds them (AvroSerializer through the registry, the
cloudevents SDK's binary binding) and signed with `guardstream.auth.client.sign_headers`,
the steps the README's recipe shows. Tenant `signer` requires signatures (tenants.yaml).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings.kafka import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from guardstream.auth.client import ClientKey, sign_headers
from guardstream.auth.signature import Scheme
from guardstream.config.secrets import add_secret
from guardstream.config.settings import Settings
from guardstream.ops import tenants as tenant_ops
from guardstream.records import request_data
from guardstream.serde import schemas
from guardstream.streams.topics import REQUEST_TYPE
from tests import SCHEMA_DIR

from .conftest import HMAC_SECRETS, SIGNER_ED25519, Results, Worker

pytestmark = pytest.mark.integration

SIGNER_HMAC = ClientKey("signer-hmac", Scheme.HMAC_SHA256, HMAC_SECRETS["signer", "signer-hmac"])
SIGNER_OLD = ClientKey("signer-old", Scheme.HMAC_SHA256, HMAC_SECRETS["signer", "signer-old"])
SIGNER_ED = ClientKey("signer-ed", Scheme.ED25519, SIGNER_ED25519)
ACME = ClientKey("acme-it", Scheme.HMAC_SHA256, HMAC_SECRETS["acme", "acme-it"])


class Client:
    """A client service: serializes, builds the binary-mode event, signs, produces."""

    def __init__(self, settings: Settings, producer: Producer) -> None:
        self.settings = settings
        self.producer = producer
        self.topic = settings.topic("requests")
        self.serialize = AvroSerializer(
            SchemaRegistryClient({"url": settings.registry_api}),
            schemas.schema_text("request", SCHEMA_DIR),
            conf={"auto.register.schemas": False},
        )

    def value(self, tenant: str, max_tokens: int = 64) -> bytes:
        data = request_data(
            tenant, [{"role": "user", "content": "Sum up the ticket."}], max_tokens=max_tokens
        )
        out: bytes = self.serialize(data, SerializationContext(self.topic, MessageField.VALUE))
        return out

    def event(
        self,
        tenant: str,
        keys: Sequence[ClientKey] = (),
        *,
        claimed: str | None = None,
        signed_at_ms: int | None = None,
    ) -> tuple[str, list[tuple[str, bytes]], bytes]:
        """A request's id, headers (signed with `keys`, if any) and value."""
        rid = str(uuid.uuid4())
        value = self.value(tenant)
        attrs = {
            "type": REQUEST_TYPE,
            "source": "/tests/auth",
            "id": rid,
            "datacontenttype": "application/avro",
            "tenantid": claimed or tenant,
            "time": datetime.fromtimestamp((signed_at_ms or time.time() * 1000) / 1000, UTC),
        }
        msg = to_binary(CloudEvent(attrs, value), JSONFormat())
        headers = list(msg.headers.items())
        if keys:
            headers = sign_headers(headers, value, keys)
        return rid, headers, value

    def send(self, rid: str, headers: list[tuple[str, bytes]], value: bytes) -> str:
        self.producer.produce(self.topic, key=rid.encode(), value=value, headers=headers)
        return rid


def _view(settings: Settings, tenant: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{settings.worker_web_port}/tenants/{tenant}/state"
    deadline = time.monotonic() + 60
    while True:
        resp = httpx.get(url, timeout=10)
        if resp.status_code == 200 or time.monotonic() > deadline:
            assert resp.status_code == 200, resp.text
            body: dict[str, Any] = resp.json()
            return body
        time.sleep(0.5)


def _decisions(
    results: Results, ids: Sequence[str], timeout: float = 90
) -> dict[str, tuple[str, dict[str, Any], dict[str, bytes]]]:
    wanted = set(ids)
    hits = results.wait_for(lambda _t, r: r.get("request_id") in wanted, timeout, len(wanted))
    found = {r["request_id"]: (t, r, h) for t, r, h in hits}
    assert set(found) == wanted, f"no decision for {wanted - set(found)}"
    return found


def _code(decision: tuple[str, dict[str, Any], dict[str, bytes]]) -> str:
    topic, record, _ = decision
    return "ADMITTED" if topic == "admitted" else str(record["reasons"][0]["code"])


def test_each_misuse_gets_its_code_and_charges_nothing(
    stack: Settings, worker: Worker, results: Results, raw_producer: Producer
) -> None:
    client = Client(stack, raw_producer)
    cases: dict[str, str] = {}  # request id -> expected code

    rid, headers, value = client.event("signer")
    cases[client.send(rid, headers, value)] = "AUTH_MISSING"
    # acme's client, signing correctly as acme, with a body that spends signer's budget.
    rid, headers, value = client.event("signer", [ACME], claimed="acme")
    cases[client.send(rid, headers, value)] = "AUTH_INVALID"
    rid, headers, _ = client.event("signer", [SIGNER_HMAC])
    cases[client.send(rid, headers, client.value("signer", max_tokens=4000))] = "AUTH_INVALID"
    # A valid signature lifted onto another event (its own id, the same body).
    _, signed, value = client.event("signer", [SIGNER_ED])
    rid, headers, _ = client.event("signer")
    moved = [*headers, *(h for h in signed if h[0] == "ce_gssig")]
    cases[client.send(rid, moved, value)] = "AUTH_INVALID"
    rid, headers, value = client.event("signer", [SIGNER_OLD])
    cases[client.send(rid, headers, value)] = "AUTH_INVALID"
    # Captured ten minutes ago and sent again now: the broker's timestamp says when.
    ten_minutes_ago = int(time.time() * 1000) - 600_000
    rid, headers, value = client.event("signer", [SIGNER_HMAC], signed_at_ms=ten_minutes_ago)
    cases[client.send(rid, headers, value)] = "AUTH_EXPIRED"
    assert raw_producer.flush(30) == 0

    found = _decisions(results, list(cases))
    assert {rid: _code(d) for rid, d in found.items()} == cases
    for _topic, _record, headers in found.values():
        assert headers["ce_authtype"] == b"unauthenticated" and "ce_authid" not in headers
    # Ingest refused them all: the meter never saw the tenant, nothing reserved or spent.
    view = _view(stack, "signer")
    assert view["metered"] is False and view["reserved_total_micros"] == 0

    # The same tenant's correctly signed requests pass, each naming the key that verified.
    good = {}
    for key in (SIGNER_HMAC, SIGNER_ED):
        good[client.send(*client.event("signer", [key]))] = f"signer/{key.key_id}".encode()
    assert raw_producer.flush(30) == 0
    for rid, (topic, _record, headers) in _decisions(results, list(good)).items():
        assert topic == "admitted" and headers["ce_authid"] == good[rid]
        assert headers["ce_authtype"] == b"api_key"
    assert _view(stack, "signer")["metered"] is True


def test_an_optional_tenant_keeps_working_unsigned(
    stack: Settings, worker: Worker, results: Results, raw_producer: Producer
) -> None:
    client = Client(stack, raw_producer)
    unsigned = client.send(*client.event("acme"))
    signed = client.send(*client.event("acme", [ACME]))
    assert raw_producer.flush(30) == 0
    found = _decisions(results, [unsigned, signed])
    assert [_code(found[r]) for r in (unsigned, signed)] == ["ADMITTED", "ADMITTED"]
    assert found[unsigned][2]["ce_authtype"] == b"unauthenticated"
    assert found[signed][2]["ce_authid"] == b"acme/acme-it"


ROTATION = """\
tenants:
  - tenant_id: {tenant}
    tier: premium
    auth: required
    keys:
{keys}
"""


def _apply(settings: Settings, tmp_path: Path, tenant: str, keys: list[str]) -> None:
    path = tmp_path / f"rotation-{len(keys)}-{time.monotonic_ns()}.yaml"
    path.write_text(ROTATION.format(tenant=tenant, keys="\n".join(f"      - {k}" for k in keys)))
    tenant_ops.apply(settings, path)


def test_a_rotation_with_overlapping_keys_loses_no_request(
    stack: Settings, worker: Worker, results: Results, raw_producer: Producer, tmp_path: Path
) -> None:
    tenant = f"rot{uuid.uuid4().hex[:8]}"
    old = ClientKey("rot-old", Scheme.HMAC_SHA256, uuid.uuid4().bytes * 2)
    new = ClientKey("rot-new", Scheme.HMAC_SHA256, uuid.uuid4().bytes * 2)
    for key in (old, new):
        add_secret(stack.auth_secrets_path, tenant, key.key_id, key.secret)
    old_entry = "{key_id: rot-old, scheme: hmac-sha256}"
    new_entry = "{key_id: rot-new, scheme: hmac-sha256}"
    _apply(stack, tmp_path, tenant, [old_entry])
    deadline = time.monotonic() + 60
    while not _view(stack, tenant)["configured"]:
        assert time.monotonic() < deadline, "the worker never loaded the tenant"
        time.sleep(0.5)
    client = Client(stack, raw_producer)
    sent = [client.send(*client.event(tenant, [old])) for _ in range(5)]

    # 1. Add the new key; clients sign with both while they move over.
    _apply(stack, tmp_path, tenant, [old_entry, new_entry])
    moved_by: set[bytes] = set()
    deadline = time.monotonic() + 60
    while b"%s/rot-new" % tenant.encode() not in moved_by:  # the workers know the new key
        assert time.monotonic() < deadline, "the new key never verified"
        both = [client.send(*client.event(tenant, [new, old])) for _ in range(3)]
        assert raw_producer.flush(30) == 0
        sent += both
        moved_by |= {h["ce_authid"] for _t, _r, h in _decisions(results, both).values()}

    # 2. Retire the old key (records it signed before now still verify); sign with the new.
    retired_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _apply(stack, tmp_path, tenant, [old_entry[:-1] + f", not_after: '{retired_at}'}}", new_entry])
    sent += [client.send(*client.event(tenant, [new])) for _ in range(5)]
    assert raw_producer.flush(30) == 0

    found = _decisions(results, sent)
    assert {_code(d) for d in found.values()} == {"ADMITTED"}, [
        d[1]["reasons"] for d in found.values() if d[0] != "admitted"
    ]
