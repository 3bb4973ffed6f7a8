"""The metering table's layout: one table, five kinds of entry, keyed by tenant first.

All of a tenant's entries live in the one `meter` table, whose changelog keeps their write
order (see `guardstream.metering.step`). Keys are `<kind>\x1f<tenant>\x1f...`; values
other than the state are compact JSON with the short field names below (they are stored
once per request, so every byte counts, and changing them changes the stored format).

- `s` — the tenant state (`TenantState.to_bytes`), written after the record's entries.
- `r` — a `Stored` entry: the outputs of one applied record, by its ingress coordinates,
  re-emitted as they are when the record is replayed.
- `d` — a `FirstSeen` entry: the first admitted decision per event source+id (`e`) or
  idempotency key (`i`), for DUPLICATE answers within the duplicate window.
- `v` — a `Reservation`: an admitted request's reserved cost and its fate.
- `q` — a `JournalEntry`: one per applied record, in order; reservations expire and every
  entry of a record is deleted by walking it.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class Stored(TypedDict):
    """`r` entry: what one applied record produced."""

    decision: dict[str, Any] | None  # the Decision record, None for a usage report
    audits: list[dict[str, Any]]  # the Audit records, in order
    pos: list[int]  # [partition, offset] of the metering record that produced them


class FirstSeen(TypedDict):
    """`d` entry: the first admitted decision for an event id or idempotency key."""

    decision_id: str
    ts: int  # broker time (ms) of the metering record
    ikey: str  # ingress coordinates `topic/partition/offset` of the record that owns it


ReservationStatus = Literal["held", "settled", "expired"]


class Reservation(TypedDict):
    """`v` entry: an admitted request's reservation against its day and month budgets."""

    a: int  # amount reserved, µ$
    d: str  # the daily budget period key it counts against
    m: str  # the monthly budget period key it counts against
    s: ReservationStatus  # its status now
    # Its status before the last change, or None when the last change created it: read back
    # when the record that changed it is not yet in the tenant state (see `step`).
    p: ReservationStatus | None
    by: list[int]  # [partition, offset] of the metering record that last changed it
    ikey: str  # ingress coordinates of the request that made it


class JournalEntry(TypedDict):
    """`q` entry: one applied record, for expiry and deletion in log order."""

    ts: int  # broker time (ms)
    ikey: str  # ingress coordinates of the record
    rid: str | None  # the request id when the record reserved budget
    keys: list[str]  # the `d` and `v` keys the record wrote (deleted with it)


def state_key(tenant: str) -> bytes:
    """Table key of a tenant's state (in the same table as its entries, see the agent)."""
    return f"s\x1f{tenant}".encode()


def request_key(tenant: str, ingress_key: str) -> bytes:
    """Table key of a stored decision, by the ingress record that caused it."""
    return f"r\x1f{tenant}\x1f{ingress_key}".encode()


def dedup_key(tenant: str, kind: str, value: str) -> bytes:
    """Table key of a duplicate-detection entry (event source+id, or idempotency key)."""
    return f"d\x1f{tenant}\x1f{kind}\x1f{value}".encode()


def reservation_key(tenant: str, request_id: str) -> bytes:
    """Table key of an admitted request's reservation."""
    return f"v\x1f{tenant}\x1f{request_id}".encode()


def journal_key(tenant: str, seq: int) -> bytes:
    """Table key of a tenant's journal entry (hex, so keys sort in journal order)."""
    return f"q\x1f{tenant}\x1f{seq:016x}".encode()
