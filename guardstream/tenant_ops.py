"""`guardstream tenants apply | show`: publishing tenant configuration and reading it back."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from guardstream.errors import GuardstreamError
from guardstream.settings import Settings
from guardstream.streams.admin import high_watermark
from guardstream.streams.codec import Codec
from guardstream.streams.registry import Registry
from guardstream.tenants import TenantConfig, load_tenants_file, load_tiers


def apply(settings: Settings, path: Path) -> list[str]:
    """Validate a tenants file and publish each tenant to the compacted tenants topic."""
    tiers = load_tiers(settings.tiers_file)
    configs = load_tenants_file(path, tiers)
    registry = Registry(settings)
    codec = Codec(settings, registry)
    codec.resolve_output_ids()
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "log_level": 0}
    )
    errors: list[str] = []
    now_ms = int(time.time() * 1000)
    for config in configs:
        producer.produce(
            settings.topic("tenants"),
            key=config.tenant_id.encode(),
            value=codec.encode("tenants", config.to_avro(now_ms)),
            on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
        )
    left = producer.flush(30)
    registry.close()
    if left or errors:
        raise GuardstreamError(
            f"{left} tenant configs undelivered: {errors[:3]}",
            "check the broker (`guardstream stack status`) and apply again",
        )
    return [c.tenant_id for c in configs]


def read_all(settings: Settings) -> dict[str, TenantConfig]:
    """Every tenant config currently on the tenants topic (the latest per tenant)."""
    registry = Registry(settings)
    codec = Codec(settings, registry)
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": "guardstream-tenants-show",
         "enable.auto.commit": False, "log_level": 0},
    )  # fmt: skip
    topic = settings.topic("tenants")
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for p in md.partitions:
            ends[p] = high_watermark(consumer, topic, p)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends if ends[p]])
        out: dict[str, TenantConfig] = {}
        done = {p for p, high in ends.items() if high == 0}
        deadline = time.monotonic() + 30
        while len(done) < len(ends) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            key = (msg.key() or b"").decode("utf-8", "replace")
            value = msg.value()
            if value is None:
                out.pop(key, None)  # tombstone: the tenant was removed
            else:
                out[key] = TenantConfig.from_avro(codec.decode(value, "tenant_config"))
            if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                done.add(msg.partition() or 0)
        return out
    finally:
        consumer.close()
        registry.close()
