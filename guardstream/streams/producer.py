"""The worker's own records on a librdkafka producer, delivered before offsets commit.

Faust sends through aiokafka, whose accumulator and sender are pure Python: about a quarter
of a millisecond of the worker's one core per record, and a request produces several (its
metering record, its decision, its audit events, and five changelog records of the meter's
table). librdkafka does that work in its own threads. The agents' outputs come here through
`send`, the meter table's changelog through `send_now` (see `guardstream.tables.changelog`).

The rule that makes this safe is the one Faust keeps for its own producer: **every record
caused by an acknowledged input is delivered before that input's offset is committed.**
Faust flushes its producer before each commit (and before a rebalance hands partitions over,
and when it stops); `OutputProducer.flush` is chained onto that flush by the app (see
`guardstream.app`), so a commit waits for these records too. A record that librdkafka gives
up on fails every later flush, so no offset is committed past its input; Faust's commit
task crashes with it and the worker stops, and whoever owns the partition next processes
the input again (`test_a_decision_the_broker_refuses_is_never_committed_past`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import confluent_kafka

from guardstream.config.settings import Settings
from guardstream.streams.clients import kafka_config

log = logging.getLogger(__name__)

# How long one flush call blocks its thread before the loop checks again (and logs).
_FLUSH_SLICE_S = 10.0


class OutputsLost(RuntimeError):
    """librdkafka could not deliver an output record: offsets must not move past its input."""


class OutputProducer:
    """A librdkafka producer for the agents' outputs, with Faust's partitioning and ordering.

    Records are partitioned by key with murmur2 (Java's and aiokafka's default partitioner),
    so a tenant's records land on the partition Faust's producer would have chosen: the
    metering stage's ownership of a tenant rests on it. Idempotence keeps each partition's
    order through retries and writes no duplicates of its own.

    Delivery reports are served only while flushing, on the flushing thread, and do nothing
    but note failures: a Python thread busy beside the event loop, or a GIL-releasing call on
    it per record, costs the loop far more than the report is worth.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_request_bytes: int,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._producer = confluent_kafka.Producer(
            kafka_config(
                settings,
                {
                    "client.id": f"{settings.app_id}-outputs",
                    "partitioner": "murmur2_random",
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    "message.max.bytes": max_request_bytes,
                },
                error_cb=self._on_client_error,
            )
        )
        self._on_error = on_error
        self._on_flushed: list[Callable[[dict[tuple[str, int], int]], None]] = []
        # Last delivered offset per (topic, partition) of records sent with `send_now`.
        self._offsets: dict[tuple[str, int], int] = {}
        self._failures: list[str] = []
        self._lock = threading.Lock()
        # Cleared while a flush runs: a flush waits for what was sent before it, and a
        # flood sending during it would keep librdkafka's queue from ever draining.
        self._open = asyncio.Event()
        self._open.set()
        self._flushing = asyncio.Lock()

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, str | bytes | None]],
    ) -> None:
        """Queue one record (delivered, or reported lost, by the next `flush`)."""
        if not self._open.is_set():
            await self._open.wait()
        while True:
            try:
                self._producer.produce(
                    topic, value, key, headers=list(headers), on_delivery=self._report
                )
                return
            except BufferError:
                # librdkafka's queue is full (the broker is slow or away): wait for room,
                # which holds the agent back exactly as a full Faust buffer would.
                await asyncio.sleep(0.05)

    def send_now(self, topic: str, key: bytes, value: bytes | None, partition: int | None) -> None:
        """Queue one record to an explicit partition, from synchronous code (table writes).

        Not held back by a running flush: a table write comes between an agent's output
        sends, which are, so a flush waits for at most one record's writes more. Delivered
        offsets are handed to `on_flushed` callbacks after the flush that delivered them.
        """
        while True:
            try:
                # -1: librdkafka's "unassigned", i.e. its (murmur2) partitioner chooses.
                where = -1 if partition is None else partition
                self._producer.produce(topic, value, key, where, on_delivery=self._track)
                return
            except BufferError:
                # Full queue, from code that cannot await: block until librdkafka has room.
                self._producer.poll(0.1)

    def on_flushed(self, callback: Callable[[dict[tuple[str, int], int]], None]) -> None:
        """Call `callback` on the event loop with the offsets `send_now` records reached."""
        self._on_flushed.append(callback)

    async def flush(self) -> None:
        """Wait until every record sent so far is delivered; raise `OutputsLost` if one never is."""
        loop = asyncio.get_running_loop()
        async with self._flushing:
            self._open.clear()
            try:
                started = time.monotonic()
                while True:
                    # Blocking in librdkafka, off the event loop: heartbeats and fetches go on.
                    left = await loop.run_in_executor(None, self._producer.flush, _FLUSH_SLICE_S)
                    self._raise_if_failed()
                    if left == 0:
                        break
                    log.warning(
                        "%d output records still undelivered after %.0f s; is the broker up?",
                        left,
                        time.monotonic() - started,
                    )
            finally:
                self._open.set()
            delivered, self._offsets = self._offsets, {}
            if delivered:
                for callback in self._on_flushed:
                    callback(delivered)

    def pending(self) -> int:
        """Records queued or in flight."""
        return len(self._producer)

    def _report(self, err: Any, _msg: Any) -> None:
        # librdkafka's delivery report, on the thread that serves it (the flushing one).
        if err is None:
            return
        with self._lock:
            self._failures.append(str(err))
        if self._on_error is not None:
            self._on_error(OutputsLost(str(err)))

    def _track(self, err: Any, msg: Any) -> None:
        # A partition's reports arrive in offset order, so the last one is the highest.
        if err is not None:
            self._report(err, msg)
        else:
            self._offsets[(msg.topic(), msg.partition())] = msg.offset()

    def _raise_if_failed(self) -> None:
        with self._lock:
            if self._failures:
                raise OutputsLost(
                    f"{len(self._failures)} output records were not delivered "
                    f"(first: {self._failures[0]}); no offset is committed past their "
                    "inputs — fix: see the broker's log and the topic's limits and ACLs, "
                    "then restart the worker (the inputs are processed again)"
                )

    def _on_client_error(self, err: Any) -> None:
        # Client-wide errors (brokers down, auth); librdkafka retries, deliveries say the rest.
        log.warning("output producer: %s", err)
