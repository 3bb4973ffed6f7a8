"""The first slice end to end through the real broker and registry."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.kafka import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from guardstream.config.settings import Settings
from guardstream.ops.worker_process import worker_env
from guardstream.records import Ingress, decision_id, request_data
from guardstream.serde import schemas
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import REQUEST_TYPE
from tests import SCHEMA_DIR

from .conftest import Results, Worker

pytestmark = pytest.mark.integration


def _data(tenant: str = "acme") -> dict[str, Any]:
    messages = [{"role": "user", "content": "Write a limerick about Kafka."}]
    return request_data(
        tenant, messages, max_tokens=100, temperature=0.5, metadata={"team": "search"}
    )


def _sdk_message(settings: Settings, data: dict[str, Any]) -> tuple[str, Any]:
    """What a client service sends: the official SDK's Kafka binding + AvroSerializer."""
    serializer = AvroSerializer(
        SchemaRegistryClient({"url": settings.registry_api}),
        schemas.schema_text("request", SCHEMA_DIR),
        conf={"auto.register.schemas": False},
    )
    value = serializer(data, SerializationContext(settings.topic("requests"), MessageField.VALUE))
    rid = str(uuid.uuid4())
    event = CloudEvent(
        attributes={
            "type": REQUEST_TYPE,
            "source": "/tests/sdk",
            "id": rid,
            "datacontenttype": "application/avro",
            "partitionkey": data["tenant_id"],
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        },
        data=value,
    )
    return rid, to_binary(event, JSONFormat())


def _send(producer: Producer, settings: Settings, msg: Any) -> None:
    producer.produce(
        settings.topic("requests"),
        key=msg.key,
        value=msg.value,
        headers=list(msg.headers.items()) if isinstance(msg.headers, dict) else msg.headers,
    )
    producer.flush(10)


def test_sdk_request_is_admitted(
    stack: Settings, worker: Worker, results: Results, raw_producer: Producer
) -> None:
    rid, msg = _sdk_message(stack, _data())
    _send(raw_producer, stack, msg)
    hits = results.wait_for(lambda t, r: r.get("request_id") == rid)
    assert len(hits) == 1, f"no decision for {rid}"
    topic, record, headers = hits[0]
    assert topic == "admitted"
    assert record["outcome"] == "ADMITTED"
    assert record["tenant_id"] == "acme"
    assert record["sanitized_request"]["messages"] == _data()["messages"]
    assert record["decision_id"] == decision_id(
        Ingress(record["ingress_topic"], record["ingress_partition"], record["ingress_offset"], 0)
    )
    assert headers["ce_type"] == b"io.guardstream.decision.v1"
    assert headers["ce_subject"] == rid.encode()
    assert headers["ce_id"] == record["decision_id"].encode()
    assert headers["content-type"] == b"application/avro"
    assert headers["ce_traceparent"].startswith(b"00-4bf92f3577b34da6a3ce929d0e0e4736-")


def _headers(rid: str, **drop: bool) -> list[tuple[str, bytes]]:
    h = [
        ("ce_specversion", b"1.0"),
        ("ce_id", rid.encode()),
        ("ce_source", b"/tests/raw"),
        ("ce_type", REQUEST_TYPE.encode()),
        ("content-type", b"application/avro"),
    ]
    return [(k, v) for k, v in h if not drop.get(k)]


