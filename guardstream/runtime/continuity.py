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
from guardstream.runtime.faust_fixes import holes
from guardstream.runtime.gaps import GapTracker
from guardstream.runtime.metrics import INPUT_GAPS, labelled
from guardstream.streams.clients import kafka_config

log = logging.getLogger(__name__)

IDLE_S = 5.0
VERIFY_TIMEOUT_S = 10.0


def started_consumer(app: Any) -> Any:
    """The app's Faust consumer if it has started, else None."""
    # Faust creates a consumer as a side effect of `app.consumer`; only use a started one.
    return getattr(app, "_consumer", None)


def committed_offset(app: Any, tp: Any) -> int | None:
    """The partition's committed offset as this worker's consumer last committed it (None
    before its consumer starts or commits)."""
    consumer = started_consumer(app)
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
                    "%s: %d record(s) of %s[%d] between offsets %d and %d %s; nothing is "
                    "committed past them, and they are read again once the hole is settled",
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
        consumer = started_consumer(self.app)
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


HOLE_GRACE_S = 5.0  # a late acknowledgement closes most holes by itself within this


class CommitHoles:
    """Settles the holes that stop a partition's commits (`faust_fixes.holes`).

    A hole is offsets at the head of a partition, from its committed offset, that nothing
    acknowledged while later ones were. Left alone the partition would never commit again;
    Faust's own rule would have committed past them. After a grace period the broker is
    asked what the hole holds: no records (transaction markers, a retention cut) - the hole
    is filled and commits resume; records - they were skipped, so the partition is sought
    back to the hole and reads them again (the stages are idempotent against the repeats),
    with one error line and `guardstream_input_gaps_total` counting them.
    """

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.broker = BrokerRecords(settings)

    async def settle(self) -> None:
        """Check the holes older than the grace period (call from a timer)."""
        app: Any = self.app
        consumer = started_consumer(app)
        if consumer is None or app.rebalancing or app.in_recovery:
            return
        now = time.monotonic()
        loop = asyncio.get_running_loop()
        for tp, (first, end, since) in list(holes(consumer).items()):
            if not _still_open(consumer, tp, first):
                holes(consumer).pop(tp, None)
                continue
            if now - since < HOLE_GRACE_S or tp not in consumer.assignment():
                continue
            try:
                found = await loop.run_in_executor(
                    None, self.broker.count, tp.topic, tp.partition, first, end
                )
            except Exception as exc:  # checked again at the next tick
                log.warning("could not check offsets %d-%d of %s: %r", first, end - 1, tp, exc)
                continue
            if holes(consumer).get(tp) != (first, end, since) or not _still_open(
                consumer, tp, first
            ):
                continue  # settled meanwhile (acknowledged late, or revoked)
            del holes(consumer)[tp]
            if not found:
                consumer._gap[tp].addi(first, end)
                log.info("offsets %d-%d of %s hold no records: committed past", first, end - 1, tp)
                continue
            labelled(INPUT_GAPS, "consumer").inc(found)
            log.error(
                "%d record(s) of %s[%d] between offsets %d and %d were skipped by the "
                "consumer and never acknowledged; nothing is committed past them, and they "
                "are read again now",
                found,
                tp.topic,
                tp.partition,
                first,
                end - 1,
            )
            await consumer.seek(tp, first)


def _still_open(consumer: Any, tp: Any, first: int) -> bool:
    """Whether the partition still has nothing acknowledged at `first`, its committed
    offset, and something acknowledged after it (a hole noted at the last commit may have
    closed since)."""
    acked = consumer._acked.get(tp)
    gaps = consumer._gap.get(tp)
    return bool(
        consumer._committed_offset.get(tp) == first
        and acked
        and min(acked) > first
        and not (gaps and gaps.at(first))
    )


def register_commit_holes(app: faust.App, settings: Settings) -> None:
    """Settle commit holes on a timer (every worker, whatever its stages)."""
    holes_ = CommitHoles(app, settings)

    @app.timer(interval=2.0)  # type: ignore[untyped-decorator]  # Faust is untyped
    async def settle_commit_holes() -> None:
        await holes_.settle()
