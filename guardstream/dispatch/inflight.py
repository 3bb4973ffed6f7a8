"""Many calls in flight, offsets released in order.

A model call takes seconds, so the dispatch agent keeps hundreds running at once and they
finish in any order. An `admitted` offset may only be committed once every record before it
on its partition has its completion written; otherwise a crash would skip the unfinished
ones. Faust commits the highest run of acknowledged offsets, but does not check that the run
starts right after the committed offset when none is known yet (a fresh partition), so the
agent never acknowledges out of order: `InOrder` holds a finished record back until every
earlier one on its partition has finished, then releases the whole run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Partition(Generic[T]):
    started: deque[int] = field(default_factory=deque)  # offsets in arrival order
    finished: dict[int, T] = field(default_factory=dict)


class InOrder(Generic[T]):
    """Per partition: which finished items may be released (acknowledged) now."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, _Partition[T]] = {}

    def start(self, partition: Hashable, offset: int) -> None:
        """A record was taken up (offsets arrive in increasing order per partition)."""
        self._parts.setdefault(partition, _Partition()).started.append(offset)

    def finish(self, partition: Hashable, offset: int, item: T) -> list[T]:
        """`offset` is done; the items now releasable, in offset order (maybe none)."""
        part = self._parts[partition]
        part.finished[offset] = item
        released: list[T] = []
        while part.started and part.started[0] in part.finished:
            released.append(part.finished.pop(part.started.popleft()))
        return released

    def in_flight(self) -> int:
        """Records taken up and not yet released, over every partition."""
        return sum(len(p.started) for p in self._parts.values())

    def forget(self, partition: Hashable) -> None:
        """Drop a partition's records (it was revoked: its new owner takes them up again)."""
        self._parts.pop(partition, None)
