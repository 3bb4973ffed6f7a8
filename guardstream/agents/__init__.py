"""The stream stages, one module per stage; each is thin: decode, decide, route, record."""

from __future__ import annotations

import asyncio
from typing import Any


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
    """Sends an agent's results straight to the producer, by short topic name.

    Faust's `Topic.send` wraps every record in a `FutureMessage`, a pending-message tuple and
    sensor calls before reaching the same producer: a third of the per-record cost of a
    stage that sends several records. Faust flushes the producer before every offset
    commit, so a record sent here is on the broker before its input is committed, exactly
    as with `Topic.send`.
    """

    def __init__(self, app: Any, names: dict[str, str]) -> None:
        self.app = app
        self.names = names

    async def send(self, short: str, key: bytes | None, value: bytes, headers: Any) -> None:
        """Hand one record to the producer (delivery is awaited by the commit's flush).

        Faust's send sensors are called as `Topic.send` would, so its per-topic sent counts
        and send latency on the dashboards still include these records.
        """
        topic, producer, sensors = self.names[short], self.app.producer, self.app.sensors
        state = sensors.on_send_initiated(producer, topic, None, len(key or b""), len(value))
        delivered = await producer.send(topic, key, value, None, None, headers)

        def done(fut: Any) -> None:
            if fut.cancelled():
                return
            if fut.exception() is not None:
                sensors.on_send_error(producer, fut.exception(), state)
            else:
                sensors.on_send_completed(producer, state, fut.result())

        delivered.add_done_callback(done)
