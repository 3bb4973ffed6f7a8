"""Many calls in flight, offsets released in order.

A model call takes seconds, so the dispatch agent keeps hundreds running at once and they
finish in any order. An `admitted` offset may only be committed once every record before it
on its partition has its completion written; otherwise a crash would skip the unfinished
ones. Faust commits the highest run of acknowledged offsets, but does not check that the run
starts right after the committed offset when none is known yet (a fresh partition), so the
agent never acknowledges out of order: `InOrder` holds a finished record back until every
earlier one on its partition has finished, then releases the whole run.

Faust may also deliver a record again while it is still being answered (its read-offset
check lets the last offset read through twice, seen after a restart). That delivery is not
a new record: it is released with the first, never taken up as one. A record delivered
again after it was released (a repeat, or the partition sought back to re-read a hole) is
taken up again; the dispatch table makes that idempotent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Partition(Generic[T]):
    started: deque[int] = field(default_factory=deque)  # offsets in arrival order
    finished: dict[int, T] = field(default_factory=dict)
    pending: set[int] = field(default_factory=set)  # offsets taken up, not yet released
    again: dict[int, list[T]] = field(default_factory=dict)  # repeats of a pending offset


class InOrder(Generic[T]):
    """Per partition: which finished items may be released (acknowledged) now."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, _Partition[T]] = {}

    def start(self, partition: Hashable, offset: int) -> bool:
        """Take a record up; False if its offset is taken up and not yet released (a
        repeated delivery: hand it to `repeat`, which releases it with the first)."""
        part = self._parts.setdefault(partition, _Partition())
        if offset in part.finished or offset in part.pending:
            return False
        part.pending.add(offset)
        part.started.append(offset)
        return True

    def repeat(self, partition: Hashable, offset: int, item: T) -> None:
        """A repeated delivery of an offset still in hand: released with the first."""
        self._parts[partition].again.setdefault(offset, []).append(item)

    def finish(self, partition: Hashable, offset: int, item: T) -> list[T]:
        """`offset` is done; the items now releasable, in offset order (maybe none)."""
        part = self._parts[partition]
        part.finished[offset] = item
        released: list[T] = []
        while part.started and part.started[0] in part.finished:
            first = part.started.popleft()
            part.pending.discard(first)
            released.append(part.finished.pop(first))
            released.extend(part.again.pop(first, ()))
        return released

    def in_flight(self) -> int:
        """Records taken up and not yet released, over every partition."""
        return sum(len(p.started) for p in self._parts.values())

    def forget(self, partition: Hashable) -> None:
        """Drop a partition's records (it was revoked: its new owner takes them up again)."""
        self._parts.pop(partition, None)


class SharedFlush:
    """Many callers waiting for one flush: each caller waits for a flush that *started*
    after it called, and every caller waiting at that moment shares it.

    A call may only start once its `calling` entry is on the broker (else a crash could
    lose the entry, and the next owner would call again). One flush per call would queue
    hundreds of flushes; shared, a burst of calls waits for one or two.
    """

    def __init__(self, flush: Callable[[], Awaitable[None]]) -> None:
        self._flush = flush
        self._next: asyncio.Future[None] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        """Return once a flush begun after this call has finished (raise what it raised)."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        waiting = self._next
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._run())
        await asyncio.shield(waiting)

    async def _run(self) -> None:
        while self._next is not None:
            batch, self._next = self._next, None
            try:
                await self._flush()
            except Exception as exc:
                batch.set_exception(exc)
            else:
                batch.set_result(None)


class Settled(Generic[T]):
    """Per partition, the items taken up, until their offset is committed.

    A dispatch entry holds the answer's bytes only while its admitted record may be
    processed again, i.e. until its offset is committed; after that it shrinks to a marker.
    Offsets are committed only once every record before them is answered, so an item whose
    offset is below the committed offset is settled for good.
    """

    def __init__(self) -> None:
        self._parts: dict[Hashable, deque[tuple[int, T]]] = {}

    def taken(self, partition: Hashable, offset: int, item: T) -> None:
        """A record was taken up (offsets arrive in increasing order per partition)."""
        self._parts.setdefault(partition, deque()).append((offset, item))

    def due(self, partition: Hashable, committed: int | None) -> list[T]:
        """The items of records before `committed` (the next offset to read), once each."""
        part = self._parts.get(partition)
        out: list[T] = []
        while part and committed is not None and part[0][0] < committed:
            out.append(part.popleft()[1])
        return out

    def forget(self, partition: Hashable) -> None:
        """Drop a partition's items (revoked: its entries are left to the changelog)."""
        self._parts.pop(partition, None)
