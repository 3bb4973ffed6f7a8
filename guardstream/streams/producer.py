"""guardstream's own output records on a librdkafka producer, delivered before offsets commit.

Faust sends through aiokafka, whose accumulator and sender are pure Python: about a quarter
of a millisecond of the worker's one core per record, and a request produces several
(its metering record, its decision, its audit events). librdkafka does that work in its own
threads. Faust's table changelogs stay on Faust's producer (their offsets feed its recovery
bookkeeping); only the records the agents send come here.

The rule that makes this safe is the one Faust keeps for its own producer: **every output of
an acknowledged input is delivered before that input's offset is committed.** Faust flushes
its producer before each commit (and before a rebalance hands partitions over, and when it
stops); `OutputProducer.flush` is chained onto that flush by the app (see
`guardstream.app`), so a commit waits for these records too. A record that librdkafka gives
up on fails every later flush, so no offset is committed past it and the worker stops; its
input is processed again by whoever owns the partition next.
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
                        return
                    log.warning(
                        "%d output records still undelivered after %.0f s; is the broker up?",
                        left,
                        time.monotonic() - started,
                    )
            finally:
                self._open.set()

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

    def _raise_if_failed(self) -> None:
        with self._lock:
            if self._failures:
                raise OutputsLost(
                    f"{len(self._failures)} output records were not delivered "
                    f"(first: {self._failures[0]}); their inputs will be processed again"
                )

    def _on_client_error(self, err: Any) -> None:
        # Client-wide errors (brokers down, auth); librdkafka retries, deliveries say the rest.
        log.warning("output producer: %s", err)
