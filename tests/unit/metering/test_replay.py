"""A crash between any two table writes replays to the same outputs and the same table.

Random request/usage sequences over a few tenants are applied record at a time, as the
meter agent does: each record's entries, then its state. A crash is simulated by keeping
only a prefix of those writes (a changelog loses a suffix) and applying the records again
from what survived: every output and the final table must be what the uncrashed run gave.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from guardstream.metering.keys import state_key
from guardstream.metering.step import TenantState, step
from guardstream.records import Position

from .test_metering import CATALOG, T0, limits, req, usage

Write = tuple[bytes, bytes | None]
TENANTS = ("t1", "t2", "t3")
LIMITS = {t: limits(tenant_id=t, burst_requests=5, requests_per_minute=60) for t in TENANTS}
Table = dict[bytes, bytes]


def _records(spec: list[tuple[int, int, bool, int]]) -> list[tuple[dict[str, Any], int]]:
    """(record, broker time) pairs: requests, usage for earlier ones, and resent ids."""
    out: list[tuple[dict[str, Any], int]] = []
    requests: dict[str, list[str]] = {t: [] for t in TENANTS}
    now = T0
    for n, (tenant_ix, gap_ms, is_usage, pick) in enumerate(spec):
        tenant = TENANTS[tenant_ix]
        now += gap_ms
        if is_usage and requests[tenant]:
            rid = requests[tenant][pick % len(requests[tenant])]
            record = usage(n, rid, 40 + pick, 20)
        else:
            # Every fifth request resends an earlier id: a DUPLICATE answer to keep exact.
            resend = requests[tenant] and pick % 5 == 0
            rid = requests[tenant][0] if resend else f"{tenant}-r{n}"
            record = req(n, rid=rid)
            requests[tenant].append(rid)
        record["tenant_id"] = tenant
        out.append((record, now))
    return out


def _write(table: Table, writes: list[Write]) -> None:
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def _apply(
    records: list[tuple[dict[str, Any], int]], table: Table
) -> tuple[list[Any], list[Write]]:
    """Apply every record in order; return the outputs and the writes, in write order."""
    outputs = []
    writes: list[Write] = []
    for offset, (record, ts) in enumerate(records):
        tenant = record["tenant_id"]
        s = step(
            TenantState.from_bytes(table.get(state_key(tenant))),
            record,
            Position(0, offset, ts),
            LIMITS[tenant],
            CATALOG,
            table.get,
        )
        mine: list[Write] = list(s.writes.items())
        if s.changed:
            mine.append((state_key(tenant), s.state.to_bytes()))
        _write(table, mine)
        writes += mine
        outputs.append((s.decision, s.audits))
    return outputs, writes


# Gaps between records: mostly seconds, sometimes past the reservation TTL (15 min), so
# reservations expire, are settled late, and one record writes the same entry twice.
# Not past the duplicate window (24 h): a record that both expires a reservation and deletes
# its journal entry cannot be replayed exactly after a crash between those writes (a known
# gap, in the closing note of the stream-speed issue); with 25 h gaps this test finds it.
GAP_MS = st.one_of(st.integers(0, 4000), st.just(16 * 60_000))
SPEC = st.lists(
    st.tuples(st.integers(0, 2), GAP_MS, st.booleans(), st.integers(0, 50)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(SPEC, st.integers(0, 10_000))
# A usage report past its TTL: one record expires the reservation, then settles it late.
@example([(0, 0, False, 0), (0, 16 * 60_000, True, 0)], 1)
def test_a_crash_between_any_two_writes_replays_to_the_same_outputs_and_table(
    spec: list[Any], cut_at: int
) -> None:
    records = _records(spec)
    expected_table: Table = {}
    expected, writes = _apply(records, expected_table)
    survived: Table = {}
    _write(survived, writes[: cut_at % (len(writes) + 1)])  # the changelog kept a prefix
    replayed, _ = _apply(records, survived)
    assert replayed == expected
    assert survived == expected_table
