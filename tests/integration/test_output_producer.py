"""The agents' librdkafka output producer on the real broker: placement, order, lost records."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from guardstream.config.settings import Settings
from guardstream.streams.clients import kafka_config
from guardstream.streams.producer import OutputProducer, OutputsLost

pytestmark = pytest.mark.integration
PARTITIONS = 4


def _topic(settings: Settings, **config: str) -> str:
    name = f"{settings.topic_prefix}.outputs-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(kafka_config(settings))
    futures = admin.create_topics([NewTopic(name, PARTITIONS, 1, config=config)])
    futures[name].result(30)
    return name


def _read_all(settings: Settings, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    consumer = Consumer(kafka_config(settings, {"group.id": f"t-{uuid.uuid4().hex[:6]}"}))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got: list[tuple[int, bytes, bytes]] = []
    try:
        for _ in range(300):
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error() is None:
                    got.append((msg.partition(), msg.key(), msg.value()))
            if len(got) >= count:
                break
    finally:
        consumer.close()
    return got


def test_outputs_land_where_faust_would_put_them_in_order(stack: Settings) -> None:
    topic = _topic(stack)
    keys = [f"tenant-{i % 37}".encode() for i in range(600)]

    async def run() -> None:
        producer = OutputProducer(stack, max_request_bytes=1 << 20)
        for i, key in enumerate(keys):
            await producer.send(topic, key, str(i).encode(), [("ce_id", f"id-{i}".encode())])
        await producer.flush()
        assert producer.pending() == 0

    asyncio.run(run())
    got = _read_all(stack, topic, len(keys))
    assert len(got) == len(keys)
    # aiokafka's (Java's) murmur2 partitioner: a tenant's records stay on the partition
    # that owns its metering state whichever producer wrote them.
    partitioner = DefaultPartitioner()
    everything = list(range(PARTITIONS))
    for partition, key, _ in got:
        assert partition == partitioner(key, everything, everything)
    # Each key's records arrive in the order they were sent.
    for key in set(keys):
        sent = [str(i).encode() for i, k in enumerate(keys) if k == key]
        assert [v for _, k, v in got if k == key] == sent


def test_a_record_the_broker_refuses_fails_the_flush(stack: Settings) -> None:
    # The topic takes records up to 10 kB; the producer would send 1 MB.
    topic = _topic(stack, **{"max.message.bytes": "10000"})

    async def run() -> None:
        errors: list[Exception] = []
        producer = OutputProducer(stack, max_request_bytes=1 << 20, on_error=errors.append)
        await producer.send(topic, b"t", b"small", [])
        await producer.flush()
        await producer.send(topic, b"t", b"x" * 50_000, [])
        with pytest.raises(OutputsLost, match="1 output records were not delivered"):
            await producer.flush()
        assert len(errors) == 1
        # It stays failed: no later flush lets a commit move past the lost record.
        await producer.send(topic, b"t", b"small again", [])
        with pytest.raises(OutputsLost):
            await producer.flush()

    asyncio.run(run())
