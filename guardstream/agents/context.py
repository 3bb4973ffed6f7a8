"""What the agents share, and the edge where their outcomes are encoded and sent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from guardstream.config.catalog import Catalog
from guardstream.config.settings import Settings
from guardstream.ingest.judge import Judge
from guardstream.records import Outcome
from guardstream.runtime.registry_gate import RegistryGate
from guardstream.serde.codec import Codec
from guardstream.tables.definitions import Tables


@dataclass
class Context:
    """What agents share: settings, the codec, the registry gate, the ingest judge."""

    settings: Settings
    codec: Codec
    registry_gate: RegistryGate
    judge: Judge
    catalog: Catalog
    tables: Tables


async def hold_if_stopping(app: Any) -> None:
    """Once the worker is stopping, process nothing more: wait here until cancelled.

    Faust flushes its producer early in shutdown and stops it after the agents, so whatever
    an agent sent in between would be dropped with the producer ("ProducerBuffer crashed").
    A record held here is not acknowledged before the final offset commit, so whichever
    worker owns the partition next processes it.
    """
    if app.should_stop:
        await asyncio.Event().wait()


class Outputs:
    """Encodes outcomes (the one place they are) and sends them straight to the producer.

    Faust's `Topic.send` wraps every record in a `FutureMessage`, a pending-message tuple and
    sensor calls before reaching the same producer: a third of the per-record cost of a
    stage that sends several records. Faust flushes the producer before every offset
    commit, so a record sent here is on the broker before its input is committed, exactly
    as with `Topic.send`.
    """

    def __init__(self, app: Any, ctx: Context) -> None:
        self.app = app
        self.codec = ctx.codec
        self.settings = ctx.settings

    def encode(self, out: Outcome) -> bytes:
        """The outcome's record in its topic's registered schema (raises if it does not fit)."""
        return self.codec.encode(out.topic, out.record)

    async def send(self, out: Outcome, value: bytes) -> None:
        """Hand one encoded outcome to the producer (delivery is awaited by the commit's flush).

        Faust's send sensors are called as `Topic.send` would, so its per-topic sent counts
        and send latency on the dashboards still include these records.
        """
        topic, producer, sensors = (
            self.settings.topic(out.topic),
            self.app.producer,
            self.app.sensors,
        )
        key = out.key
        state = sensors.on_send_initiated(producer, topic, None, len(key or b""), len(value))
        delivered = await producer.send(topic, key, value, None, None, out.headers)

        def done(fut: Any) -> None:
            if fut.cancelled():
                return
            if fut.exception() is not None:
                sensors.on_send_error(producer, fut.exception(), state)
            else:
                sensors.on_send_completed(producer, state, fut.result())

        delivered.add_done_callback(done)
