"""A correction to faust-streaming's rebalance path that guardstream depends on.

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
"""

from __future__ import annotations

from typing import Any

from faust.tables.recovery import Recovery

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


def apply() -> None:
    """Patch Faust's recovery once per process (idempotent)."""
    if getattr(Recovery, _APPLIED, False):
        return
    for name in _METHODS:
        setattr(Recovery, name, _suspending(getattr(Recovery, name)))
    setattr(Recovery, _APPLIED, True)
