"""Every input record must reach its agent: holes left by the consumer are made visible.

`guardstream.gaps` holds the rules; this applies them to a Faust agent's stream. Each agent
passes every message through `InputWatch.see`; a timer calls `check_idle` so that records
lost at the tail of a partition (with nothing after them to reveal the hole) are noticed
too. A hole in the offsets is not yet a loss: transaction markers and compaction also skip
offsets. So every suspected hole is checked against the broker (a plain consumer reads that
offset range, in a thread), and only records that really are there count: they go to
`guardstream_input_gaps_total` (an alert fires on any increase) and one error line names the
partition, the offsets and the remedy.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import faust
from confluent_kafka import Consumer, TopicPartition

from guardstream.config.settings import Settings
from guardstream.runtime.gaps import GapTracker
from guardstream.runtime.metrics import INPUT_GAPS, labelled
from guardstream.streams.clients import kafka_config

log = logging.getLogger(__name__)

IDLE_S = 5.0
VERIFY_TIMEOUT_S = 10.0


def committed_offset(app: Any, tp: Any) -> int | None:
    """The partition's committed offset as this worker's consumer last committed it (None
    before its consumer starts or commits)."""
    # Faust creates a consumer as a side effect of `app.consumer`; only read a started one.
    consumer = getattr(app, "_consumer", None)
    return getattr(consumer, "_committed_offset", {}).get(tp) if consumer else None


class BrokerRecords:
    """Counts the records a partition really holds in an offset range (markers are not)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bootstrap = self.settings.kafka_bootstrap
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()  # one consumer, used from executor threads in turn

    def count(self, topic: str, partition: int, first: int, end: int) -> int:
        """Records with offsets in [first, end) (blocking; run it in a thread)."""
        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer(
                    kafka_config(
                        self.settings,
                        {
                            "group.id": "guardstream-gap-check",
                            "enable.auto.commit": False,
                            "isolation.level": "read_uncommitted",
                            "log_level": 0,
                        },
                    )
                )
            consumer = self._consumer
            consumer.assign([TopicPartition(topic, partition, first)])
            found = 0
            deadline = time.monotonic() + VERIFY_TIMEOUT_S
            while time.monotonic() < deadline:
                for msg in consumer.consume(500, 0.5):
                    if msg.error():
                        continue
                    if (msg.offset() or 0) >= end:
                        return found
                    found += 1
            return found


class InputWatch:
    """Continuity of one agent's input topics on this worker."""

    def __init__(self, app: faust.App, stage: str, topics: set[str], settings: Settings) -> None:
        self.app = app
        self.stage = stage
        self.topics = topics
        self.tracker = GapTracker()
        self.last_seen = time.monotonic()
        self.broker = BrokerRecords(settings)
        self._checks: set[asyncio.Future[None]] = set()

    def _consumer(self) -> Any:
        # Faust creates a consumer as a side effect of `app.consumer`; only use a started one.
        return getattr(self.app, "_consumer", None)

    def _committed(self, tp: Any) -> int | None:
        return committed_offset(self.app, tp)

    def _suspect(self, tp: Any, first: int, end: int, how: str) -> None:
        """Check a hole against the broker in the background; report what is really lost."""

        async def confirm() -> None:
            loop = asyncio.get_running_loop()
            try:
                lost = await loop.run_in_executor(
                    None, self.broker.count, tp.topic, tp.partition, first, end
                )
            except Exception as exc:  # the check must never disturb the stream
                log.warning(
                    "%s: could not check offsets %d-%d of %s[%d]: %r",
                    self.stage,
                    first,
                    end - 1,
                    tp.topic,
                    tp.partition,
                    exc,
                )
                return
            if lost:
                labelled(INPUT_GAPS, self.stage).inc(lost)
                log.error(
                    "%s: %d record(s) of %s[%d] between offsets %d and %d %s; they are not "
                    "committed, so restarting this worker re-reads them",
                    self.stage,
                    lost,
                    tp.topic,
                    tp.partition,
                    first,
                    end - 1,
                    how,
                )

        task = asyncio.ensure_future(confirm())
        self._checks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._checks.discard)

    def see(self, msg: Any) -> None:
        """Call with every message the agent receives, before processing it."""
        self.last_seen = time.monotonic()
        missing = self.tracker.see(
            self.app.consumer_generation_id,
            (msg.topic, msg.partition),
            msg.offset,
            self._committed(msg.tp),
        )
        if missing:
            self._suspect(
                msg.tp,
                msg.offset - missing,
                msg.offset,
                f"never reached the agent (it got {msg.offset} next)",
            )

    async def check_idle(self) -> None:
        """Count records the consumer read past while this agent received nothing."""
        consumer = self._consumer()
        app: Any = self.app
        if (
            consumer is None
            or time.monotonic() - self.last_seen < IDLE_S
            or app.rebalancing
            or app.in_recovery
            or not getattr(consumer, "flow_active", True)
        ):
            return
        self.tracker.begin(app.consumer_generation_id)
        read: dict[Any, int | None] = getattr(consumer, "_read_offset", {})
        for tp in consumer.assignment():
            if tp.topic not in self.topics:
                continue
            last_read = read.get(tp)
            missing = self.tracker.stranded(
                (tp.topic, tp.partition), last_read, self._committed(tp)
            )
            if missing and last_read is not None:
                self._suspect(
                    tp, last_read - missing + 1, last_read + 1, "were read but never arrived"
                )
