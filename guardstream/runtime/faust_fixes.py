"""Corrections to faust-streaming's rebalance path that guardstream depends on.

**Records dropped when a worker takes over partitions that need table recovery.**
After a rebalance Faust pauses every assigned partition, replays the changelogs (resuming
its flow control for that), and finally, in `Recovery.on_recovery_completed` (or
`_resume_streams`), resumes the stream partitions, awaits a seek to the committed offsets,
and resumes flow control again. Resuming flow control *clears every stream queue*. Because
flow control is already active by then, the fetcher can deliver the first batch of the
just-resumed partitions into those queues while the seek is awaited; the second resume then
throws that batch away. The records are never processed and never acked: the partition's
committed offset stops at the first of them (the partition stalls while later records are
processed), or, when Faust has no committed offset in memory for the partition, it commits
past them and they are lost. Seen with faust-streaming 0.15.3: two workers, one stopped
mid-run, the survivor skipped 12-17 records at the head of every partition it held after
the rebalance.

The fix suspends flow control for the duration of both methods: a record fetched in that
window waits in the conductor (which awaits flow control before it enqueues) instead of
entering a queue that is about to be cleared, and is delivered once flow resumes. The stream
queues are empty at that point (their partitions were paused since the rebalance began), so
nothing already queued is affected. A record delivered before the seek may be delivered again
after it; the meter treats that as a replay and re-sends the identical decision.

**Records fetched before a seek, delivered after it (found by the chaos suite).** The
fetcher asks the consumer thread for a batch and, when it comes back, notes the consumer
generation *then*: a batch fetched before a rebalance but returned after it passes the
generation check. By then the recovery has sought the partition back to its committed
offset C and set Faust's read offset to C, so the stale batch's first record X > C + 1 looks
like a hole, and Faust fills holes (meant for transaction markers and compaction) as if
acknowledged: offsets C+1..X-1 are committed without ever being processed, and their
re-fetched records are dropped as already read. A chaos run on the three-broker cluster
lost records exactly so: the partition leader killed mid-load, a rebalance, and 21
consecutive usage reports committed on `usage` without ever reaching the agent. The fix
discards a batch when a rebalance or a seek happened while it was being fetched; its
records are fetched again from the position the seek set.
"""

from __future__ import annotations

from typing import Any

from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer

_APPLIED = "_guardstream_resume_fix"


# Both methods end a recovery by resuming stream partitions, seeking, then resuming flow:
# `on_recovery_completed` after a changelog replay, `_resume_streams` when none was needed.
_METHODS = ("on_recovery_completed", "_resume_streams")


def _suspending(original: Any) -> Any:
    async def without_loss(self: Any, generation_id: int = 0) -> None:
        # Records fetched from here until Faust's own resume wait in the conductor.
        self.app.flow_control.suspend()
        await original(self, generation_id)
        # Faust returns early, leaving flow suspended, when another rebalance has already
        # begun; that rebalance's recovery resumes it, as it would have anyway.

    return without_loss


_SEEKS = "_guardstream_seeks"


def _counting_seeks(original: Any) -> Any:
    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        setattr(self, _SEEKS, getattr(self, _SEEKS, 0) + 1)
        return await original(self, *args, **kwargs)

    return counted


def _fresh_batches(original: Any) -> Any:
    async def without_stale(self: Any, timeout: float) -> Any:
        generation = self.app.consumer_generation_id
        seeks = getattr(self, _SEEKS, 0)
        records, active_partitions = await original(self, timeout)
        moved = self.app.consumer_generation_id != generation or getattr(self, _SEEKS, 0) != seeks
        if records and moved:
            # Fetched from positions a rebalance or a seek has since replaced: fetched again.
            return {}, active_partitions
        return records, active_partitions

    return without_stale


def apply() -> None:
    """Patch Faust's recovery and fetcher once per process (idempotent)."""
    if getattr(Recovery, _APPLIED, False):
        return
    for name in _METHODS:
        setattr(Recovery, name, _suspending(getattr(Recovery, name)))
    for name in ("seek", "perform_seek"):
        setattr(Consumer, name, _counting_seeks(getattr(Consumer, name)))
    Consumer._wait_next_records = _fresh_batches(Consumer._wait_next_records)  # type: ignore[method-assign]
    setattr(Recovery, _APPLIED, True)
