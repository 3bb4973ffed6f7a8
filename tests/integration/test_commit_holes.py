"""A commit must start exactly at the committed offset, and a hole there is settled.

A client producing in transactions leaves a commit marker after each batch: an offset no
record sits at. When a worker's committed offset lands on one (it committed the last record
before it) and the worker restarts, the first record it reads is one past its committed
offset: a hole at the head of the partition, which stops its commits until the worker has
asked the broker and found nothing there. This checks that the commits then resume.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from guardstream.config.settings import Settings
from guardstream.ops.bench import bench_settings, prepare_pipeline
from guardstream.ops.worker_process import WorkerProcess
from guardstream.records import request_data
from guardstream.serde.avro import encode
from guardstream.serde.schemas import reader_schema
from guardstream.streams.clients import kafka_config
from guardstream.streams.topics import REQUEST_TYPE, Topic
from tests import SCHEMA_DIR, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_a_marker_at_the_committed_offset_is_committed_past_after_a_restart(
    stack: Settings, tmp_path: Path
) -> None:
    s = bench_settings(stack, f"gsmark{uuid.uuid4().hex[:6]}", tmp_path).model_copy(
        update={"worker_web_port": free_port()}
    )
    schema_id = prepare_pipeline(s, tmp_path)
    topic = s.topic(Topic.REQUESTS)
    schema = reader_schema("request", SCHEMA_DIR)
    offsets: list[int] = []
    partitions: set[int] = set()

    def delivered(err: object, m: object) -> None:
        offsets.append(-1 if err else m.offset())  # type: ignore[attr-defined]
        partitions.add(-1 if err else m.partition())  # type: ignore[attr-defined]

    def send(producer: Producer, n: int) -> None:
        for _ in range(n):
            producer.produce(
                topic,
                key=b"marker-tenant",
                value=encode(schema_id, schema, request_data("marker-tenant", [])),
                headers=[
                    ("ce_specversion", b"1.0"),
                    ("ce_id", uuid.uuid4().hex.encode()),
                    ("ce_source", b"/commit-holes-test"),
                    ("ce_type", REQUEST_TYPE.encode()),
                    ("content-type", b"application/avro"),
                ],
                on_delivery=delivered,
            )

    group = Consumer(kafka_config(s, {"group.id": s.app_id, "enable.auto.commit": False}))

    def committed(partition: int) -> int:
        [got] = group.committed([TopicPartition(topic, partition)], timeout=10)
        return int(got.offset)

    def wait_committed(partition: int, offset: int, worker: WorkerProcess) -> None:
        deadline = time.monotonic() + 90
        while committed(partition) != offset:
            assert time.monotonic() < deadline, (
                f"requests[{partition}] committed at {committed(partition)}, not {offset}\n"
                + worker.tail()
            )
            time.sleep(0.5)

    worker = WorkerProcess(s, tmp_path / "worker-1.log", "info")
    deadline = time.monotonic() + 180
    while not worker.ready():
        assert time.monotonic() < deadline, worker.tail()
        time.sleep(0.5)
    tx = Producer(kafka_config(s, {"log_level": 0, "transactional.id": f"tx-{uuid.uuid4()}"}))
    tx.init_transactions(30)
    tx.begin_transaction()
    send(tx, 3)
    tx.commit_transaction(30)  # its marker goes right after the three records
    assert len(offsets) == 3 and min(offsets) >= 0
    [partition] = partitions  # one key: one partition
    marker = max(offsets) + 1
    wait_committed(partition, marker, worker)  # the committed offset is the marker's
    worker.stop()

    again = WorkerProcess(s, tmp_path / "worker-2.log", "info")
    plain = Producer(kafka_config(s, {"log_level": 0}))
    offsets.clear()
    send(plain, 2)
    assert plain.flush(30) == 0
    assert min(offsets) == marker + 1
    # Nothing acknowledged at the marker: commits stop there until the broker says it holds
    # no record, then go on past the new records.
    wait_committed(partition, max(offsets) + 1, again)
    assert "hold no records" in again.log.read_text(errors="replace")
    again.stop()
    group.close()
