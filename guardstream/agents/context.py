"""What the agents share, and the edge where their outcomes are encoded and sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from guardstream.config.catalog import Catalog
from guardstream.config.settings import Settings
from guardstream.ingest.judge import Judge
from guardstream.records import Outcome
from guardstream.runtime.registry_gate import RegistryGate
from guardstream.serde.codec import Codec
from guardstream.streams.producer import OutputProducer
from guardstream.streams.topics import Topic
from guardstream.tables.definitions import Tables

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What agents share: settings, codec, registry gate, judge, tables, output producer."""

    settings: Settings
    codec: Codec
    registry_gate: RegistryGate
    judge: Judge
    catalog: Catalog
    tables: Tables
    producer: OutputProducer


async def hold_if_stopping(app: Any) -> None:
    """Once the worker is stopping, process nothing more: wait here until cancelled.

    Faust flushes its producer early in shutdown and stops it after the agents, so whatever
    an agent sent in between would be dropped with the producer ("ProducerBuffer crashed").
    A record held here is not acknowledged before the final offset commit, so whichever
    worker owns the partition next processes it.
    """
    if app.should_stop:
        await asyncio.Event().wait()


async def await_tenant_directory(ctx: Context) -> None:
    """Start the tenant directory and wait until what the topic held at start-up is loaded.

    Both stages judge by tenant config (ingest: signing keys and policy; meter: limits), so
    neither may judge a record against a half-loaded directory: an `auth: required` tenant
    not yet loaded would read as the tiers' default and let unsigned events through.
    """
    tenants = ctx.tables.tenants
    tenants.start()
    loop = asyncio.get_running_loop()
    while not await loop.run_in_executor(None, tenants.ready.wait, 5.0):
        log.warning(
            "waiting for the tenant directory to load %s", ctx.settings.topic(Topic.TENANTS)
        )


class Outputs:
    """Encodes outcomes (the one place they are) and sends them on the output producer.

    The records go to `guardstream.streams.producer.OutputProducer` (librdkafka), not through
    Faust's `Topic.send` and aiokafka: that path costs a quarter of a millisecond of Python per
    record. Faust's flush before every offset commit waits for them as well, so a record sent
    here is on the broker before its input is committed, exactly as with `Topic.send`.
    """

    def __init__(self, app: Any, ctx: Context) -> None:
        self.app = app
        self.codec = ctx.codec
        self.settings = ctx.settings
        self.producer = ctx.producer

    def encode(self, out: Outcome) -> bytes:
        """The outcome's record in its topic's registered schema (raises if it does not fit)."""
        return self.codec.encode(out.topic, out.record)

    async def send(self, out: Outcome, value: bytes) -> None:
        """Queue one encoded outcome (delivery is awaited by the flush before each commit).

        Faust's per-topic sent count is kept as `Topic.send` would; its send-latency
        histogram now times Faust's own (changelog) sends only.
        """
        topic = self.settings.topic(out.topic)
        key = out.key
        self.app.sensors.on_send_initiated(
            self.app.producer, topic, None, len(key or b""), len(value)
        )
        await self.producer.send(topic, key, value, out.headers)


def header_text(headers: Iterable[tuple[str, bytes | None]], name: str) -> str | None:
    """A header's value as text, cut to 200 characters (never raises): for log context and
    for ids carried on, such as a traceparent."""
    for key, value in headers:
        if key == name and value is not None:
            return value.decode("utf-8", "replace")[:200]
    return None
