"""Every input record must reach its agent: holes left by the consumer are made visible.

`guardstream.gaps` holds the rules; this applies them to a Faust agent's stream. Each agent
passes every message through `InputWatch.see`; a timer calls `check_idle` so that records
lost at the tail of a partition (with nothing after them to reveal the hole) are noticed
too. Both count the missing offsets in `guardstream_input_gaps_total` (an alert fires on any
increase) and log one error naming the partition, the offsets and the remedy.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from guardstream.gaps import GapTracker
from guardstream.metrics import INPUT_GAPS, labelled

log = logging.getLogger(__name__)

IDLE_S = 5.0


class InputWatch:
    """Continuity of one agent's input topics on this worker."""

    def __init__(self, app: faust.App, stage: str, topics: set[str]) -> None:
        self.app = app
        self.stage = stage
        self.topics = topics
        self.tracker = GapTracker()
        self.last_seen = time.monotonic()

    def _consumer(self) -> Any:
        # Faust creates a consumer as a side effect of `app.consumer`; only use a started one.
        return getattr(self.app, "_consumer", None)

    def _committed(self, tp: Any) -> int | None:
        consumer = self._consumer()
        return getattr(consumer, "_committed_offset", {}).get(tp) if consumer else None

    def _report(self, tp: Any, first: int, missing: int, how: str) -> None:
        labelled(INPUT_GAPS, self.stage).inc(missing)
        log.error(
            "%s: %d record(s) of %s[%d] from offset %d %s; they are not committed, so "
            "restarting this worker re-reads them",
            self.stage, missing, tp.topic, tp.partition, first, how,
        )  # fmt: skip

    def see(self, msg: Any) -> None:
        """Call with every message the agent receives, before processing it."""
        self.last_seen = time.monotonic()
        missing = self.tracker.see(self.app.consumer_generation_id, (msg.topic, msg.partition),
                                   msg.offset, self._committed(msg.tp))  # fmt: skip
        if missing:
            self._report(msg.tp, msg.offset - missing, missing,
                         f"never reached the agent (it got {msg.offset} next)")  # fmt: skip

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
            missing = self.tracker.stranded((tp.topic, tp.partition), last_read,
                                            self._committed(tp))  # fmt: skip
            if missing and last_read is not None:
                self._report(tp, last_read - missing + 1, missing, "were read but never arrived")
