"""A plain aiokafka consume→produce of a topic: the ceiling the benchmarks compare against.

Used in process by `guardstream bench pipeline` and as a subprocess by `guardstream bench
compare` (``python -m guardstream.ops.passthrough SOURCE SINK GROUP``, runs until killed).
"""

from __future__ import annotations

import asyncio
import sys
import time

from guardstream.config.settings import Settings, get_settings
from guardstream.streams.clients import aiokafka_config


async def passthrough(
    s: Settings, source: str, sink: str, group_id: str, count: int | None = None
) -> float:
    """Consume `source` from the beginning and produce each record unchanged to `sink`.

    Stops after `count` records (never when None); returns records/s from the first record.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        source,
        **aiokafka_config(s),
        group_id=group_id,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=64 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        **aiokafka_config(s), linger_ms=10, max_request_size=64 * 1024 * 1024
    )
    await consumer.start()
    await producer.start()
    seen = 0
    start = None
    try:
        async for msg in consumer:
            start = start or time.monotonic()
            await producer.send(sink, key=msg.key, value=msg.value, headers=list(msg.headers))
            seen += 1
            if count is not None and seen >= count:
                break
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return seen / max(time.monotonic() - (start or time.monotonic()), 1e-9)


def main(argv: list[str]) -> None:
    """``python -m guardstream.ops.passthrough SOURCE SINK GROUP``: run until killed."""
    source, sink, group_id = argv
    asyncio.run(passthrough(get_settings(), source, sink, group_id))


if __name__ == "__main__":
    main(sys.argv[1:])