@pytest.mark.parametrize(
    ("name", "value", "drop_id", "topic", "code"),
    [
        ("garbage", b"\x93\x11garbage bytes \xff\xfe", False, "deadletter", "AVRO_FRAMING_INVALID"),
        (
            "wrong magic",
            b"\x01\x00\x00\x00\x01\x08acme",
            False,
            "deadletter",
            "AVRO_FRAMING_INVALID",
        ),
        (
            "unknown schema id",
            b"\x00\x7f\xff\xff\x01\x08acme",
            False,
            "deadletter",
            "SCHEMA_UNKNOWN",
        ),
        ("missing ce_id", None, True, "deadletter", "CE_ATTRIBUTE_MISSING"),
    ],
)
def test_bad_records_end_somewhere_and_the_partition_keeps_flowing(
    stack: Settings,
    worker: Worker,
    results: Results,
    raw_producer: Producer,
    name: str,
    value: bytes | None,
    drop_id: bool,
    topic: str,
    code: str,
) -> None:
    bad_id = f"bad-{uuid.uuid4()}"
    good_id, good = _sdk_message(stack, _data("initech"))
    if value is None:  # a well-formed body whose envelope lacks ce_id
        value = good.value
    headers = _headers(bad_id, ce_id=drop_id)
    # Same key → same partition: the good record must get past the bad one.
    raw_producer.produce(stack.topic("requests"), key=b"initech", value=value, headers=headers)
    raw_producer.produce(
        stack.topic("requests"),
        key=b"initech",
        value=good.value,
        headers=list(good.headers.items()),
    )
    raw_producer.flush(10)

    def is_bad(t: str, r: dict[str, Any]) -> bool:
        if t == "deadletter":
            hdrs = {h["key"]: h["value"] for h in r["original_headers"]}
            return hdrs == dict(headers)
        return r.get("request_id") == bad_id

    bad_hits = results.wait_for(is_bad)
    assert [(t, r.get("error_code") or r["reasons"][0]["code"]) for t, r, _ in bad_hits] == [
        (topic, code)
    ], name
    if topic == "deadletter":
        envelope = bad_hits[0][1]
        assert envelope["original_value"] == value  # the original bytes, untouched
        assert envelope["original_key"] == b"initech"
        assert envelope["error_detail"]
    good_hits = results.wait_for(lambda t, r: r.get("request_id") == good_id)
    assert [t for t, _, _ in good_hits] == ["admitted"]
    # The bad record was before the good one in the same partition.
    assert bad_hits[0][1].get("original_offset", -1) < good_hits[0][1]["ingress_offset"]


def test_invalid_payload_is_rejected_naming_the_field(
    stack: Settings, worker: Worker, results: Results, raw_producer: Producer
) -> None:
    data = _data()
    data["messages"] = [{"role": "wizard", "content": "abracadabra"}]
    rid, msg = _sdk_message(stack, data)
    _send(raw_producer, stack, msg)
    hits = results.wait_for(lambda t, r: r.get("request_id") == rid)
    assert [t for t, _, _ in hits] == ["rejected"]
    reasons = hits[0][1]["reasons"]
    assert reasons[0]["code"] == "PAYLOAD_INVALID"
    assert reasons[0]["field"] == "messages[0].role"


def _check(settings: Settings, schema_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**worker_env(settings), "GUARDSTREAM_SCHEMA_DIR": str(schema_dir)}
    return subprocess.run(
        [sys.executable, "-m", "guardstream", "schemas", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_schemas_check_rejects_incompatible_and_accepts_compatible(
    stack: Settings, tmp_path: Path
) -> None:
    import json
    import shutil

    for f in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(f, tmp_path / f.name)
    assert _check(stack, tmp_path).returncode == 0

    request = json.loads((tmp_path / "request.avsc").read_text())
    request["fields"].append({"name": "cost_center", "type": "string"})
    (tmp_path / "request.avsc").write_text(json.dumps(request))
    out = _check(stack, tmp_path)
    assert out.returncode == 1
    assert "cost_center" in out.stderr and "without a default" in out.stderr
    assert "Traceback" not in out.stderr

    request["fields"][-1] = {"name": "cost_center", "type": ["null", "string"], "default": None}
    (tmp_path / "request.avsc").write_text(json.dumps(request))
    assert _check(stack, tmp_path).returncode == 0


def test_transactional_clients_markers_are_not_reported_as_lost_records(
    stack: Settings, worker: Worker, results: Results
) -> None:
    # A client producing in transactions leaves a commit marker after each batch: offsets
    # the worker never receives as records. The input-gap check must confirm with the
    # broker that nothing was there, and every request must still be decided.
    producer = Producer(
        kafka_config(stack, {"log_level": 0, "transactional.id": f"tests-{uuid.uuid4()}"})
    )
    producer.init_transactions(30)
    ids = []
    for _batch in range(4):
        producer.begin_transaction()
        for _ in range(3):
            rid, msg = _sdk_message(stack, _data("hooli"))
            ids.append(rid)
            producer.produce(
                stack.topic("requests"),
                key=b"hooli",
                value=msg.value,
                headers=list(msg.headers.items()),
            )
        producer.commit_transaction(30)
    hits = results.wait_for(lambda t, r: r.get("request_id") in ids, count=len(ids))
    assert sorted(r["request_id"] for _, r, _ in hits) == sorted(ids)
    time.sleep(2)  # the broker check of a suspected hole runs in the background
    log = worker.log.read_text(errors="replace")
    assert "never reached the agent" not in log and "never arrived" not in log
