"""The dispatch table's entries: a call recorded before it is made, and its result after.

One entry per admitted record (keyed by its request id), written in the record's event so
it goes to the changelog partition of the record's own partition:

- `calling`: written before the first provider call. A worker that finds it when it takes
  the record up again knows a call was in flight when the last owner died, and does not
  call again (`CompletionCode.INTERRUPTED`).
- `done`: the encoded completion and usage records, written once they are sent. A record
  processed again (its offset was not committed before a crash) re-sends these exact bytes,
  so consumers see identical copies, never a second answer.

An entry is deleted once its record's offset is committed (it will not be read again):
by the worker that answered it, at its next record of the partition
(`dispatch.inflight.Settled`). Entries of records committed just before their partition
moved stay behind, a few per rebalance.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_CALLING = b"c"
_DONE = b"d"
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class Entry:
    """What the table holds for one request."""

    calling: bool = False
    completion: bytes | None = None  # set when done
    usage: bytes | None = None  # set when done (None: nothing to charge)

    @property
    def done(self) -> bool:
        """Whether the completion was produced (and may be re-sent as it is)."""
        return self.completion is not None


def calling() -> bytes:
    """The entry written before the first call."""
    return _CALLING


def done(completion: bytes, usage: bytes | None) -> bytes:
    """The entry written once the completion (and its usage record) are sent."""
    return _DONE + _LEN.pack(len(completion)) + completion + (usage or b"")


def read(value: bytes | None) -> Entry:
    """Parse an entry; None (no entry yet) reads as an empty `Entry`."""
    if not value:
        return Entry()
    if value[:1] == _CALLING:
        return Entry(calling=True)
    if value[:1] != _DONE or len(value) < 1 + _LEN.size:
        raise ValueError(f"not a dispatch table entry: {value[:8]!r}")
    (size,) = _LEN.unpack_from(value, 1)
    start = 1 + _LEN.size
    completion = value[start : start + size]
    rest = value[start + size :]
    return Entry(completion=completion, usage=rest or None)
