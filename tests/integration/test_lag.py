"""`guardstream lag` against the real broker: offsets a real consumer committed, real timestamps."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from guardstream.config.settings import Settings
from guardstream.streams.clients import kafka_config

pytestmark = pytest.mark.integration

N = 30
K = 12
# Timestamps are set explicitly so the expected time lag is known to the second: records
# before the commit are older than the one waiting, records after it younger, so reading
# the wrong record (0 or end-1) gives a visibly wrong answer.
AGE_BEFORE_S = 300
AGE_WAITING_S = 120
AGE_AFTER_S = 30


def _create_topic(settings: Settings, partitions: int) -> str:
    topic = f"{settings.topic_prefix}.lagtest.{uuid.uuid4().hex[:6]}"
    admin = AdminClient(kafka_config(settings, log_level=0))
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic
    ].result(30)
    return topic


def _produce(settings: Settings, topic: str, partition: int, ages_s: list[int]) -> None:
    now_ms = int(time.time() * 1000)
    p = Producer(kafka_config(settings, log_level=0))
    for i, age in enumerate(ages_s):
        p.produce(topic, value=f"r{i}".encode(), partition=partition, timestamp=now_ms - age * 1000)
    assert p.flush(30) == 0


def _commit(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    c = Consumer(
        kafka_config(settings, {"group.id": group, "enable.auto.commit": False, "log_level": 0})
    )
    try:
        c.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        c.close()


def _lag(group: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "guardstream", "lag", "--group", group, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_lag_rows_count_uncommitted_records_and_age_of_the_waiting_one(stack: Settings) -> None:
    topic = _create_topic(stack, partitions=2)
    ages = [AGE_BEFORE_S] * K + [AGE_WAITING_S] + [AGE_AFTER_S] * (N - K - 1)
    _produce(stack, topic, 0, ages)
    _produce(stack, topic, 1, [AGE_WAITING_S] * 5)  # never committed by the group
    group = f"{stack.topic_prefix}-lag-{uuid.uuid4().hex[:6]}"
    _commit(stack, group, topic, {0: K})

    rows = {r["partition"]: r for r in _lag(group)}
    assert set(rows) == {0, 1}
    p0, p1 = rows[0], rows[1]
    assert (p0["group"], p0["topic"], p0["committed"], p0["end"]) == (group, topic, K, N)
    assert p0["lag"] == N - K
    # The waiting record is AGE_WAITING_S old; allow for the time the test itself took.
    assert AGE_WAITING_S <= p0["lag_seconds"] < AGE_WAITING_S + 30
    # A partition of a consumed topic without a commit counts from its first record.
    assert (p1["committed"], p1["lag"]) == (None, 5)
    assert AGE_WAITING_S <= p1["lag_seconds"] < AGE_WAITING_S + 30


def test_caught_up_group_has_zero_lag_and_groups_sharing_a_topic_are_timed_apart(
    stack: Settings,
) -> None:
    topic = _create_topic(stack, partitions=1)
    _produce(stack, topic, 0, [AGE_BEFORE_S] * 5 + [AGE_AFTER_S] * 5)
    run = uuid.uuid4().hex[:6]
    done, mid, behind = (f"{stack.topic_prefix}-{name}-{run}" for name in ("done", "mid", "behind"))
    _commit(stack, done, topic, {0: 10})
    _commit(stack, mid, topic, {0: 7})
    _commit(stack, behind, topic, {0: 2})
    [caught_up] = _lag(done)
    assert (caught_up["lag"], caught_up["lag_seconds"]) == (0, 0.0)

    # One query, two groups waiting at different offsets of the same partition: each is
    # timed from its own waiting record.
    from guardstream.lag.reader import LagReader

    snap = LagReader(stack).snapshot([done, mid, behind, f"{behind}-x"])
    by_group = {r.group: r for r in snap.rows}
    assert set(by_group) == {done, mid, behind}  # a group that never existed has no rows
    assert by_group[mid].lag == 3 and by_group[behind].lag == 8
    mid_s, behind_s = by_group[mid].lag_seconds, by_group[behind].lag_seconds
    assert mid_s is not None and AGE_AFTER_S <= mid_s < AGE_AFTER_S + 30
    assert behind_s is not None and AGE_BEFORE_S <= behind_s < AGE_BEFORE_S + 30
    assert {g.group: g.members for g in snap.groups}[done] == 0


def test_lag_status_of_a_real_group_goes_stop_then_stall_then_ok(stack: Settings) -> None:
    # A window of 3 samples taken back to back keeps this to seconds; the rules are the same
    # at the default 10 samples 30 s apart (unit tests cover each rule).
    from guardstream.lag.exporter import judge
    from guardstream.lag.reader import LagReader
    from guardstream.lag.status import LagStatus, StatusTracker

    topic = _create_topic(stack, partitions=1)
    _produce(stack, topic, 0, [AGE_AFTER_S] * 10)
    group = f"{stack.topic_prefix}-status-{uuid.uuid4().hex[:6]}"
    _commit(stack, group, topic, {0: 4})
    reader = LagReader(stack)
    tracker = StatusTracker(window=3, interval_s=0)

    def status() -> LagStatus:
        return judge(tracker, reader.snapshot([group]))[(group, topic, 0)].status

    # Nobody consumes and the offset is frozen with 6 records waiting: STOP once judged.
    assert [status() for _ in range(3)] == [LagStatus.OK, LagStatus.OK, LagStatus.STOP]

    # A member holds the partition but never commits: STALL.
    consumer = Consumer(
        kafka_config(stack, {"group.id": group, "enable.auto.commit": False, "log_level": 0})
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert consumer.assignment(), "the consumer never joined its group"
        assert status() is LagStatus.STALL

        # It processes the backlog and commits: OK at once, since nothing waits.
        consumer.commit(offsets=[TopicPartition(topic, 0, 10)], asynchronous=False)
        assert status() is LagStatus.OK
    finally:
        consumer.close()
