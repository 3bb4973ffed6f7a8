"""The hostile-input corpus through the real broker, interleaved with valid requests.

Every record must get exactly one outcome with the expected reason code, every valid request
must be admitted, nothing the corpus hides may leak into an output, and the worker must never
restart an agent.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from confluent_kafka import Producer

from guardstream.config.settings import Settings
from guardstream.serde.registry import Registry
from guardstream.serde.schemas import schema_text
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import subject_for
from tests import SCHEMA_DIR
from tests.corpus import hostile

from .conftest import Results, Worker

pytestmark = pytest.mark.integration


def test_corpus_interleaved_with_valid_requests(
    stack: Settings, worker: Worker, results: Results
) -> None:
    registry = Registry(stack)
    request_id = registry.lookup(subject_for(stack, "requests"), schema_text("request", SCHEMA_DIR))
    usage_id = registry.lookup(subject_for(stack, "usage"), schema_text("usage", SCHEMA_DIR))
    registry.close()
    assert request_id is not None and usage_id is not None
    cases = hostile.build(request_id, usage_id)
    assert len(cases) >= 60

    producer = Producer(
        kafka_config(stack, {"log_level": 0, "message.max.bytes": 64 * 1024 * 1024})
    )
    sent: dict[tuple[int, int], hostile.Case | None] = {}
    pending: list[tuple[hostile.Case | None, Any]] = []

    def delivered(case: hostile.Case | None) -> Any:
        def cb(err: Any, msg: Any) -> None:
            assert err is None, err
            sent[(msg.partition(), msg.offset())] = case

        return cb

    valid_value = hostile.encode_valid(request_id)
    for case in cases:
        # A valid request before each case, all on one partition: bad input must not stall it.
        good_headers = hostile.headers(f"valid-{uuid.uuid4()}")
        producer.produce(
            stack.topic("requests"),
            key=b"corpus",
            value=valid_value,
            headers=good_headers,
            on_delivery=delivered(None),
        )
        producer.produce(
            stack.topic("requests"),
            key=b"corpus",
            value=case.value,
            headers=case.headers,
            on_delivery=delivered(case),
        )
        producer.poll(0)
        pending.append((case, None))
    assert producer.flush(60) == 0
    assert len(sent) == 2 * len(cases)

    outcomes: dict[tuple[int, int], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    requests_topic = stack.topic("requests")

    def collect() -> None:
        outcomes.clear()
        for topic, record, _headers in results.seen:
            if topic == "deadletter":
                if record["original_topic"] == requests_topic:
                    outcomes[(record["original_partition"], record["original_offset"])].append(
                        (topic, record)
                    )
            elif record["ingress_topic"] == requests_topic:
                outcomes[(record["ingress_partition"], record["ingress_offset"])].append(
                    (topic, record)
                )

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        results.poll(1.0)
        collect()
        if all(coords in outcomes for coords in sent):
            break
    results.poll(2.0)  # anything extra (a second outcome) would arrive now
    collect()

    problems = []
    for coords, case in sorted(sent.items()):
        got = outcomes.get(coords, [])
        name = case.name if case else "valid request"
        if len(got) != 1:
            problems.append(f"{name}: {len(got)} outcomes {[t for t, _ in got]}")
            continue
        topic, record = got[0]
        code = record.get("error_code") or (
            record["reasons"][0]["code"] if record.get("reasons") else None
        )
        want_topic, want_code = ("admitted", None) if case is None else (case.topic, case.code)
        if (topic, code) != (want_topic, want_code):
            problems.append(
                f"{name}: got {topic}/{code}, want {want_topic}/{want_code} "
                f"({record.get('error_detail') or record.get('reasons')})"
            )
            continue
        if case is None:
            continue
        for kind, count in case.findings.items():
            if record["findings"].get(kind, 0) < count:
                problems.append(f"{name}: findings {record['findings']} lack {kind}")
        if topic != "deadletter":
            text = json.dumps(record, default=str, ensure_ascii=False)
            for secret in case.must_not_contain:
                if secret in text:
                    problems.append(f"{name}: output contains {secret!r}")
    assert not problems, "\n".join(problems)
    assert worker.proc.poll() is None, "the worker died"
    log = worker.log.read_text(errors="replace")
    assert "Crashed" not in log, log[-3000:]
