"""Schema evolution, a registry outage, and a tenant change, against the running worker."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest
from confluent_kafka import Producer
from rich.console import Console

from guardstream.config.settings import Settings
from guardstream.ops import tenants as tenant_ops
from guardstream.serde.avro import encode
from guardstream.serde.registry import Registry
from guardstream.serde.schemas import load_all, schema_text
from guardstream.stack import services
from guardstream.stack.process import Service
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import REQUEST_TYPE, subject_for
from tests import SCHEMA_DIR

from .conftest import Results, Worker

pytestmark = pytest.mark.integration


def _send(stack: Settings, schema_id: int, schema: Any, data: dict[str, Any], tenant: str) -> str:
    rid = f"evo-{uuid.uuid4()}"
    producer = Producer(kafka_config(stack, log_level=0))
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", rid.encode()),
        ("ce_source", b"/evo"),
        ("ce_type", REQUEST_TYPE.encode()),
        ("content-type", b"application/avro"),
    ]
    producer.produce(
        stack.topic("requests"),
        key=tenant.encode(),
        value=encode(schema_id, schema, data),
        headers=headers,
    )
    assert producer.flush(10) == 0
    return rid


def _base(tenant: str = "acme") -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "model": "gpt-4o-mini",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "hello there"}],
    }


def test_a_producer_on_an_older_schema_version_still_gets_decisions(
    stack: Settings, worker: Worker, results: Results
) -> None:
    current = load_all(SCHEMA_DIR)["request"]
    old = copy.deepcopy(current)
    keep = {"tenant_id", "model", "messages", "max_tokens"}
    old["fields"] = [f for f in old["fields"] if f["name"] in keep]
    registry = Registry(stack)
    subject = subject_for(stack, "requests")
    old_id = registry.register(subject, json.dumps(old))
    current_id = registry.lookup(subject, schema_text("request", SCHEMA_DIR))
    registry.close()
    assert current_id is not None and old_id != current_id  # two registered versions
    versions = httpx.get(f"{stack.registry_api}/subjects/{subject}/versions", timeout=5).json()
    assert len(versions) >= 2

    rid = _send(stack, old_id, fastavro.parse_schema(old), _base(), "acme")
    hits = results.wait_for(lambda t, r: r.get("request_id") == rid)
    assert [t for t, _, _ in hits] == ["admitted"], hits
    sanitized = hits[0][1]["sanitized_request"]
    assert sanitized["metadata"] == {} and sanitized["idempotency_key"] is None  # defaults


def test_registry_outage_delays_records_instead_of_rejecting_them(
    stack: Settings, worker: Worker, results: Results
) -> None:
    newer = copy.deepcopy(load_all(SCHEMA_DIR)["request"])
    newer["fields"].append(
        {"name": f"x_{uuid.uuid4().hex[:8]}", "type": ["null", "string"], "default": None}
    )
    registry = Registry(stack)
    new_id = registry.register(subject_for(stack, "requests"), json.dumps(newer))
    registry.close()
    service = Service("registry", stack.data_dir / "run", stack.data_dir / "logs")
    assert service.stop()
    try:
        rid = _send(stack, new_id, fastavro.parse_schema(newer), _base(), "acme")
        time.sleep(6)  # the worker cannot decode it: it waits, and says so on /metrics
        metrics = httpx.get(f"http://127.0.0.1:{stack.worker_web_port}/metrics", timeout=5).text
        assert "guardstream_registry_breaker_open 1.0" in metrics
    finally:
        services.up(stack, Console(quiet=True))
    hits = results.wait_for(lambda t, r: r.get("request_id") == rid, timeout=90)
    assert [t for t, _, _ in hits] == ["admitted"]


def test_tenant_change_applies_to_the_next_request_without_restart(
    stack: Settings, worker: Worker, results: Results, tmp_path: Path
) -> None:
    tenant = f"flip{uuid.uuid4().hex[:6]}"
    f = tmp_path / "t.yaml"
    f.write_text(f"tenants:\n  - tenant_id: {tenant}\n    tier: premium\n")
    tenant_ops.apply(stack, f)
    time.sleep(2)
    registry = Registry(stack)
    schema = load_all(SCHEMA_DIR)["request"]
    rid_id = registry.lookup(subject_for(stack, "requests"), schema_text("request", SCHEMA_DIR))
    registry.close()
    assert rid_id is not None
    parsed = fastavro.parse_schema(schema)
    full = {
        **_base(tenant),
        "temperature": None,
        "top_p": None,
        "stop": None,
        "idempotency_key": None,
        "metadata": {},
    }
    first = _send(stack, rid_id, parsed, full, tenant)
    assert [t for t, _, _ in results.wait_for(lambda t, r: r.get("request_id") == first)] == [
        "admitted"
    ]
    pid = worker.proc.pid
    f.write_text(
        f"tenants:\n  - tenant_id: {tenant}\n    tier: premium\n    daily_budget_micros: 0\n"
    )
    tenant_ops.apply(stack, f)
    time.sleep(2)
    second = _send(stack, rid_id, parsed, full, tenant)
    hits = results.wait_for(lambda t, r: r.get("request_id") == second)
    assert [(t, r["reasons"][0]["code"]) for t, r, _ in hits] == [("rejected", "BUDGET_EXCEEDED")]
    assert worker.proc.pid == pid and worker.proc.poll() is None  # no restart
