"""The dispatch table: each admitted decision's call, recorded before it is made, its result
after, and when the entry may go.

One entry per decision, keyed by its decision id (copies of an admitted decision share it;
two tenants' requests with the same id do not), written in an event of the record's own
partition so it goes to that partition's changelog:

- `calling`: written before the first provider call. A worker that finds it when it takes
  a record up again, with no call of its own running, knows the call was in flight when the
  last owner died, and does not call again (`CompletionCode.INTERRUPTED`).
- `done`: the encoded completion and usage records, written once they are sent. The same
  record read again (its offset was not committed before a crash) re-sends these exact
  bytes, so consumers see identical copies, never a second answer.
- `settled`: a done entry shrunk once its record's offset is committed: the answer is out
  for good and only the fact that the decision was answered is kept.

Every entry records where it was created (`Origin`): a copy of the decision at another
offset (the meter re-emits decisions after a crash) finds an entry of a different origin
and sends nothing; only the record the answer belongs to re-sends it.

An entry is kept for the dedup window (the meter's horizon: no copy of a decision can be
made after the meter forgot it), measured in record time, then deleted: each partition keeps
a queue of its entries in creation order (`track`), and every record of the partition
collects a few expired ones (`collect`). The queue lives in the table, so a restart or a
new owner of the partition goes on collecting where the last one stopped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

_CALLING = b"c"
_DONE = b"d"
_SETTLED = b"s"
_ORIGIN = struct.Struct(">IQ")  # partition, offset
_LEN = struct.Struct(">I")
_HEAD = struct.Struct(">QQ")  # next to collect, next to append
_TS = struct.Struct(">q")  # ms

_ENTRY = b"e:"
_QUEUE = b"q:"
_QUEUE_HEAD = b"h:"


@dataclass(frozen=True)
class Origin:
    """The admitted record an entry was made for."""

    partition: int
    offset: int


@dataclass(frozen=True)
class Entry:
    """What the table holds for one decision."""

    calling: bool = False
    completion: bytes | None = None  # set when done
    usage: bytes | None = None  # set when done (None: nothing to charge)
    settled: bool = False  # done, and its record's offset committed
    origin: Origin | None = None  # None for an empty or settled entry

    @property
    def done(self) -> bool:
        """Whether the completion was produced (and may be re-sent as it is)."""
        return self.completion is not None


class Store(Protocol):
    """What the journal needs of a table (a dict will do)."""

    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def __delitem__(self, key: bytes) -> None: ...


def entry_key(decision_id: str) -> bytes:
    """The table key of a decision's entry."""
    return _ENTRY + decision_id.encode()


def calling(origin: Origin) -> bytes:
    """The entry written before the first call."""
    return _CALLING + _ORIGIN.pack(origin.partition, origin.offset)


def done(origin: Origin, completion: bytes, usage: bytes | None) -> bytes:
    """The entry written once the completion (and its usage record) are sent."""
    return (
        _DONE
        + _ORIGIN.pack(origin.partition, origin.offset)
        + _LEN.pack(len(completion))
        + completion
        + (usage or b"")
    )


def settled() -> bytes:
    """A done entry once its record's offset is committed."""
    return _SETTLED


def read(value: bytes | None) -> Entry:
    """Parse an entry; None (no entry yet) reads as an empty `Entry`."""
    if not value:
        return Entry()
    kind = value[:1]
    if kind == _SETTLED:
        return Entry(settled=True)
    if kind not in (_CALLING, _DONE) or len(value) < 1 + _ORIGIN.size:
        raise ValueError(f"not a dispatch table entry: {value[:8]!r}")
    origin = Origin(*_ORIGIN.unpack_from(value, 1))
    if kind == _CALLING:
        return Entry(calling=True, origin=origin)
    start = 1 + _ORIGIN.size
    if len(value) < start + _LEN.size:
        raise ValueError(f"not a dispatch table entry: {value[:8]!r}")
    (size,) = _LEN.unpack_from(value, start)
    start += _LEN.size
    completion = value[start : start + size]
    rest = value[start + size :]
    return Entry(completion=completion, usage=rest or None, origin=origin)


def _head_key(partition: int) -> bytes:
    # The partition is in every queue key: Faust deletes a key from every local store that
    # holds it, so two partitions must never share one.
    return _QUEUE_HEAD + str(partition).encode()


def _queue_key(partition: int, seq: int) -> bytes:
    return _QUEUE + f"{partition}:{seq:016x}".encode()


def _head(store: Store, partition: int) -> tuple[int, int]:
    raw = store.get(_head_key(partition))
    return (0, 0) if raw is None else _HEAD.unpack(raw)


def track(store: Store, partition: int, key: bytes, ts_ms: int) -> None:
    """Queue a new entry of `partition`, created at record time `ts_ms`, for deletion."""
    first, end = _head(store, partition)
    store[_queue_key(partition, end)] = _TS.pack(ts_ms) + key
    store[_head_key(partition)] = _HEAD.pack(first, end + 1)


def collect(store: Store, partition: int, now_ms: int, window_ms: int, limit: int = 4) -> int:
    """Delete up to `limit` of the partition's oldest entries created `window_ms` or more
    before `now_ms` (record time); how many were deleted. More than one per call, so that
    collecting keeps up with `track`."""
    first, end = _head(store, partition)
    start = first
    while first < end and first - start < limit:
        qkey = _queue_key(partition, first)
        item = store.get(qkey)
        if item is not None:
            (ts_ms,) = _TS.unpack_from(item)
            if ts_ms + window_ms > now_ms:
                break
            key = item[_TS.size :]
            if store.get(key) is not None:
                del store[key]
            del store[qkey]
        first += 1
    if first != start:
        store[_head_key(partition)] = _HEAD.pack(first, end)
    return first - start
