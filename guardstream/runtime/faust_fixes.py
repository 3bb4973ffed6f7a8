"""Six corrections to faust-streaming (consumer, recovery, group leader) guardstream needs.

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

**Records fetched before a seek, delivered after it (suspected in a chaos run).** The
fetcher asks the consumer thread for a batch and notes the consumer generation only once it
comes back, so a batch the thread drained before a rebalance's seek to the committed offset
C can reach Faust after it. Faust has set its read offset to C by then; the stale batch's
first record X > C + 1 looks like a hole, and Faust fills holes (meant for transaction
markers) as if acknowledged: C+1..X-1 would be committed without being processed, and C's
re-fetched records dropped as already read. One broker-kill chaos run lost 21 consecutive
usage reports, committed and never processed, after a rebalance mid-kill; this race fits
what was seen, though it was not caught in the act. The fix notes every seek made while a
batch is fetched, and keeps a partition's records only if they start where that seek put
it; otherwise they are dropped and the partition is sought there again (so records the
consumer thread has passed are fetched again, never skipped). Dropping whole batches
instead also dropped records fetched *after* the seek, which the consumer had passed: the
first attempt at this fix lost records in the failover tests and was reverted.

**Commits past a record nothing acknowledged.** Faust commits the first run of
consecutive acknowledged offsets, and checks that the run starts at the committed offset C
only loosely: not at all while C is None or 0, and it lets the run start at C + 1 (its
hole filling starts at C + 1 too: it reads C as "last processed" where it holds "next to
read"). Whatever skipped a record - the race above, or one not yet found - the commit then
buries it. Here a commit must start exactly at C; a run that starts later leaves the
partition uncommitted and the hole noted (`holes`), for `guardstream.runtime.continuity`
to settle: re-read if the broker holds records there, filled if it holds none (markers,
retention).

**Changelog records thrown away by a resume (suspected from a chaos run).** Faust's queue
of changelog records (recovery and standby reading share it) is cleared whenever flow
control resumes, and its recovery resumes flow right after it starts the standby partitions
and again at its end. Standby records still queued then are thrown away, but the standby's
fetch position has moved past them and nothing seeks it back: the standby copy silently
lacks them, and a worker that takes the partition over serves from that copy. In one
worker-kill chaos run a worker joined under load; its store for one standby partition later
held every entry written after its standby reading began and none written before, though
the changelog had them all. It took that partition over in the rolling restart and answered
46 usage reports USAGE_UNKNOWN. This clear is the one path found that drops changelog
records without seeking back; it was not caught in the act. Here a resume leaves that queue
alone. A rebalance still clears it (`FlowControlEvent.clear`), which is safe: every
changelog partition is sought again, to what its store holds, before it is read.

**Records fetched for paused partitions, consumed and thrown away (caught in the act).**
Faust pauses partitions only in its own set of active partitions, and hands that live set
to the consumer thread, which asks aiokafka for the records of the partitions in it.
aiokafka keeps fetching every assigned partition (paused ones too) and reads an *empty* set
as "all partitions": when Faust paused its last active partition while a fetch was under
way (its recovery does, when it finishes reading the active changelogs), the thread took
the buffered records of every partition, advancing their positions, and Faust's iteration
then skipped the records of partitions not active: consumed, never delivered. A standby
changelog partition sought to 0 an instant earlier lost everything up to its end that way
(its reading began at its end offset, shown by instrumented runs: a joining worker's standby
copy, taken over later, answered 575 to 673 usage reports USAGE_UNKNOWN in 3 of 10 runs on
three brokers); a stream partition's skipped records look like a hole, which Faust fills as
if acknowledged. The fix hands the thread a copy of the set, fetches nothing when it is
empty, and seeks any partition whose fetched records Faust would skip back to the first of
them, so they are fetched again when it is resumed.

**Table changelogs left out of the assignment on a cluster of several brokers.** A worker
creates its tables' changelog topics as it starts and joins the group a moment later. The
group leader's metadata request goes to a random broker, and one that has not yet heard of
a just-created topic answers without it; Faust's assignor then ignores the topic ("Ignoring
missing topic"), so no worker is assigned its partitions, as active or standby. aiokafka
refreshes that metadata only every `metadata_max_age_ms` (five minutes), and a rebalance
does not, so every assignment until then leaves the changelog out: the tenant page has no
owner to route to (503 owner_unknown) and a killed worker's partitions are replayed from
offset 0 instead of from a standby copy. Seen on three brokers only: with one, the broker
that created the topic answers the metadata. The fix makes the leader refresh its metadata
(each time from a random broker) until it knows every topic the members subscribe to, for
up to `TOPIC_WAIT_S`, before it assigns. (guardstream also creates the changelogs before a
worker starts, `guardstream.streams.admin.ensure_topics`, and a worker assigned a table's
sources without their changelog stops, `guardstream.tables.assignment`.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.coordinator.protocol import ConsumerProtocol
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)
_APPLIED = "_guardstream_resume_fix"
# How long a group leader waits for its metadata to know every subscribed topic: a new
# topic reaches every broker well within this; a topic still missing after it is assigned
# without, as Faust would have.
TOPIC_WAIT_S = 15.0


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


def _kept_on(consumer: Any, name: str) -> dict[Any, Any]:
    """A dict this module keeps on a Faust consumer, made on first use."""
    kept: dict[Any, Any] | None = getattr(consumer, name, None)
    if kept is None:
        kept = {}
        setattr(consumer, name, kept)
    return kept


def _sought(consumer: Any) -> dict[Any, int | None]:
    """The position each partition was sought to since the current fetch began."""
    return _kept_on(consumer, "_guardstream_sought")


def _noting_seek(original: Any) -> Any:
    async def noted_seek(self: Any, partition: Any, offset: int) -> None:
        await original(self, partition, offset)
        _sought(self)[partition] = offset

    return noted_seek


def _noting_perform_seek(original: Any) -> Any:
    async def noted_perform_seek(self: Any) -> None:
        await original(self)
        # Faust has just set each partition's read offset to its committed offset (None
        # when it has none: the reset policy decides, and nothing can be checked).
        _sought(self).update(self._read_offset)

    return noted_perform_seek


def stale(sought: dict[Any, int | None], records: Any) -> list[Any]:
    """The partitions of a fetched batch whose records do not start where a seek made
    while it was fetched put them."""
    return [
        tp
        for tp, recs in records.items()
        if recs and sought.get(tp) is not None and recs[0].offset != sought[tp]
    ]


def _snapshot_fetch(original: Any) -> Any:
    async def fetch_records(
        self: Any,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        if active_partitions is not None:  # None: a client-only app, every partition
            active_partitions = set(active_partitions)  # the caller's set changes meanwhile
            if not active_partitions:  # aiokafka would read an empty set as every partition
                return {}
        return await original(
            self, consumer, active_partitions, timeout=timeout, max_records=max_records
        )

    return fetch_records


def skipped(records: Any, active: Any, buffered: Any) -> dict[Any, int]:
    """The partitions of a fetched batch whose records Faust would skip (neither active nor
    buffered by then): partition -> the offset of its first record."""
    if active is None:  # Faust delivers every partition's records then
        return {}
    return {
        tp: recs[0].offset
        for tp, recs in records.items()
        if recs and tp not in active and tp not in buffered
    }


def _fresh_batches(original: Any) -> Any:
    async def without_stale(self: Any, timeout: float) -> Any:
        sought = _sought(self)
        sought.clear()
        records, active_partitions = await original(self, timeout)
        if records:
            # Paused while the batch was fetched: fetched again from here when resumed.
            paused = skipped(records, self._active_partitions, self._buffered_partitions)
            if paused:
                records = {tp: recs for tp, recs in records.items() if tp not in paused}
                assigned = self.assignment()
                for tp, first in paused.items():
                    if tp in assigned:  # a revoked one is sought by its next owner
                        await self.seek(tp, first)
        if records and sought:
            moved = {tp: sought[tp] for tp in stale(sought, records)}
            if moved:
                records = {tp: recs for tp, recs in records.items() if tp not in moved}
                for tp, offset in moved.items():
                    self.log.info("Dropped records of %s fetched before a seek to %s", tp, offset)
                    await self.seek(tp, offset)  # fetched again from there
        return records, active_partitions

    return without_stale


# Set on the queues a resume must not clear: only Faust's changelog queue.
_KEPT_ON_RESUME = "_guardstream_kept_on_resume"


def _marking_changelog_queue(original: property) -> property:
    def changelog_queue(self: Any) -> Any:
        queue = original.fget(self)  # type: ignore[misc]  # made on first use
        setattr(queue, _KEPT_ON_RESUME, True)
        return queue

    return property(changelog_queue, doc=original.__doc__)


def _resuming_without_clearing_kept(original: Any) -> Any:
    def resume(self: Any) -> None:
        kept = [queue for queue in self._queues if getattr(queue, _KEPT_ON_RESUME, False)]
        for queue in kept:
            self._queues.discard(queue)
        try:
            original(self)  # clears the other queues, as before
        finally:
            for queue in kept:
                self._queues.add(queue)

    return resume


def holes(consumer: Any) -> dict[Any, tuple[int, int, float]]:
    """The holes at the head of partitions' acknowledged offsets that stop their commits:
    partition -> (first missing offset, first acknowledged one, when noticed)."""
    return _kept_on(consumer, "_guardstream_holes")


def next_commit(
    acked: list[int], gaps: Any, committed: int | None
) -> tuple[int | None, list[int], tuple[int, int] | None]:
    """Where a partition may be committed to: (offset or None, the offsets that run
    covers, a hole (first, end) at the head of the acknowledged ones or None).

    `acked` (Faust's list) is updated in place: hole-filled ranges up to its highest offset
    join it, and the committed run leaves it. `committed` is the next offset to read.
    """
    if not acked:
        return None, [], None
    if gaps:
        top = max(acked)
        spans = sorted(gaps.overlap(0, top), key=lambda span: span.begin)
        if spans:
            filled = [o for span in spans for o in range(span.begin, span.end)]
            acked.extend(filled)
            gaps.chop(0, max(filled[-1], top + 1))
    offsets = sorted(set(acked))
    if committed is not None and offsets[0] > committed:
        acked[:] = offsets
        return None, [], (committed, offsets[0])
    run = 1
    while run < len(offsets) and offsets[run] == offsets[0] + run:
        run += 1
    acked[:] = offsets[run:]
    return offsets[run - 1] + 1, offsets[:run], None


def _strict_new_offset(self: Any, tp: Any) -> int | None:
    offset, covered, hole = next_commit(self._acked[tp], self._gap[tp], self._committed_offset[tp])
    noted = holes(self)
    if hole is not None:
        first, end = hole
        earlier = noted.get(tp)
        since = earlier[2] if earlier is not None and earlier[:2] == hole else time.monotonic()
        noted[tp] = (first, end, since)
        return None
    noted.pop(tp, None)
    self._acked_index[tp].difference_update(covered)
    return offset


def subscribed_topics(members: Any) -> set[str]:
    """Every topic the members of a JoinGroup response subscribe to."""
    topics: set[str] = set()
    for member in members:
        # (member id, metadata), or (member id, group instance id, metadata) from v5 on.
        topics.update(ConsumerProtocol.METADATA.decode(member[-1]).subscription)
    return topics


def _knowing_every_topic(original: Any) -> Any:
    async def perform_assignment(self: Any, response: Any) -> Any:
        wanted = subscribed_topics(response.members)
        if not self._subscription.subscribed_pattern:
            self._client.set_topics(wanted)  # what the original does first, unchanged
        deadline = time.monotonic() + TOPIC_WAIT_S
        while missing := {t for t in wanted if not self._cluster.partitions_for_topic(t)}:
            if time.monotonic() >= deadline:
                log.warning("assigning without topics unknown to the brokers: %s", missing)
                break
            await self._client.force_metadata_update()
            if any(not self._cluster.partitions_for_topic(t) for t in missing):
                await asyncio.sleep(0.2)
        return await original(self, response)

    return perform_assignment


def apply() -> None:
    """Patch Faust's recovery, consumer, flow control and group leader once per process
    (idempotent)."""
    if getattr(Recovery, _APPLIED, False):
        return
    for name in _METHODS:
        setattr(Recovery, name, _suspending(getattr(Recovery, name)))
    Consumer.seek = _noting_seek(Consumer.seek)  # type: ignore[method-assign]
    Consumer.perform_seek = _noting_perform_seek(Consumer.perform_seek)  # type: ignore[method-assign]
    Consumer._wait_next_records = _fresh_batches(Consumer._wait_next_records)  # type: ignore[method-assign]
    Consumer._new_offset = _strict_new_offset  # type: ignore[method-assign]
    AIOKafkaConsumerThread._fetch_records = _snapshot_fetch(  # type: ignore[method-assign]
        AIOKafkaConsumerThread._fetch_records
    )
    queue_property = vars(TableManager)["changelog_queue"]
    TableManager.changelog_queue = _marking_changelog_queue(queue_property)  # type: ignore[assignment]
    FlowControlEvent.resume = _resuming_without_clearing_kept(FlowControlEvent.resume)  # type: ignore[method-assign]
    GroupCoordinator._perform_assignment = _knowing_every_topic(  # type: ignore[method-assign]
        GroupCoordinator._perform_assignment
    )
    setattr(Recovery, _APPLIED, True)
